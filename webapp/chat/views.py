"""The chat console's pages: the chat (/chat/, /chat/<id>/) and the arena
(/chat/arena/). Server-rendered shells with the sidebar, the model picker
and the recent battles; the live parts (streaming over /ws/chat/, REST calls
under /api/chat/) are the page scripts static/js/chat.js and arena.js."""
from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.chat import selectors
from webapp.chat.models import Conversation
from webapp.core.errors import NotFound
from webapp.deployments.models import HealthStatus

SIDEBAR_SIZE = 100
RECENT_BATTLES = 20


def _picker(request: HttpRequest) -> list[dict[str, Any]]:
    """The model picker, healthy (and not yet checked) models first; each
    with the parameter panel's defaults."""
    models = [
        {"name": d.name, "kind": d.kind, "status": d.status, "default_params": d.default_params or {}}
        for d in selectors.chat_deployments(user=request.user).order_by("name")
    ]
    return sorted(models, key=lambda m: m["status"] == HealthStatus.UNHEALTHY)


@require_GET
def chat_page(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    conversation: Conversation | None = None
    if pk is not None:
        try:
            conversation = selectors.conversation_get(user=request.user, pk=pk)
        except NotFound as error:
            raise Http404(error.message) from None  # another user's chat reads as absent
    return render(request, "chat/chat.html", {
        "conversation": conversation,
        "conversations": selectors.conversation_list(user=request.user)[:SIDEBAR_SIZE],
        "models": _picker(request),
    })


@require_GET
def arena_page(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/arena.html", {
        "battles": selectors.battle_list(user=request.user)[:RECENT_BATTLES],
        "models": _picker(request),
    })
