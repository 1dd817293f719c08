"""Conversations, their messages, 👍/👎 feedback and arena battles.

A deployment may be removed while its history stays: rows keep the model's
name as text (`model_name`) and point at the deployment with SET_NULL."""
from __future__ import annotations

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    """One chat thread. `model_name`, `system_prompt` and `params` are the
    page's current settings (the picker and the parameter panel); each answer
    records what it was actually generated with."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    deployment = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="conversations"
    )
    model_name = models.CharField(max_length=128, blank=True)
    system_prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="the parameter panel's values, as sent")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [models.Index(fields=["owner", "-updated_at"], name="chat_conv_owner_recent")]

    def __str__(self) -> str:
        return self.title or f"conversation {self.pk}"


class Role(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class MessageStatus(models.TextChoices):
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"


class Message(models.Model):
    """A user turn or an answer. Regenerate and edit-and-resend do not delete:
    they set `active` False on what they replace, so feedback on an earlier
    answer survives (and pairs with the new one for preference data). The
    thread shown and sent to the model is the active messages in id order."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    reply_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="answers",
        help_text="answers: the user message they answer",
    )
    active = models.BooleanField(default=True)
    model_name = models.CharField(max_length=128, blank=True)
    params = models.JSONField(default=dict, blank=True, help_text="answers: the decoding parameters used")
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.COMPLETE)
    error = models.TextField(blank=True)
    finish_reason = models.CharField(max_length=16, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True, help_text="time to the first text")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["conversation", "active", "id"], name="chat_msg_thread")]

    def __str__(self) -> str:
        return f"{self.role} {self.pk}"


class Feedback(models.Model):
    """👍 (+1) or 👎 (-1) on an answer, one per user and answer."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="feedback")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_feedback")
    rating = models.SmallIntegerField(choices=[(1, "👍"), (-1, "👎")])
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message", "owner"], name="chat_feedback_once"),
            models.CheckConstraint(condition=models.Q(rating__in=[1, -1]), name="chat_feedback_rating"),
        ]


class Vote(models.TextChoices):
    A = "a", "A is better"
    B = "b", "B is better"
    TIE = "tie", "Tie"
    BOTH_BAD = "both_bad", "Both are bad"


class SideStatus(models.TextChoices):
    PENDING = "pending", "Streaming"
    COMPLETE = "complete", "Complete"
    STOPPED = "stopped", "Stopped"
    ERROR = "error", "Error"


class ArenaBattle(models.Model):
    """One prompt answered by two models side by side. With `anonymous`, the
    names are hidden (API and socket) until the vote. Each side's columns are
    written only by that side's stream, so the two never overwrite each other."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="arena_battles")
    prompt = models.TextField()
    system_prompt = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    anonymous = models.BooleanField(default=False)
    deployment_a = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deployment_b = models.ForeignKey(
        "deployments.Deployment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model_a = models.CharField(max_length=128)
    model_b = models.CharField(max_length=128)
    answer_a = models.TextField(blank=True)
    answer_b = models.TextField(blank=True)
    status_a = models.CharField(max_length=16, choices=SideStatus.choices, default=SideStatus.PENDING)
    status_b = models.CharField(max_length=16, choices=SideStatus.choices, default=SideStatus.PENDING)
    error_a = models.TextField(blank=True)
    error_b = models.TextField(blank=True)
    stats_a = models.JSONField(default=dict, blank=True, help_text="tokens, latency_ms, ttft_ms, finish_reason")
    stats_b = models.JSONField(default=dict, blank=True)
    vote = models.CharField(max_length=16, choices=Vote.choices, blank=True)
    voted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"battle {self.pk}"

    @property
    def revealed(self) -> bool:
        return not self.anonymous or bool(self.vote)

    @property
    def finished(self) -> bool:
        return SideStatus.PENDING not in (self.status_a, self.status_b)
