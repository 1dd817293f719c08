"""Query-string parsing shared by the REST APIs."""
from __future__ import annotations

from rest_framework.request import Request

from webapp.core.errors import ValidationFailed


def int_query_param(request: Request, name: str, default: int) -> int:
    """A non-negative whole number from the query string (400 naming it)."""
    raw = request.query_params.get(name, default)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValidationFailed(f"{name} must be a whole number", field=name) from None
    if value < 0:
        raise ValidationFailed(f"{name} must not be negative", field=name)
    return value
