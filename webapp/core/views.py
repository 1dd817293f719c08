from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from webapp.core.health import system_health
from webapp.core.navigation import SECTIONS
from webapp.registry.selectors import artifact_list


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    artifacts = artifact_list(user=request.user)[:5]
    return render(request, "core/home.html", {"artifacts": artifacts, "sections": SECTIONS})


@require_GET
def section_pending(request: HttpRequest, section: str) -> HttpResponse:
    """A navigation section whose feature has not shipped in this build."""
    entry = next(s for s in SECTIONS if s.key == section)
    return render(request, "core/section_pending.html", {"section": entry})


@never_cache
@login_not_required
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    report = system_health()
    return JsonResponse(report, status=200 if report["status"] == "ok" else 503)
