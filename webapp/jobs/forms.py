"""The job form: its training settings are generated from the CLI's JSON
Schema (`training_cli.config_schema()`), one input per settable field, with
the stage defaults pre-filled; the path fields are the runner's to fill in.
The form only parses; every rule about what a job needs lives in
`services.job_create`, whose errors the view puts back on the field they name."""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from webapp.core.errors import DomainError
from webapp.datasets.models import Dataset, DatasetStatus, Mixture
from webapp.jobs import training_cli
from webapp.jobs.models import STAGE_MODEL_INPUTS, Job, JobStage, stage_data_kinds
from webapp.jobs.services import JobResources, JobSpec
from webapp.lib.ownership import visible_to
from webapp.registry.models import ArtifactKind
from webapp.registry.selectors import artifact_list

CONFIG_PREFIX = "config_"
# Service error fields that are not named like the form's fields.
ERROR_FIELDS = {"resources.queue": "queue", "resources.num_gpus": "num_gpus", "resources.hostfile": "hostfile",
                "resources": "num_gpus", "config": None}
# Nested settings blocks named after the stage they serve (`ppo`, `dpo`):
# shown, one input per setting, only on that stage's form.
STAGE_BLOCKS = ("ppo", "dpo")


def cli_stages() -> list[str]:
    """The stages the CLI accepts (its schema's `stage` enum), in JobStage order."""
    accepted = training_cli.config_schema().get("properties", {}).get("stage", {}).get("enum") or JobStage.values
    return [stage for stage in JobStage.values if stage in accepted]


