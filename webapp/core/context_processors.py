from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from webapp.core.navigation import SECTIONS


def navigation(request: HttpRequest) -> dict[str, Any]:
    match = getattr(request, "resolver_match", None)
    current = ""
    if match is not None:
        current = match.kwargs.get("section") or match.namespace or match.url_name or ""
    aliases = {"registry": "models", "accounts": "keys"}
    return {"nav_sections": SECTIONS, "nav_current": aliases.get(current, current)}
