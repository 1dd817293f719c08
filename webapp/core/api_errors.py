"""The one table that maps exceptions to HTTP errors, and DRF's handler.

Kept apart from webapp.core.errors because importing DRF's views loads its
settings, which import the authentication classes, which import services."""
from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from webapp.core.errors import Conflict, DomainError, NotFound, UpstreamFailed, ValidationFailed, error_body

# exception class -> (HTTP status, error type)
ERROR_TABLE: dict[type[BaseException], tuple[int, str]] = {
    ValidationFailed: (400, "invalid_request_error"),
    NotFound: (404, "not_found_error"),
    Conflict: (409, "conflict_error"),
    UpstreamFailed: (502, "api_error"),
    Http404: (404, "not_found_error"),
    PermissionDenied: (403, "permission_error"),
    drf.NotAuthenticated: (401, "authentication_error"),
    drf.AuthenticationFailed: (401, "authentication_error"),
    drf.PermissionDenied: (403, "permission_error"),
    drf.NotFound: (404, "not_found_error"),
    drf.MethodNotAllowed: (405, "invalid_request_error"),
    drf.ParseError: (400, "invalid_request_error"),
    drf.ValidationError: (400, "invalid_request_error"),
    drf.Throttled: (429, "rate_limit_error"),
}


def _lookup(exc: BaseException) -> tuple[int, str] | None:
    for klass in type(exc).__mro__:
        if klass in ERROR_TABLE:
            return ERROR_TABLE[klass]
    return None


def _message(exc: BaseException) -> tuple[str, str | None]:
    if isinstance(exc, drf.ValidationError):
        detail = exc.detail
        if isinstance(detail, dict):
            field, problems = next(iter(detail.items()))
            problem = problems[0] if isinstance(problems, list) else problems
            return f"{field}: {problem}", str(field)
        if isinstance(detail, list) and detail:
            return str(detail[0]), None
    if isinstance(exc, DomainError):
        return exc.message, exc.field
    if isinstance(exc, drf.APIException):
        return str(exc.detail), None
    if isinstance(exc, Http404):
        return "Not found.", None
    return str(exc) or type(exc).__name__, None


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    mapped = _lookup(exc)
    if mapped is None:
        return drf_exception_handler(exc, context)  # unknown: let it be a 500
    status, error_type = mapped
    message, param = _message(exc)
    code = exc.code if isinstance(exc, DomainError) else getattr(exc, "default_code", None)
    response = Response(error_body(message, error_type, code, param), status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
