"""The deployment page form: it only parses the fields (types, JSON, choices
among the user's own registry models); every rule about what a deployment
needs lives in `services.check_spec`, whose errors the views put back on the
field they name."""
from __future__ import annotations

import copy
from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser

from inference.config import TRITON_PROTOCOLS, TRITON_TRANSPORTS
from inference.prompts import SEED_TEMPLATE
from webapp.core.errors import DomainError
from webapp.deployments.models import BackendKind, Deployment
from webapp.deployments.services import EDITABLE, DeploymentSpec
from webapp.registry.selectors import artifact_list

ALL_KINDS = tuple(BackendKind.values)
GENERATING = (BackendKind.LOCAL, BackendKind.TRITON, BackendKind.OPENAI)
REMOTE = (BackendKind.TRITON, BackendKind.OPENAI)

# Which kinds each kind-specific field applies to. The page hides the others
# (data-kinds) and the form does not store what the chosen kind ignores, so a
# URL typed before switching to "local" does not linger unseen in the row.
FIELD_KINDS: dict[str, tuple[str, ...]] = {
    "endpoint_url": REMOTE,
    "server_model": REMOTE,
    "prompt_template": GENERATING,
    "default_params": GENERATING,
    "protocol": (BackendKind.TRITON,),
    "transport": (BackendKind.TRITON,),
    "stream": (BackendKind.TRITON,),
    "upstream_api_key": (BackendKind.OPENAI,),
}
# The `options` keys this form edits; other keys (set through the API, e.g. a
# local model's max_batch_size) are kept as they are.
TRITON_OPTIONS = ("protocol", "transport", "stream")
BLANK: dict[str, Any] = {"endpoint_url": "", "server_model": "", "upstream_api_key": "", "default_params": {}}
PARAMS_EXAMPLE = '{"temperature": 0.95, "top_p": 0.7, "max_tokens": 128}'


class DeploymentForm(forms.Form):
    name = forms.CharField(
        max_length=128,
        help_text="The model id clients send to /v1, e.g. ecom-bloom-sft. Letters, digits and . _ : / -",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    kind = forms.ChoiceField(choices=BackendKind.choices, initial=BackendKind.LOCAL)
    endpoint_url = forms.CharField(
        label="Endpoint URL", max_length=500, required=False,
        help_text="Triton: http://host:8000 (HTTP) or host:8001 (gRPC). OpenAI-compatible: http://host:port/v1",
        widget=forms.TextInput(attrs={"placeholder": "http://gpu-box:8000/v1", "spellcheck": "false"}),
    )
    server_model = forms.CharField(
        label="Server model name", max_length=200, required=False,
        help_text="The model's name on that server (Triton model name, vLLM --served-model-name).",
    )
    artifact = forms.ModelChoiceField(
        label="Registry model", queryset=None, required=False, empty_label="— none —",
        help_text="The model to load (local), or whose tokenizer to use (Triton FasterTransformer).",
    )
    model_path = forms.CharField(
        label="Model / tokenizer folder", max_length=500, required=False,
        help_text="A folder on the server, instead of a registry model.",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )
    prompt_template = forms.CharField(
        max_length=200, strip=False, initial=SEED_TEMPLATE,
        help_text="How a user turn is written for the model: must contain {prompt}, or be chat_template "
                  "to use the tokenizer's own chat template.",
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )
    default_params = forms.JSONField(
        label="Default generation parameters", required=False, initial=dict,
        help_text=f"A JSON object; each request's own values win. E.g. {PARAMS_EXAMPLE}",
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": PARAMS_EXAMPLE, "spellcheck": "false"}),
    )
    protocol = forms.ChoiceField(
        label="Triton protocol", choices=[(p, p) for p in TRITON_PROTOCOLS], required=False, initial=TRITON_PROTOCOLS[0],
        help_text="fastertransformer: token ids in and out (tokenised here); tensorrtllm: text in and out.",
    )
    transport = forms.ChoiceField(
        label="Triton transport", choices=[(t, t) for t in TRITON_TRANSPORTS], required=False, initial="grpc",
    )
    stream = forms.BooleanField(
        label="Stream tokens (decoupled model, gRPC)", required=False,
        help_text="Only for a Triton model configured as decoupled.",
    )
    upstream_api_key = forms.CharField(
        label="Upstream API key", max_length=500, required=False, strip=True,
        help_text="Sent to the upstream server as a Bearer token; stored, never shown again.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )
    shared = forms.BooleanField(required=False, help_text="Every user's API keys may call it.")
    enabled = forms.BooleanField(required=False, initial=True, help_text="Disabled deployments refuse /v1 calls.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args: Any, user: AbstractBaseUser, deployment: Deployment | None = None, **kwargs: Any) -> None:
        self.deployment = deployment
        if deployment is not None:
            kwargs.setdefault("initial", initial_for(deployment))
        super().__init__(*args, **kwargs)
        self.fields["artifact"].queryset = artifact_list(user=user)
        if deployment is not None and deployment.upstream_api_key:
            self.fields["upstream_api_key"].help_text = (
                "A key is stored: leave blank to keep it (Test connection then runs without it), type a new one to replace it."
            )

    def clean_prompt_template(self) -> str:
        # Browsers submit textarea line breaks as CRLF; the template means LF.
        return self.cleaned_data["prompt_template"].replace("\r\n", "\n")

    def clean_default_params(self) -> Any:
        # Blank or null means "no defaults"; whether it is an object is the service's rule.
        value = self.cleaned_data["default_params"]
        return {} if value is None else value

    @property
    def layout(self) -> list[tuple[forms.BoundField, str]]:
        """(field, the kinds it applies to) in declaration order, for the
        template's data-kinds rows that the page script shows and hides."""
        return [(self[name], " ".join(FIELD_KINDS.get(name, ALL_KINDS))) for name in self.fields]

    def _values(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        kind = data["kind"]
        for name, kinds in FIELD_KINDS.items():
            if kind not in kinds and name in BLANK:
                data[name] = copy.copy(BLANK[name])
        kept = {k: v for k, v in (self.deployment.options if self.deployment else {}).items() if k not in TRITON_OPTIONS}
        if kind == BackendKind.TRITON:
            kept.update(protocol=data["protocol"] or TRITON_PROTOCOLS[0], transport=data["transport"] or "grpc",
                        stream=data["stream"])
        data["options"] = kept
        return {name: data[name] for name in EDITABLE}

    def spec(self) -> DeploymentSpec:
        """The fields of a new deployment (call after is_valid)."""
        return DeploymentSpec(**self._values())

    def changes(self) -> dict[str, Any]:
        """The edit page's changes (a blank API key keeps the stored one:
        deployment_update drops it)."""
        return self._values()

    def add_service_error(self, error: DomainError) -> None:
        """A service's ValidationFailed/Conflict goes on the field it names
        (`options` problems are the Triton fields'), else above the form."""
        field = {"options": "protocol"}.get(error.field or "", error.field)
        self.add_error(field if field in self.fields else None, error.message)


def initial_for(deployment: Deployment) -> dict[str, Any]:
    """The edit page's starting values (never the stored API key)."""
    initial = {name: getattr(deployment, name) for name in EDITABLE if name not in ("upstream_api_key", "options")}
    initial["artifact"] = deployment.artifact_id
    for name in TRITON_OPTIONS:
        if name in deployment.options:
            initial[name] = deployment.options[name]
    return initial