def _nullable(spec: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """`anyOf: [X, {type: null}]` → (X, True); anything else → (spec, False)."""
    options = spec.get("anyOf")
    if not options:
        return spec, False
    concrete = [option for option in options if option.get("type") != "null"]
    if len(concrete) == 1 and len(concrete) < len(options):
        return concrete[0], True
    return spec, False


def schema_field(name: str, spec: dict[str, Any], default: Any) -> forms.Field:
    """One form field for the schema property `name`."""
    inner, nullable = _nullable(spec)
    label = spec.get("title") or name.replace("_", " ").capitalize()
    help_text = spec.get("description", "")
    kind = inner.get("type")
    required = not nullable and default is not None
    attrs: dict[str, Any] = {"data-config": name}
    if "enum" in inner:
        coerce = int if kind == "integer" else (float if kind == "number" else str)
        choices = [(value, str(value)) for value in inner["enum"]]
        if nullable:
            choices = [("", "—"), *choices]
        return forms.TypedChoiceField(
            label=label, help_text=help_text, choices=choices, coerce=coerce, required=required,
            empty_value=None, widget=forms.Select(attrs=attrs),
        )
    if kind == "boolean":
        return forms.BooleanField(label=label, help_text=help_text, required=False, widget=forms.CheckboxInput(attrs=attrs))
    if kind in ("integer", "number"):
        bounds = []
        for key, word in (("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")):
            if key in inner:
                bounds.append(f"{word} {inner[key]}")
        if bounds:
            help_text = f"{help_text} ({', '.join(bounds)})" if help_text else ", ".join(bounds)
        if nullable:
            help_text = f"{help_text}; blank: not set" if help_text else "blank: not set"
        if "minimum" in inner:
            attrs["min"] = inner["minimum"]
        if "maximum" in inner:
            attrs["max"] = inner["maximum"]
        if kind == "integer":
            return forms.IntegerField(label=label, help_text=help_text, required=required, widget=forms.NumberInput(attrs=attrs))
        # Floats are typed as text: learning rates read best as 2e-05, and
        # the CLI's validation (not the browser's) judges the value.
        return forms.FloatField(
            label=label, help_text=help_text, required=required,
            widget=forms.TextInput(attrs={**attrs, "inputmode": "decimal", "spellcheck": "false"}),
        )
    if kind == "string":
        return forms.CharField(
            label=label, help_text=help_text, required=False, strip=False, empty_value=None if nullable else "",
            widget=forms.TextInput(attrs={**attrs, "spellcheck": "false"}),
        )
    # Objects (e.g. `lora`): JSON, blank for null.
    return forms.JSONField(
        label=label, help_text=f"{help_text} (a JSON object; blank: none)".strip(), required=False,
        widget=forms.Textarea(attrs={**attrs, "rows": 2, "spellcheck": "false"}),
    )


def _block_properties(schema: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The properties of a nested settings object (`$ref` into `$defs`)."""
    ref = spec.get("$ref", "")
    target = schema.get("$defs", {}).get(ref.rsplit("/", 1)[-1], {}) if ref.startswith("#/$defs/") else spec
    return target.get("properties", {})


def config_fields(stage: str) -> dict[str, tuple[forms.Field, Any]]:
    """{config key: (form field, stage default)} for the schema's settable
    fields; a stage block's settings are keyed `ppo.kl_coef`."""
    schema = training_cli.config_schema()
    defaults = training_cli.stage_defaults(stage)
    fields = {}
    for name, spec in schema.get("properties", {}).items():
        if name in training_cli.PATH_FIELDS:
            continue
        if name in STAGE_BLOCKS:
            if name != stage:
                continue
            block_defaults = defaults.get(name) or {}
            for sub, sub_spec in _block_properties(schema, spec).items():
                default = block_defaults.get(sub, sub_spec.get("default"))
                key = f"{name}.{sub}"
                fields[key] = (schema_field(key, {**sub_spec, "title": f"{name.upper()}: {sub.replace('_', ' ')}"}, default), default)
            continue
        fields[name] = (schema_field(name, spec, defaults.get(name)), defaults.get(name))
    return fields


def _data_label(source: Dataset | Mixture) -> str:
    return f"{source.name} ({source.kind})"


class DataChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return _data_label(obj)


class ArtifactChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj} ({obj.kind})"


class JobForm(forms.Form):
    stage = forms.ChoiceField(help_text="Changing it reloads the form with that stage's defaults.")
    base_artifact = ArtifactChoiceField(label="Base model", queryset=None, help_text="The registry model to start from.")
    dataset = DataChoiceField(
        label="Dataset", queryset=None, required=False, empty_label="— none —",
        help_text="A ready dataset of the kind the stage trains on; or choose a mixture.",
    )
    mixture = DataChoiceField(label="Mixture", queryset=None, required=False, empty_label="— none —",
                              help_text="Instead of a dataset: a mixture snapshot.")
    eval_dataset = DataChoiceField(label="Eval dataset", queryset=None, required=False, empty_label="— none —",
                                   help_text="Optional held-out data of the same kind.")
    reward_artifact = ArtifactChoiceField(
        label="Reward model", queryset=None, required=False, empty_label="— choose —",
        help_text="PPO: the trained reward model (an rm job's output); it scores the samples and starts the critic.",
    )
    output_name = forms.CharField(
        label="Output name", max_length=100, required=False,
        help_text="Registry name of the trained model; blank: <base>-<stage>.",
    )

    def __init__(self, *args: Any, user: AbstractBaseUser, stage: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stage_value = stage
        stages = cli_stages()
        self.fields["stage"].choices = [(s, f"{s} — {JobStage(s).label}") for s in stages]
        self.fields["stage"].initial = stage
        # A bare adapter is not a model to train from; reward models are PPO's other input.
        self.fields["base_artifact"].queryset = artifact_list(user=user).exclude(kind=ArtifactKind.ADAPTER)
        self.fields["reward_artifact"].queryset = artifact_list(user=user).filter(kind=ArtifactKind.REWARD)
        self.takes_reward_model = "reward_model" in STAGE_MODEL_INPUTS.get(stage, ())
        # The service judges the kind and readiness (its message names the
        # field); the menus offer only what fits the stage.
        datasets = visible_to(Dataset.objects.all(), user).order_by("name", "-id")
        mixtures = visible_to(Mixture.objects.all(), user).order_by("name", "-id")
        kinds = stage_data_kinds(stage) if stage in JobStage.values else ()
        needed = " or ".join(kinds)
        fitting = [d for d in datasets if d.kind in kinds and d.status == DatasetStatus.READY]
        for name in ("dataset", "eval_dataset"):
            self.fields[name].queryset = datasets
            self.fields[name].widget.choices = [("", "— none —"), *((d.pk, _data_label(d)) for d in fitting)]
        self.fields["mixture"].queryset = mixtures
        self.fields["mixture"].widget.choices = [("", "— none —"), *((m.pk, _data_label(m)) for m in mixtures if m.kind in kinds)]
        self.fields["dataset"].help_text = f"A ready {needed} dataset (stage {stage}); or choose a mixture."

        self.config_keys: list[str] = []
        for key, (field, default) in config_fields(stage).items():
            if default is not None:
                field.initial = default
            self.fields[CONFIG_PREFIX + key] = field
            self.config_keys.append(key)

        queues = [queue.name for queue in settings.CELERY_TASK_QUEUES]
        self.fields["num_gpus"] = forms.IntegerField(
            label="GPUs per node", min_value=0, initial=0,
            help_text="0: one training process (CPU, or the worker's first GPU); N: the deepspeed launcher with N ranks.",
        )
        self.fields["queue"] = forms.ChoiceField(
            choices=[(q, q) for q in queues], initial="gpu" if "gpu" in queues else queues[0],
            help_text="Celery queue of the workers that may run it.",
        )
        self.fields["hostfile"] = forms.CharField(
            label="Hostfile", required=False,
            help_text="Optional, multi-node: one `hostname slots=N` line per machine.",
            widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "placeholder": "worker-1 slots=8\nworker-2 slots=8"}),
        )

    # --- layout for the template

    def general_fields(self) -> list[forms.BoundField]:
        names = ["stage", "base_artifact", *(["reward_artifact"] if self.takes_reward_model else []),
                 "dataset", "mixture", "eval_dataset", "output_name"]
        return [self[name] for name in names]

    def config_bound_fields(self) -> list[forms.BoundField]:
        return [self[CONFIG_PREFIX + key] for key in self.config_keys]

    def resource_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in ("num_gpus", "queue", "hostfile")]

    # --- values for the service

    def clean_hostfile(self) -> str:
        return self.cleaned_data["hostfile"].replace("\r\n", "\n")

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {}
        for key in self.config_keys:
            value = self.cleaned_data[CONFIG_PREFIX + key]
            block, _, sub = key.partition(".")
            if sub:
                config.setdefault(block, {})[sub] = value
            else:
                config[key] = value
        return config

    def resources(self) -> JobResources:
        data = self.cleaned_data
        return JobResources(queue=data["queue"], num_gpus=data["num_gpus"], hostfile=data["hostfile"])

    def spec(self) -> JobSpec:
        """What services.job_create takes (call after is_valid)."""
        data = self.cleaned_data
        return JobSpec(
            stage=data["stage"], base_artifact=data["base_artifact"],
            reward_artifact=data["reward_artifact"] if self.takes_reward_model else None, dataset=data["dataset"],
            mixture=data["mixture"], eval_dataset=data["eval_dataset"], config=self.config(),
            resources=self.resources(), output_name=data["output_name"],
        )

    def add_service_error(self, error: DomainError) -> None:
        """A service's error goes on the field it names (`config.x` → that
        setting's input), else above the form."""
        field = error.field or ""
        if field in ERROR_FIELDS:
            name = ERROR_FIELDS[field]
        elif field.startswith("config."):
            key = field.removeprefix("config.")
            nested = CONFIG_PREFIX + ".".join(key.split(".", 2)[:2])  # config.ppo.kl_coef → its own input
            name = nested if nested in self.fields else CONFIG_PREFIX + key.split(".", 1)[0]
        else:
            name = field
        self.add_error(name if name in self.fields else None, error.message)


def initial_from_job(job: Job) -> dict[str, Any]:
    """The form's starting values for "Clone": the job's data, resources and
    config (its config keys the current schema still has)."""
    initial: dict[str, Any] = {
        "stage": job.stage, "base_artifact": job.base_artifact_id, "reward_artifact": job.reward_artifact_id,
        "dataset": job.dataset_id, "mixture": job.mixture_id,
        "eval_dataset": job.eval_dataset_id, "output_name": job.output_name, "num_gpus": job.num_gpus,
        "queue": job.queue, "hostfile": job.hostfile,
    }
    for key, value in job.config.items():
        if key in STAGE_BLOCKS and isinstance(value, dict):
            for sub, sub_value in value.items():
                initial[f"{CONFIG_PREFIX}{key}.{sub}"] = sub_value
        else:
            initial[CONFIG_PREFIX + key] = value
    return initial
