from __future__ import annotations

from django.conf import settings
from django.db import models


class RequestLog(models.Model):
    """One /v1 call: who, which model, tokens in and out, latency, outcome.
    Summed per key on the API-keys page."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.CASCADE, related_name="api_requests")
    api_key = models.ForeignKey("accounts.ApiKey", null=True, on_delete=models.SET_NULL, related_name="requests")
    endpoint = models.CharField(max_length=40)
    model = models.CharField(max_length=128, blank=True)
    status_code = models.PositiveSmallIntegerField()
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    latency_ms = models.PositiveIntegerField(default=0)
    stream = models.BooleanField(default=False)
    error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["api_key", "created_at"])]
