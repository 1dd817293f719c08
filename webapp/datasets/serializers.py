from __future__ import annotations

from rest_framework import serializers

from webapp.datasets.formats import KINDS
from webapp.datasets.models import Dataset, Mixture


class DatasetSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "id", "name", "version", "kind", "format", "requested_format", "on_error", "txt_mode", "status",
            "processed_rows", "source_rows", "rows", "error_count", "error", "encoding", "original_name",
            "size_bytes", "stats", "category_map", "owner", "created_at", "started_at", "finished_at",
        ]
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)
    kind = serializers.ChoiceField(choices=KINDS)
    name = serializers.CharField(max_length=100, required=False, allow_blank=True)
    format = serializers.CharField(required=False, allow_blank=True, default="")
    on_error = serializers.ChoiceField(choices=["skip", "reject"], default="skip")
    txt_mode = serializers.ChoiceField(choices=["paragraphs", "lines"], default="paragraphs")
    category_map = serializers.JSONField(required=False, binary=True)  # a JSON string in the multipart form
    stats_model = serializers.IntegerField(required=False)


class DatasetPreviewSerializer(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True)
    kind = serializers.ChoiceField(choices=KINDS)
    category_map = serializers.JSONField(required=False, binary=True)
    format = serializers.CharField(required=False, allow_blank=True, default="")
    txt_mode = serializers.ChoiceField(choices=["paragraphs", "lines"], default="paragraphs")


class ComponentSerializer(serializers.Serializer):
    dataset = serializers.IntegerField()
    weight = serializers.FloatField(required=False)
    rows = serializers.IntegerField(required=False)


class MixtureCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    seed = serializers.IntegerField(default=0)
    components = ComponentSerializer(many=True)


class MixtureSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    path = serializers.SerializerMethodField()

    class Meta:
        model = Mixture
        fields = ["id", "name", "kind", "seed", "rows", "per_source", "path", "owner", "created_at"]
        read_only_fields = fields

    def get_path(self, mixture: Mixture) -> str:
        from webapp.datasets.mixtures import mixture_path

        return str(mixture_path(mixture))
