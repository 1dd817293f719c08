from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from inference.prompts import SEED_TEMPLATE

# What clients send as `model`: letters, digits and ._:/- as in "chatJD/bloomS2.1-FT".
MODEL_ID = RegexValidator(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$", "letters, digits and . _ : / - (starting with a letter or digit)")


class BackendKind(models.TextChoices):
    LOCAL = "local", "Local (transformers in the server)"
    TRITON = "triton", "Triton (FasterTransformer / TensorRT-LLM)"
    OPENAI = "openai", "OpenAI-compatible server (vLLM, TGI, OpenAI)"
    EMBEDDING = "embedding", "Embeddings (sentence-transformers)"


class HealthStatus(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    HEALTHY = "healthy", "Healthy"
    UNHEALTHY = "unhealthy", "Unhealthy"


class Deployment(models.Model):
    """A served model: `name` is the id clients send to /v1. The backend is
    built from these fields by `services.backend_config`; `status` is
    refreshed by Celery beat (`deployments.check_health`)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="deployments")
    name = models.CharField(max_length=128, unique=True, validators=[MODEL_ID])
    kind = models.CharField(max_length=16, choices=BackendKind.choices)
    endpoint_url = models.CharField(max_length=500, blank=True)
    server_model = models.CharField(max_length=200, blank=True, help_text="the model's name on the server")
    artifact = models.ForeignKey(
        "registry.ModelArtifact", null=True, blank=True, on_delete=models.PROTECT, related_name="deployments"
    )
    model_path = models.CharField(max_length=500, blank=True, help_text="a model or tokenizer folder on the server")
    prompt_template = models.CharField(max_length=200, default=SEED_TEMPLATE)
    default_params = models.JSONField(default=dict, blank=True)
    options = models.JSONField(default=dict, blank=True)
    # Write-only: never rendered or returned by the API.
    upstream_api_key = models.CharField(max_length=500, blank=True)
    shared = models.BooleanField(default=False, help_text="every user's API keys may call it")
    enabled = models.BooleanField(default=True)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=HealthStatus.choices, default=HealthStatus.UNKNOWN)
    status_detail = models.TextField(blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def serves_embeddings(self) -> bool:
        return self.kind == BackendKind.EMBEDDING
