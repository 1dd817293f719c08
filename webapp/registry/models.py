from __future__ import annotations

from django.conf import settings
from django.db import models


class ArtifactKind(models.TextChoices):
    BASE = "base", "Base model"
    POLICY = "policy", "Policy (PT / SFT / PPO / DPO output)"
    REWARD = "reward", "Reward model"
    ADAPTER = "adapter", "LoRA adapter"


class ModelArtifact(models.Model):
    """A model on disk (a folder under ARTIFACTS_ROOT) with its lineage:
    `parent` is the artifact it was trained from (base → pt → sft → rm/ppo/dpo)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_artifacts")
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    architecture = models.CharField(max_length=100, help_text="e.g. BloomForCausalLM, LlamaForCausalLM")
    kind = models.CharField(max_length=16, choices=ArtifactKind.choices)
    folder = models.CharField(max_length=500, help_text="path relative to ARTIFACTS_ROOT")
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    produced_by = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="artifacts")
    num_parameters = models.BigIntegerField(null=True, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name", "version"], name="registry_artifact_unique_version"),
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"
