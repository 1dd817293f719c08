"""Training jobs: one row per job (status, progress, the attempt that runs
it), one JobEvent row per progress line of the `training_jobs` CLI."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class JobStage(models.TextChoices):
    PT = "pt", "Continued pre-training"
    SFT = "sft", "Supervised fine-tuning"
    RM = "rm", "Reward model"
    PPO = "ppo", "PPO"
    DPO = "dpo", "DPO"


class JobStatus(models.TextChoices):
    # A pipeline stage whose input job has not succeeded yet (no base artifact).
    WAITING = "waiting", "Waiting"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)

# The dataset kind each stage trains on (webapp.datasets.models.DatasetKind),
# and the kinds it also reads: PPO samples from the prompts of preference rows.
STAGE_DATA_KIND = {"pt": "corpus", "sft": "instruction", "rm": "preference", "dpo": "preference", "ppo": "prompts"}
STAGE_ALSO_READS = {"ppo": ("preference",)}


def stage_data_kinds(stage: str) -> tuple[str, ...]:
    return (STAGE_DATA_KIND[stage], *STAGE_ALSO_READS.get(stage, ()))


# Model inputs of a stage besides base_model, by the CLI's config field.
STAGE_MODEL_INPUTS = {"ppo": ("reward_model",)}


class PipelineStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class Pipeline(models.Model):
    """Linked jobs (the recipe pt → sft → …): job N + 1 trains from job N's
    output and starts when it succeeds (webapp.jobs.pipelines)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="pipelines")
    name = models.CharField(max_length=100)
    base_artifact = models.ForeignKey(
        "registry.ModelArtifact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="the model the first stage trains from",
    )
    status = models.CharField(max_length=16, choices=PipelineStatus.choices, default=PipelineStatus.QUEUED)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="pipelines_owner_created")]

    def __str__(self) -> str:
        return f"pipeline {self.pk} {self.name} ({self.status})"


class Job(models.Model):
    """A training run of one stage. `attempt` counts claims by a worker:
    attempt N writes into the same output folder, so attempt N > 1 resumes
    from the last checkpoint of the attempts before it."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    stage = models.CharField(max_length=8, choices=JobStage.choices)
    # Unset only while a pipeline stage is `waiting` for its input job.
    base_artifact = models.ForeignKey(
        "registry.ModelArtifact", null=True, blank=True, on_delete=models.PROTECT, related_name="jobs"
    )
    # ppo: the frozen reward model (also the critic's start); unset elsewhere.
    reward_artifact = models.ForeignKey(
        "registry.ModelArtifact", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # Exactly one of dataset / mixture. SET_NULL keeps the job's history when
    # its data is deleted; a queued job then fails with the reason.
    dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    mixture = models.ForeignKey("datasets.Mixture", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    eval_dataset = models.ForeignKey("datasets.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    config = models.JSONField(
        default=dict, blank=True, help_text="the stage defaults with the user's overrides; paths are added at run time"
    )
    output_name = models.CharField(max_length=100, blank=True, help_text="registry name of the output; default <base>-<stage>")

    queue = models.CharField(max_length=50, default="gpu", help_text="Celery queue of the workers that may run it")
    num_gpus = models.PositiveSmallIntegerField(default=0, help_text="0: one process; N: the deepspeed launcher, N per node")
    hostfile = models.TextField(blank=True, help_text="deepspeed hostfile (`host slots=N` lines) for multi-node runs")

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    attempt = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    # The last JobEvent.seq handed out. Writers bump it with an UPDATE in the
    # transaction that inserts their events, so the row lock orders them and
    # two writers (a runner and the sweep) never take the same number.
    event_seq = models.PositiveIntegerField(default=0)
    step = models.PositiveIntegerField(default=0)
    total_steps = models.PositiveIntegerField(null=True, blank=True)
    metrics = models.JSONField(default=dict, blank=True, help_text="the last `metrics` event")
    eval_metrics = models.JSONField(default=dict, blank=True, help_text="the last `eval` event")
    checkpoint_step = models.PositiveIntegerField(null=True, blank=True, help_text="step of the last checkpoint")
    result = models.JSONField(default=dict, blank=True, help_text="metrics of the `done` event")
    error = models.TextField(blank=True)
    output_artifact = models.ForeignKey(
        "registry.ModelArtifact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    pipeline = models.ForeignKey(Pipeline, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs")
    pipeline_index = models.PositiveSmallIntegerField(null=True, blank=True, help_text="0-based stage number in its pipeline")
    depends_on = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="dependents",
        help_text="the pipeline's previous stage: this one is queued when it succeeds",
    )
    inputs = models.JSONField(
        default=dict, blank=True,
        help_text="pipeline stages: model field → index of the earlier stage whose output it takes, e.g. "
        '{"base_model": 1, "reward_model": 2}',
    )

    worker = models.CharField(max_length=255, blank=True, help_text="Celery node name of the current/last attempt")
    pid = models.IntegerField(null=True, blank=True, help_text="training process (group leader) on that worker")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="jobs_owner_created"),
            models.Index(fields=["status", "heartbeat_at"], name="jobs_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.stage}, {self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobEvent(models.Model):
    """One progress event (`kind` = the CLI's `event`: start, note, metrics,
    eval, checkpoint, cancelled, done, error) or a status change of the row
    (`kind` = "status"). `seq` grows by one per job across attempts, so
    `?after=<seq>` pages through them."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    attempt = models.PositiveIntegerField(default=0)
    kind = models.CharField(max_length=16)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "seq"]
        constraints = [models.UniqueConstraint(fields=["job", "seq"], name="jobs_event_unique_seq")]

    def __str__(self) -> str:
        return f"{self.job_id}#{self.seq} {self.kind}"
