"""The "new evaluation" page form. It only parses what the browser sends
(types, the user's own menus, the uploaded answers files); every rule about
what an evaluation needs lives in `services.check_evaluation`, whose errors
the view puts back on the field they name (`add_service_errors`)."""
from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile

from webapp.datasets.models import Dataset, DatasetKind, DatasetStatus
from webapp.deployments.models import BackendKind
from webapp.deployments.selectors import servable_deployments
from webapp.evaluations.judging.prompts import CATEGORIES, default_templates
from webapp.evaluations.models import CandidateSource, JudgeLanguage, JudgeMode
from webapp.evaluations.services import EvaluationSpec
from webapp.lib.ownership import visible_to
from webapp.registry.models import ArtifactKind
from webapp.registry.selectors import artifact_list

CANDIDATES = ("a", "b")
GENERATION = ("max_tokens", "temperature", "top_p")
TEMPLATE_PREFIX = "template_"
KEY_RETYPE = "For your safety the judge API key is never sent back to the browser: type it again."
FILES_RECHOOSE = "Browsers do not keep chosen files across a submit: choose the answers file again."


class _LabelledChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        if isinstance(obj, Dataset):
            return f"{obj.name} v{obj.version} ({obj.rows} questions)"
        return str(obj)


def default_template_sets() -> dict[str, dict[str, str]]:
    """Every mode/language's default judge prompts, keyed "mode/language":
    embedded in the page so the script swaps them without a round trip."""
    return {f"{mode}/{language}": default_templates(mode, language)
            for mode in JudgeMode.values for language in JudgeLanguage.values}


