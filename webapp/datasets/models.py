from __future__ import annotations

from django.conf import settings
from django.db import models


class DatasetKind(models.TextChoices):
    CORPUS = "corpus", "Corpus (continued pre-training)"
    INSTRUCTION = "instruction", "Instructions (SFT)"
    PREFERENCE = "preference", "Preference pairs (reward model, DPO)"
    PROMPTS = "prompts", "Prompts (PPO)"
    EVAL = "eval", "Evaluation questions"


class DatasetStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Dataset(models.Model):
    """An uploaded file and its canonical JSONL. Immutable once ready: a new
    upload under the same name is a new version."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=100)
    version = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=DatasetKind.choices)
    requested_format = models.CharField(max_length=40, blank=True, help_text="empty: detected from the rows")
    format = models.CharField(max_length=40, blank=True)
    on_error = models.CharField(max_length=8, choices=[("skip", "skip bad rows"), ("reject", "reject the file")], default="skip")
    txt_mode = models.CharField(max_length=16, choices=[("paragraphs", "blank-line separated"), ("lines", "one per line")], default="paragraphs")
    category_map = models.JSONField(default=dict, blank=True, help_text="eval: class → judge category")
    stats_model = models.ForeignKey("registry.ModelArtifact", null=True, blank=True, on_delete=models.SET_NULL)

    original_name = models.CharField(max_length=255, help_text="the uploaded file's base name, for display only")
    folder = models.CharField(max_length=255, help_text="under MEDIA_ROOT: original and canonical files")
    size_bytes = models.BigIntegerField(default=0)
    encoding = models.CharField(max_length=16, blank=True)

    status = models.CharField(max_length=16, choices=DatasetStatus.choices, default=DatasetStatus.PENDING)
    processed_rows = models.BigIntegerField(default=0)
    source_rows = models.BigIntegerField(default=0)
    rows = models.BigIntegerField(default=0)
    error_count = models.BigIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True, help_text="the first bad rows: {line, reason}")
    error = models.TextField(blank=True, help_text="why the file was refused")
    stats = models.JSONField(default=dict, blank=True)
    row_offsets = models.JSONField(default=list, blank=True, help_text="byte offset of every 1000th canonical row")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="last sign of life of the processing task")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["owner", "name", "version"], name="datasets_unique_version")]

    def __str__(self) -> str:
        return f"{self.name} v{self.version}"

    @property
    def is_terminal(self) -> bool:
        return self.status in (DatasetStatus.READY, DatasetStatus.FAILED)


class Mixture(models.Model):
    """Datasets of one kind sampled by weight or row count into an immutable
    JSONL snapshot that jobs reference (the seed's importance sampling)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mixtures")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=DatasetKind.choices)
    seed = models.IntegerField(default=0)
    folder = models.CharField(max_length=255)
    rows = models.BigIntegerField(default=0)
    per_source = models.JSONField(default=list, help_text="[{dataset, name, rows}] as materialised")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class MixtureComponent(models.Model):
    mixture = models.ForeignKey(Mixture, on_delete=models.CASCADE, related_name="components")
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="+")
    weight = models.FloatField(null=True, blank=True, help_text="rows = weight × dataset rows (2.0 upsamples)")
    row_count = models.BigIntegerField(null=True, blank=True, help_text="an exact number of rows instead")

    class Meta:
        ordering = ["id"]
