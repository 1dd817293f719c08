from __future__ import annotations

from typing import Any

from rest_framework import serializers

from inference.prompts import SEED_TEMPLATE
from webapp.deployments.models import BackendKind, Deployment
from webapp.deployments.services import DeploymentSpec
from webapp.registry.models import ModelArtifact
from webapp.registry.selectors import artifact_list


class ArtifactField(serializers.PrimaryKeyRelatedField):
    """Only the requesting user's visible registry models can be chosen."""

    def get_queryset(self) -> Any:
        return artifact_list(user=self.context["request"].user)


class DeploymentSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    artifact = ArtifactField(allow_null=True, required=False)
    upstream_api_key = serializers.CharField(write_only=True, required=False, allow_blank=True)
    has_upstream_api_key = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id", "name", "kind", "endpoint_url", "server_model", "artifact", "model_path", "prompt_template",
            "default_params", "options", "upstream_api_key", "has_upstream_api_key", "shared", "enabled",
            "description", "status", "status_detail", "checked_at", "owner", "created_at", "updated_at",
        ]
        read_only_fields = ["status", "status_detail", "checked_at", "owner", "created_at", "updated_at"]
        # Uniqueness is the service's rule (409 Conflict), not the serializer's.
        extra_kwargs = {"name": {"validators": []}}

    def get_has_upstream_api_key(self, deployment: Deployment) -> bool:
        return bool(deployment.upstream_api_key)


class DeploymentInputSerializer(serializers.Serializer):
    """Fields of a new deployment or of the "test connection" button."""

    name = serializers.CharField(max_length=128)
    kind = serializers.ChoiceField(choices=BackendKind.choices)
    endpoint_url = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    server_model = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    artifact = ArtifactField(allow_null=True, required=False, default=None)
    model_path = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    prompt_template = serializers.CharField(max_length=200, required=False, default=SEED_TEMPLATE, trim_whitespace=False)
    default_params = serializers.JSONField(required=False, default=dict)
    options = serializers.JSONField(required=False, default=dict)
    upstream_api_key = serializers.CharField(required=False, allow_blank=True, default="")
    shared = serializers.BooleanField(required=False, default=False)
    enabled = serializers.BooleanField(required=False, default=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")

    def spec(self) -> DeploymentSpec:
        return DeploymentSpec(**self.validated_data)


class TryInputSerializer(serializers.Serializer):
    prompt = serializers.CharField(max_length=20_000)
    max_tokens = serializers.IntegerField(min_value=1, max_value=4096, required=False, default=64)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)


class ServeLocallySerializer(serializers.Serializer):
    artifact = ArtifactField()

    def artifact_obj(self) -> ModelArtifact:
        return self.validated_data["artifact"]
