from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.jobs.models import Job, JobStage, Pipeline


class JobSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.username", read_only=True)
    resources = serializers.SerializerMethodField()
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id", "owner", "stage", "status", "base_artifact", "reward_artifact", "dataset", "mixture", "eval_dataset", "config",
            "output_name", "resources", "attempt", "cancel_requested", "step", "total_steps", "progress", "metrics",
            "eval_metrics", "checkpoint_step", "result", "error", "output_artifact", "worker", "heartbeat_at",
            "created_at", "started_at", "finished_at", "pipeline", "pipeline_index", "depends_on", "inputs",
        ]
        read_only_fields = fields

    def get_resources(self, job: Job) -> dict[str, Any]:
        return {"queue": job.queue, "num_gpus": job.num_gpus, "hostfile": job.hostfile}

    def get_progress(self, job: Job) -> float | None:
        """Fraction of optimizer steps done (None before the start event)."""
        if not job.total_steps:
            return None
        return round(min(job.step / job.total_steps, 1.0), 4)


class JobCreateSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=JobStage.values)
    base_artifact = serializers.IntegerField()
    reward_artifact = serializers.IntegerField(required=False, allow_null=True, help_text="ppo: the reward model")
    dataset = serializers.IntegerField(required=False, allow_null=True)
    mixture = serializers.IntegerField(required=False, allow_null=True)
    eval_dataset = serializers.IntegerField(required=False, allow_null=True)
    config = serializers.JSONField(required=False, default=dict)
    resources = serializers.JSONField(required=False, default=dict)
    output_name = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class PipelineSerializer(serializers.ModelSerializer):
    """A pipeline with its jobs in stage order; `output_artifact` is the last
    stage's output once the pipeline succeeded."""

    owner = serializers.CharField(source="owner.username", read_only=True)
    jobs = serializers.SerializerMethodField()
    output_artifact = serializers.SerializerMethodField()

    class Meta:
        model = Pipeline
        fields = ["id", "owner", "name", "status", "error", "base_artifact", "output_artifact", "jobs", "created_at", "finished_at"]
        read_only_fields = fields

    def _jobs(self, pipeline: Pipeline) -> list[Job]:
        return sorted(pipeline.jobs.all(), key=lambda job: job.pipeline_index or 0)

    def get_jobs(self, pipeline: Pipeline) -> list[dict[str, Any]]:
        return JobSerializer(self._jobs(pipeline), many=True).data

    def get_output_artifact(self, pipeline: Pipeline) -> int | None:
        jobs = self._jobs(pipeline)
        return jobs[-1].output_artifact_id if jobs and pipeline.status == "succeeded" else None


class PipelineCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    base_artifact = serializers.IntegerField()
    # [{stage, dataset | mixture, eval_dataset?, config?, resources?, output_name?, inputs?,
    #   reward_artifact?}]; checked by the service.
    stages = serializers.JSONField()
