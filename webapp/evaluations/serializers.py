from __future__ import annotations

import json
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from rest_framework import serializers

from webapp.evaluations.models import CandidateSource, Evaluation, JudgeLanguage, JudgeMode


class EvaluationSerializer(serializers.ModelSerializer):
    """An evaluation's settings and progress. The judge key is write-only:
    no field here reads it (not even encrypted)."""

    owner = serializers.CharField(source="owner.username", read_only=True)
    estimated_cost = serializers.FloatField(read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Evaluation
        fields = [
            "id", "owner", "name", "dataset", "a_source", "a_deployment", "a_label", "b_source", "b_deployment", "b_label",
            "generation_params", "judge_base_url", "judge_model", "mode", "language", "templates", "concurrency",
            "max_retries", "request_timeout_s", "sample_size", "seed", "reward_model", "price_prompt_per_1k",
            "price_completion_per_1k", "status", "phase", "attempt", "items_total", "answers_done", "judgments_total",
            "judgments_done", "judge_failures", "progress", "prompt_tokens", "completion_tokens", "estimated_cost", "error",
            "created_at", "started_at", "heartbeat_at", "finished_at",
        ]
        read_only_fields = fields

    def get_progress(self, evaluation: Evaluation) -> float | None:
        """Fraction of the judge calls done (answers come before them)."""
        if not evaluation.judgments_total:
            return None
        return round(min(evaluation.judgments_done / evaluation.judgments_total, 1.0), 4)


class AnswersField(serializers.Field):
    """An answers file: an uploaded file (multipart), or in a JSON body the
    JSONL text, or a list of {"id", "answer"} objects (written out as JSONL
    so that the service's checks, and their line numbers, are the same)."""

    def __init__(self, side: str, **kwargs: Any) -> None:
        self.side = side
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> UploadedFile | ContentFile:
        if isinstance(data, UploadedFile):
            return data
        if isinstance(data, str):
            return ContentFile(data.encode(), name=f"{self.side}_answers.jsonl")
        if isinstance(data, list):
            text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in data)
            return ContentFile(text.encode(), name=f"{self.side}_answers.jsonl")
        raise serializers.ValidationError("expected a file, JSONL text or a list of {\"id\", \"answer\"} objects")

    def to_representation(self, value: Any) -> Any:  # write-only in practice
        return getattr(value, "name", None)


class EvaluationCreateSerializer(serializers.Serializer):
    """Types only; every rule is the service's (check_evaluation). In a
    multipart body, generation_params and templates are JSON text."""

    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    dataset = serializers.IntegerField()
    a_source = serializers.ChoiceField(choices=CandidateSource.values, required=False, allow_null=True, default=None)
    a_deployment = serializers.IntegerField(required=False, allow_null=True, default=None)
    a_answers = AnswersField("a", required=False, allow_null=True, default=None)
    b_source = serializers.ChoiceField(choices=CandidateSource.values, required=False, allow_null=True, default=None)
    b_deployment = serializers.IntegerField(required=False, allow_null=True, default=None)
    b_answers = AnswersField("b", required=False, allow_null=True, default=None)
    generation_params = serializers.JSONField(required=False, default=dict)
    judge_base_url = serializers.CharField(max_length=500)
    judge_model = serializers.CharField(max_length=100)
    judge_api_key = serializers.CharField(write_only=True, required=False, allow_blank=True, default="", trim_whitespace=True)
    mode = serializers.ChoiceField(choices=JudgeMode.values, required=False, default=JudgeMode.SCORE_PAIR)
    language = serializers.ChoiceField(choices=JudgeLanguage.values, required=False, default=JudgeLanguage.ZH)
    templates = serializers.JSONField(required=False, allow_null=True, default=None)
    concurrency = serializers.IntegerField(required=False, default=8)
    max_retries = serializers.IntegerField(required=False, default=5)
    request_timeout_s = serializers.FloatField(required=False, default=120.0)
    sample_size = serializers.IntegerField(required=False, allow_null=True, default=None)
    seed = serializers.IntegerField(required=False, default=0)
    reward_model = serializers.IntegerField(required=False, allow_null=True, default=None)
    price_prompt_per_1k = serializers.FloatField(required=False, default=0.0)
    price_completion_per_1k = serializers.FloatField(required=False, default=0.0)
