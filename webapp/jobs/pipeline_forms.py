"""The pipeline form: a name, a base model, then the recipe's stages in
order (pt → sft → rm → ppo, with dpo offered in place of ppo; a stage the
CLI does not accept is shown disabled). Per stage: include it or not, a
dataset of the kind it trains on and a short subset of the training settings
(schema-driven like the job form, pre-filled with the stage defaults); rm,
ppo and dpo train from the SFT policy and ppo scores with the rm stage's
model (pipelines.stage_inputs), or with a registry reward model when rm is
left out. Every rule lives in
`pipelines.pipeline_create`; its errors (`stages[1].config.learning_rate`)
go back on the input of the stage they name."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from webapp.core.errors import DomainError
from webapp.datasets.models import Dataset, DatasetStatus
from webapp.jobs import training_cli
from webapp.jobs.forms import ArtifactChoiceField, DataChoiceField, _data_label, _nullable, cli_stages, schema_field
from webapp.jobs.models import JobStage, stage_data_kinds
from webapp.registry.models import ArtifactKind
from webapp.lib.ownership import visible_to
from webapp.registry.selectors import artifact_list

# The recipe, in the order its stages run.
RECIPE = ("pt", "sft", "rm", "ppo", "dpo")
# The settings shown per stage; the others keep the stage defaults.
CONFIG_SUBSET = ("max_steps", "epochs", "learning_rate", "global_batch_size", "micro_batch_size", "max_length")
UNAVAILABLE_REASON = "the training CLI does not accept this stage"
# dpo is the alternative to ppo: offered, not ticked.
INCLUDED_BY_DEFAULT = ("pt", "sft", "rm", "ppo")
_STAGE_ERROR = re.compile(r"^stages\[(\d+)\](?:\.(.*))?$")
_RESOURCE_FIELDS = {"resources.queue": "queue", "resources.num_gpus": "num_gpus", "resources": "num_gpus",
                    "resources.hostfile": None}


def _name(stage: str, field: str) -> str:
    return f"{stage}_{field}"


@dataclass
class StageSection:
    """One stage of the recipe, laid out for the template."""

    stage: str
    label: str
    kind: str
    available: bool
    reason: str = ""
    include: forms.BoundField | None = None
    dataset: forms.BoundField | None = None
    models: list[forms.BoundField] | None = None
    config: list[forms.BoundField] | None = None


class PipelineForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="To tell pipelines apart, e.g. “appliances recipe”.")
    base_artifact = ArtifactChoiceField(label="Base model", queryset=None,
                                        help_text="The registry model the first stage trains from.")
    output_name = forms.CharField(
        label="Output name", max_length=100, required=False,
        help_text="Registry name of the last stage's model; blank: <base>-<stage>.",
    )

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["base_artifact"].queryset = artifact_list(user=user).exclude(kind=ArtifactKind.ADAPTER)
        self.available = [stage for stage in RECIPE if stage in cli_stages()]
        datasets = visible_to(Dataset.objects.all(), user).order_by("name", "-id")
        schema = training_cli.config_schema().get("properties", {})
        self.config_keys: dict[str, list[str]] = {}
        # Stage index in the submitted list → stage (set by stages()).
        self.stage_order: list[str] = []
        for stage in self.available:
            kinds = stage_data_kinds(stage)
            kind = " or ".join(kinds)
            defaults = training_cli.stage_defaults(stage)
            self.fields[_name(stage, "include")] = forms.BooleanField(
                label=f"Include {stage}", required=False, initial=stage in INCLUDED_BY_DEFAULT,
            )
            if stage == "ppo":
                self.fields[_name(stage, "reward_artifact")] = ArtifactChoiceField(
                    label="Reward model", required=False, empty_label="— the rm stage's —",
                    queryset=artifact_list(user=user).filter(kind=ArtifactKind.REWARD),
                    help_text="Only when the rm stage is left out: a trained reward model from the registry.",
                )
            # The menu offers the ready data of the stage's kind; any visible
            # dataset is accepted here so the service judges (and names) it.
            field = DataChoiceField(label="Dataset", queryset=datasets, required=False, empty_label="— none —",
                                    help_text=f"A ready {kind} dataset.")
            field.widget.choices = [("", "— none —"), *(
                (d.pk, _data_label(d)) for d in datasets if d.kind in kinds and d.status == DatasetStatus.READY)]
            self.fields[_name(stage, "dataset")] = field
            keys = []
            for key in CONFIG_SUBSET:
                if key not in schema:
                    continue
                field = schema_field(key, schema[key], defaults.get(key))
                _, nullable = _nullable(schema[key])
                field.required = False  # a stage left out needs none; see config()
                if not nullable:
                    note = "blank: the stage default"
                    field.help_text = f"{field.help_text}; {note}" if field.help_text else note
                field.initial = defaults.get(key)
                self.fields[_name(stage, f"config_{key}")] = field
                keys.append(key)
            self.config_keys[stage] = keys

        queues = [queue.name for queue in settings.CELERY_TASK_QUEUES]
        self.fields["num_gpus"] = forms.IntegerField(
            label="GPUs per node", min_value=0, initial=0,
            help_text="For every stage. 0: one training process; N: the deepspeed launcher with N ranks.",
        )
        self.fields["queue"] = forms.ChoiceField(
            choices=[(q, q) for q in queues], initial="gpu" if "gpu" in queues else queues[0],
            help_text="Celery queue of the workers that may run the stages.",
        )

    # --- layout for the template

    def general_fields(self) -> list[forms.BoundField]:
        return [self["name"], self["base_artifact"]]

    def resource_fields(self) -> list[forms.BoundField]:
        return [self["num_gpus"], self["queue"]]

    def sections(self) -> list[StageSection]:
        result = []
        for stage in RECIPE:
            section = StageSection(stage=stage, label=JobStage(stage).label, kind=" or ".join(stage_data_kinds(stage)),
                                   available=stage in self.available)
            if section.available:
                section.include = self[_name(stage, "include")]
                section.dataset = self[_name(stage, "dataset")]
                section.models = [self[name] for name in (_name(stage, "reward_artifact"),) if name in self.fields]
                section.config = [self[_name(stage, f"config_{key}")] for key in self.config_keys[stage]]
            else:
                section.reason = UNAVAILABLE_REASON
            result.append(section)
        return result

    # --- values for the service

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not any(data.get(_name(stage, "include")) for stage in self.available):
            raise forms.ValidationError("Include at least one stage.")
        return data

    def config(self, stage: str) -> dict[str, Any]:
        """The stage's overrides: nullable settings as entered (blank: not
        set); a blank required one keeps the stage default."""
        schema = training_cli.config_schema().get("properties", {})
        result = {}
        for key in self.config_keys[stage]:
            value = self.cleaned_data.get(_name(stage, f"config_{key}"))
            _, nullable = _nullable(schema[key])
            if value is not None or nullable:
                result[key] = value
        return result

    def stages(self) -> list[dict[str, Any]]:
        data = self.cleaned_data
        included = [stage for stage in self.available if data.get(_name(stage, "include"))]
        self.stage_order = included
        resources = {"queue": data["queue"], "num_gpus": data["num_gpus"]}
        specs = []
        for index, stage in enumerate(included):
            spec: dict[str, Any] = {"stage": stage, "dataset": data.get(_name(stage, "dataset")),
                                    "config": self.config(stage), "resources": dict(resources)}
            if stage == "ppo" and "rm" not in included and data.get(_name(stage, "reward_artifact")):
                spec["reward_artifact"] = data[_name(stage, "reward_artifact")]
            if index == len(included) - 1 and data.get("output_name"):
                spec["output_name"] = data["output_name"]
            specs.append(spec)
        return specs

    def create_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of pipelines.pipeline_create (call after is_valid)."""
        return {"name": self.cleaned_data["name"], "base_artifact": self.cleaned_data["base_artifact"],
                "stages": self.stages()}

    def add_service_error(self, error: DomainError) -> None:
        """`stages[i].<field>` → that stage's input (`config.x` → its setting
        `x`, `dataset`/`mixture` → its dataset, `output_name` → the output
        name, `resources.*` → the resource inputs); else above the form."""
        field, message = error.field or "", error.message
        name: str | None = field if field in ("name", "base_artifact") else None
        match = _STAGE_ERROR.match(field)
        if match and int(match.group(1)) < len(self.stage_order):
            stage, rest = self.stage_order[int(match.group(1))], match.group(2) or ""
            message = re.sub(r"^stages\[\d+\]: ", f"{stage}: ", message)
            if rest.startswith("config."):
                name = _name(stage, f"config_{rest.split('.', 2)[1]}")
            elif rest in ("dataset", "mixture", "eval_dataset"):
                name = _name(stage, "dataset")
            elif rest == "output_name":
                name = "output_name"
            elif rest == "reward_artifact":
                name = _name(stage, "reward_artifact")
            elif rest in _RESOURCE_FIELDS:
                name = _RESOURCE_FIELDS[rest]
            elif rest == "config":
                name = None
            else:
                name = _name(stage, "include")
        self.add_error(name if name in self.fields else None, message)
