"""Evaluations: a pairwise comparison of two candidates on an eval set,
judged by an OpenAI-compatible model in both answer orders.

One Evaluation row (settings, status, progress), one EvalItem per sampled
question (the two answers), one Judgment per item and order (`ab`: A's answer
shown first, `ba`: B's answer shown first). A restart only does what has no
row yet: answers are stored on the item, judgments are unique per order."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class CandidateSource(models.TextChoices):
    DEPLOYMENT = "deployment", "Deployment (answers generated)"
    ANSWERS = "answers", "Uploaded answers file"


class JudgeMode(models.TextChoices):
    SCORE_PAIR = "score", "Score pair (1–10 each)"
    VERDICT = "verdict", "Verdict ([[A]] / [[B]] / [[C]])"


class JudgeLanguage(models.TextChoices):
    ZH = "zh", "中文"
    EN = "en", "English"


class EvaluationStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATUSES = (EvaluationStatus.SUCCEEDED, EvaluationStatus.FAILED, EvaluationStatus.CANCELLED)


class Evaluation(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="evaluations")
    name = models.CharField(max_length=100)
    dataset = models.ForeignKey("datasets.Dataset", on_delete=models.PROTECT, related_name="evaluations")

    # Candidates: a deployment (answers generated with `generation_params`)
    # or an uploaded answers file, stored on the items at creation.
    a_source = models.CharField(max_length=16, choices=CandidateSource.choices)
    a_deployment = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    a_label = models.CharField(max_length=100, help_text="shown in reports: deployment name or file name")
    b_source = models.CharField(max_length=16, choices=CandidateSource.choices)
    b_deployment = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    b_label = models.CharField(max_length=100)
    generation_params = models.JSONField(default=dict, blank=True, help_text="sampling parameters for deployments")

    # Judge: any OpenAI-compatible endpoint. The key is encrypted at rest
    # (webapp.lib.secrets) and never rendered or returned.
    judge_base_url = models.CharField(max_length=500)
    judge_model = models.CharField(max_length=100)
    judge_api_key_encrypted = models.TextField(blank=True)
    mode = models.CharField(max_length=8, choices=JudgeMode.choices, default=JudgeMode.SCORE_PAIR)
    language = models.CharField(max_length=4, choices=JudgeLanguage.choices, default=JudgeLanguage.ZH)
    templates = models.JSONField(default=dict, help_text="category → judge prompt template, as asked")
    concurrency = models.PositiveIntegerField(default=8)
    max_retries = models.PositiveIntegerField(default=5)
    request_timeout_s = models.FloatField(default=120.0)
    sample_size = models.PositiveIntegerField(null=True, blank=True, help_text="empty: every question")
    seed = models.IntegerField(default=0)
    reward_model = models.ForeignKey(
        "registry.ModelArtifact", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="optional: score every answer with this reward model too")
    # USD per 1,000 tokens, for the estimate on the report
    price_prompt_per_1k = models.FloatField(default=0.0)
    price_completion_per_1k = models.FloatField(default=0.0)

    status = models.CharField(max_length=16, choices=EvaluationStatus.choices, default=EvaluationStatus.QUEUED)
    phase = models.CharField(max_length=16, blank=True, help_text="answers | rewards | judging")
    attempt = models.PositiveIntegerField(default=0)
    items_total = models.PositiveIntegerField(default=0)
    answers_done = models.PositiveIntegerField(default=0)
    judgments_total = models.PositiveIntegerField(default=0)
    judgments_done = models.PositiveIntegerField(default=0)
    judge_failures = models.PositiveIntegerField(default=0, help_text="calls that failed after every retry")
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    error = models.TextField(blank=True)
    # Kept for lists and the leaderboard; pages and the API compute the report
    # from the rows (selectors.evaluation_report), in category order: a JSON
    # column keeps no key order on PostgreSQL (jsonb sorts keys).
    report = models.JSONField(default=dict, blank=True, help_text="GET /api/evaluations/{id}/report, kept when done")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["owner", "-created_at"], name="evaluations_owner_created")]

    def __str__(self) -> str:
        return f"evaluation {self.pk} {self.name} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def estimated_cost(self) -> float:
        return (self.prompt_tokens * self.price_prompt_per_1k + self.completion_tokens * self.price_completion_per_1k) / 1000


class EvalItem(models.Model):
    """One sampled question and both candidates' answers (null until made)."""

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="items")
    position = models.PositiveIntegerField(help_text="order in the sample")
    question_id = models.CharField(max_length=200)
    question = models.TextField()
    category = models.CharField(max_length=50)
    reference = models.TextField(blank=True)
    answer_a = models.TextField(null=True, blank=True)
    answer_b = models.TextField(null=True, blank=True)
    answer_a_error = models.TextField(blank=True)
    answer_b_error = models.TextField(blank=True)
    reward_a = models.FloatField(null=True, blank=True)
    reward_b = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["evaluation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["evaluation", "question_id"], name="evaluations_item_unique_question"),
        ]

    def __str__(self) -> str:
        return f"item {self.question_id} of evaluation {self.evaluation_id}"


class JudgeOrder(models.TextChoices):
    AB = "ab", "A first"
    BA = "ba", "B first"


class Judgment(models.Model):
    """The judge's reply for one item in one order. Scores and verdicts are
    stored in candidate terms (score_a is A's score whichever came first);
    `parsed` False keeps the raw text and leaves the item out of the means."""

    item = models.ForeignKey(EvalItem, on_delete=models.CASCADE, related_name="judgments")
    order = models.CharField(max_length=2, choices=JudgeOrder.choices)
    prompt = models.TextField(help_text="the exact text sent to the judge")
    raw = models.TextField(blank=True)
    parsed = models.BooleanField(default=False)
    parse_error = models.CharField(max_length=300, blank=True)
    score_a = models.FloatField(null=True, blank=True)
    score_b = models.FloatField(null=True, blank=True)
    verdict = models.CharField(max_length=1, blank=True, help_text="a | b | t (tie), in candidate terms")
    error = models.TextField(blank=True, help_text="the call failed after every retry")
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["item", "order"]
        constraints = [models.UniqueConstraint(fields=["item", "order"], name="evaluations_judgment_unique_order")]

    def __str__(self) -> str:
        return f"judgment {self.order} of {self.item_id}"