class EvaluationForm(forms.Form):
    name = forms.CharField(max_length=100, required=False, help_text="Blank: “<A> vs <B>”.")
    dataset = _LabelledChoice(
        label="Eval dataset", queryset=None, empty_label="— choose —",
        help_text="A ready eval dataset: rows {id, question, category, reference}.",
    )

    # Blank: the deployment's own default for that parameter.
    max_tokens = forms.IntegerField(label="Max new tokens", min_value=1, initial=512, required=False,
                                    help_text="Blank: each deployment's default.")
    temperature = forms.FloatField(min_value=0, initial=0.7, required=False)
    top_p = forms.FloatField(label="top_p", min_value=0, max_value=1, initial=0.9, required=False)

    judge_base_url = forms.CharField(
        label="Judge base URL", max_length=500, initial="https://api.openai.com/v1",
        help_text="Any OpenAI-compatible endpoint, e.g. http://host:8000/v1.",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    judge_model = forms.CharField(label="Judge model", max_length=100, initial="gpt-4")
    judge_api_key = forms.CharField(
        label="Judge API key", required=False, strip=True,
        help_text="Stored encrypted; never shown again, on any page or API response.",
        # render_value=False: a form sent back with errors must not carry the key.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password", "spellcheck": "false"}),
    )
    mode = forms.ChoiceField(label="Judging mode", choices=JudgeMode.choices, initial=JudgeMode.SCORE_PAIR)
    language = forms.ChoiceField(label="Prompt language", choices=JudgeLanguage.choices, initial=JudgeLanguage.ZH)

    concurrency = forms.IntegerField(min_value=1, initial=8, help_text="Judge and generation calls in flight at once.")
    max_retries = forms.IntegerField(label="Max retries", min_value=0, initial=5,
                                     help_text="Per call, with backoff, on 429, 5xx and timeouts.")
    request_timeout_s = forms.FloatField(label="Request timeout (s)", min_value=1, initial=120)
    sample_size = forms.IntegerField(
        label="Sample size", min_value=1, required=False,
        help_text="Blank: every question. Otherwise a sample keeping the category ratio.",
    )
    seed = forms.IntegerField(initial=0, help_text="The same seed and size pick the same questions.")
    reward_model = _LabelledChoice(
        label="Reward model", queryset=None, required=False, empty_label="— none —",
        help_text="Optional: also score every answer with one of your reward models.",
    )
    price_prompt_per_1k = forms.FloatField(label="Prompt price / 1k tokens (USD)", min_value=0, initial=0.03)
    price_completion_per_1k = forms.FloatField(label="Completion price / 1k tokens (USD)", min_value=0, initial=0.06)

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = visible_to(Dataset.objects.all(), user).filter(
            kind=DatasetKind.EVAL, status=DatasetStatus.READY).order_by("name", "-version")
        self.fields["reward_model"].queryset = artifact_list(user=user).filter(kind=ArtifactKind.REWARD)
        deployments = servable_deployments(user=user).exclude(kind=BackendKind.EMBEDDING).order_by("name")
        for side in CANDIDATES:
            title = side.upper()
            self.fields[f"{side}_source"] = forms.ChoiceField(
                label=f"Candidate {title}", choices=CandidateSource.choices, initial=CandidateSource.ANSWERS,
                widget=forms.RadioSelect,
            )
            self.fields[f"{side}_deployment"] = _LabelledChoice(
                label=f"{title}: deployment", queryset=deployments, required=False, empty_label="— choose —",
                help_text="Answers are generated with the parameters below.",
            )
            self.fields[f"{side}_answers"] = forms.FileField(
                label=f"{title}: answers file", required=False,
                help_text='JSONL, one {"id", "answer"} per line, an answer for every question.',
                widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.json,application/json"}),
            )
        language = self.data.get("language") or JudgeLanguage.ZH
        mode = self.data.get("mode") or JudgeMode.SCORE_PAIR
        defaults = default_template_sets().get(f"{mode}/{language}") or default_templates(JudgeMode.SCORE_PAIR, JudgeLanguage.ZH)
        for category in CATEGORIES:
            self.fields[TEMPLATE_PREFIX + category] = forms.CharField(
                label=f"{category.capitalize()} prompt", strip=False, initial=defaults[category],
                help_text="Placeholders: {question} {answer_1} {answer_2} {reference_section}; literal braces as {{ }}.",
                widget=forms.Textarea(attrs={"rows": 10, "spellcheck": "false", "data-category": category}),
            )

    # --- layout for the template

    def candidate_fields(self, side: str) -> dict[str, forms.BoundField]:
        return {part: self[f"{side}_{part}"] for part in ("source", "deployment", "answers")}

    def candidates(self) -> list[tuple[str, dict[str, forms.BoundField]]]:
        return [(side.upper(), self.candidate_fields(side)) for side in CANDIDATES]

    def generation_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in GENERATION]

    def judge_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("judge_base_url", "judge_model", "judge_api_key", "mode", "language")]

    def template_fields(self) -> list[forms.BoundField]:
        return [self[TEMPLATE_PREFIX + category] for category in CATEGORIES]

    def run_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("concurrency", "max_retries", "request_timeout_s", "sample_size", "seed",
                                        "reward_model", "price_prompt_per_1k", "price_completion_per_1k")]

    def notices(self) -> list[str]:
        """What a form sent back with errors lost on the way (the key, files)."""
        if not self.is_bound:
            return []
        # A bound form is only rendered again when something was wrong.
        lost = [KEY_RETYPE]
        if any(self.files.get(f"{side}_answers") for side in CANDIDATES):
            lost.append(FILES_RECHOOSE)
        return lost

    # --- values for the service

    def spec(self) -> EvaluationSpec:
        """The service's input (call after is_valid). Sources decide which of
        deployment / file is passed: the other input is ignored, as hidden."""
        data = self.cleaned_data
        sides: dict[str, Any] = {}
        generates = any(data[f"{side}_source"] == CandidateSource.DEPLOYMENT for side in CANDIDATES)
        for side in CANDIDATES:
            source = data[f"{side}_source"]
            upload: UploadedFile | None = data[f"{side}_answers"] if source == CandidateSource.ANSWERS else None
            sides[f"{side}_source"] = source
            sides[f"{side}_deployment"] = data[f"{side}_deployment"] if source == CandidateSource.DEPLOYMENT else None
            sides[f"{side}_answers"] = upload
        return EvaluationSpec(
            name=data["name"], dataset=data["dataset"], **sides,
            # Stored only when a deployment generates: the settings then show what was used.
            generation_params={name: data[name] for name in GENERATION if data[name] is not None} if generates else {},
            judge_base_url=data["judge_base_url"], judge_model=data["judge_model"], judge_api_key=data["judge_api_key"],
            mode=data["mode"], language=data["language"],
            templates={category: data[TEMPLATE_PREFIX + category] for category in CATEGORIES},
            concurrency=data["concurrency"], max_retries=data["max_retries"], request_timeout_s=data["request_timeout_s"],
            sample_size=data["sample_size"], seed=data["seed"], reward_model=data["reward_model"],
            price_prompt_per_1k=data["price_prompt_per_1k"], price_completion_per_1k=data["price_completion_per_1k"],
        )

    def add_service_errors(self, errors: dict[str, str]) -> None:
        """The service's {field: message} onto the inputs: `templates.math` →
        the math prompt, `generation_params.x` → that parameter; anything
        without an input of its own goes above the form."""
        for field, message in errors.items():
            name = field
            if field.startswith("templates."):
                name = TEMPLATE_PREFIX + field.removeprefix("templates.")
            elif field.startswith("generation_params."):
                name = field.removeprefix("generation_params.")
            elif field == "templates":
                name = None
            self.add_error(name if name in self.fields else None, message)
