"""Domain exceptions and the JSON error envelope.

Services raise these; webapp.core.api_errors maps them to HTTP. Every JSON
error has the envelope of the OpenAI API, so SDK users and scripts parse one
shape: `{"error": {"message": ..., "type": ..., "code": ..., "param": ...}}`.
"""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of business-rule failures raised by services."""

    code = "invalid_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(DomainError):
    code = "invalid_request"


class NotFound(DomainError):
    code = "not_found"


class Conflict(DomainError):
    code = "conflict"


class UpstreamFailed(DomainError):
    """A model server or other engine behind us failed (502)."""

    code = "backend_error"


def error_body(message: str, error_type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "code": code, "param": param}}
