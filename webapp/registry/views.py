from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from webapp.registry import selectors


@require_GET
def artifact_list(request: HttpRequest) -> HttpResponse:
    artifacts = selectors.artifact_list(user=request.user)
    return render(request, "registry/artifact_list.html", {"artifacts": artifacts})


@require_GET
def artifact_detail(request: HttpRequest, pk: int) -> HttpResponse:
    artifact = selectors.artifact_get(user=request.user, pk=pk)
    context = {
        "artifact": artifact,
        "lineage": selectors.artifact_lineage(artifact=artifact),
        "children": selectors.artifact_list(user=request.user).filter(parent=artifact),
    }
    return render(request, "registry/artifact_detail.html", context)
