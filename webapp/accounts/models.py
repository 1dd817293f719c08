from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiKey(models.Model):
    """A bearer key for scripts and the OpenAI SDK.

    The raw key (`wbk_<prefix>_<secret>`) is shown once at creation; only its
    SHA-256 digest is stored. The prefix is stored in clear so a key can be
    found by index and recognised in the UI. A plain hash suffices because the
    secret carries 256 bits of entropy: there is nothing to brute-force.
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # /v1 requests this key may have in flight; empty: V1_MAX_CONCURRENT_PER_KEY.
    max_concurrent_requests = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} (wbk_{self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
