"""Reads for the /v1 request log."""
from __future__ import annotations

from typing import Any

from django.db.models import Count, Max, Q, QuerySet, Sum

from webapp.accounts.models import ApiKey


def usage_by_key(*, keys: QuerySet[ApiKey]) -> list[dict[str, Any]]:
    """Per key: /v1 requests, errors, tokens in/out, last call."""
    rows = (
        keys.order_by()
        .annotate(
            request_count=Count("requests"),
            errors=Count("requests", filter=Q(requests__status_code__gte=400)),
            prompt_tokens=Sum("requests__prompt_tokens", default=0),
            completion_tokens=Sum("requests__completion_tokens", default=0),
            last_request_at=Max("requests__created_at"),
        )
        .values("id", "name", "request_count", "errors", "prompt_tokens", "completion_tokens", "last_request_at")
    )
    return list(rows)
