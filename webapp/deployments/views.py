"""Pages for deployments. The live parts (status over the notifications
socket, "test connection", "check now", the quick prompt) are page scripts
calling the REST API in webapp.deployments.apis."""
from __future__ import annotations

import json

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.core.errors import Conflict, NotFound, ValidationFailed
from webapp.deployments import selectors, services
from webapp.deployments.forms import DeploymentForm
from webapp.deployments.models import Deployment
from webapp.registry.selectors import artifact_get

# Option keys never shown on a page, whatever the API stored in `options`.
SECRET_WORDS = ("key", "secret", "token", "password")


def _deployment(request: HttpRequest, pk: int) -> Deployment:
    # Another user's deployment is absent (404), as on every page.
    try:
        return selectors.deployment_get(user=request.user, pk=pk)
    except NotFound as error:
        raise Http404(error.message) from None


@require_GET
def deployment_list(request: HttpRequest) -> HttpResponse:
    return render(request, "deployments/deployment_list.html", {"deployments": selectors.deployment_list(user=request.user)})


@require_http_methods(["GET", "POST"])
def deployment_new(request: HttpRequest) -> HttpResponse:
    form = DeploymentForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            deployment = services.deployment_create(owner=request.user, spec=form.spec())
        except (ValidationFailed, Conflict) as error:
            form.add_service_error(error)
        else:
            messages.success(request, f"Deployment “{deployment.name}” registered: clients call it as model=“{deployment.name}”.")
            return redirect("deployments:detail", pk=deployment.pk)
    return render(request, "deployments/deployment_form.html", {"form": form, "deployment": None})


@require_http_methods(["GET", "POST"])
def deployment_edit(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = _deployment(request, pk)
    form = DeploymentForm(request.POST or None, user=request.user, deployment=deployment)
    if request.method == "POST" and form.is_valid():
        try:
            deployment = services.deployment_update(deployment=deployment, changes=form.changes())
        except (ValidationFailed, Conflict) as error:
            form.add_service_error(error)
            deployment.refresh_from_db()  # a refused save may have left the new values on it
        else:
            messages.success(request, f"Deployment “{deployment.name}” saved; its status is checked again.")
            return redirect("deployments:detail", pk=deployment.pk)
    return render(request, "deployments/deployment_form.html", {"form": form, "deployment": deployment})


@require_GET
def deployment_detail(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = _deployment(request, pk)
    options = {k: v for k, v in deployment.options.items() if not any(word in k.lower() for word in SECRET_WORDS)}
    return render(request, "deployments/deployment_detail.html", {
        "deployment": deployment,
        "options": json.dumps(options, ensure_ascii=False) if options else "",
        "default_params": json.dumps(deployment.default_params, ensure_ascii=False) if deployment.default_params else "",
        "base_url": request.build_absolute_uri("/v1"),
    })


@require_POST
def deployment_delete(request: HttpRequest, pk: int) -> HttpResponse:
    deployment = _deployment(request, pk)
    services.deployment_delete(deployment=deployment)
    messages.success(request, f"Deployment “{deployment.name}” deleted: /v1 no longer serves it.")
    return redirect("deployments:index")


@require_POST
def serve_locally(request: HttpRequest, artifact_pk: int) -> HttpResponse:
    artifact = artifact_get(user=request.user, pk=artifact_pk)
    try:
        deployment = services.deployment_serve_locally(owner=request.user, artifact=artifact)
    except (ValidationFailed, Conflict) as error:
        messages.error(request, error.message)
        return redirect("registry:artifact-detail", pk=artifact.pk)
    messages.success(request, f"“{deployment.name}” serves {artifact} in this server; it loads on the first request.")
    return redirect("deployments:detail", pk=deployment.pk)
