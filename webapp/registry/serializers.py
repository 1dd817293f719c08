from __future__ import annotations

from rest_framework import serializers

from webapp.registry.models import ModelArtifact


class ModelArtifactSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = ModelArtifact
        fields = [
            "id", "name", "version", "architecture", "kind", "folder", "parent",
            "num_parameters", "description", "owner", "created_at",
        ]
        read_only_fields = fields
