from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from webapp.core.errors import ValidationFailed
from webapp.registry import selectors
from webapp.registry.apis import FOLDER_IMPORT_STAFF_ONLY
from webapp.registry.forms import FolderImportForm, TarballImportForm


@require_GET
def artifact_list(request: HttpRequest) -> HttpResponse:
    artifacts = selectors.artifact_list(user=request.user)
    return render(request, "registry/artifact_list.html", {"artifacts": artifacts})


@require_http_methods(["GET", "POST"])
def artifact_import(request: HttpRequest) -> HttpResponse:
    """Two forms: a tarball upload (the page script sends it to the API with
    a progress bar; without scripts it posts here) and, for staff, a folder
    on the server."""
    tarball_form = TarballImportForm(prefix="tarball")
    folder_form = FolderImportForm(prefix="folder") if request.user.is_staff else None
    status = 200
    if request.method == "POST":
        if request.POST.get("form") == "folder":
            if not request.user.is_staff:
                raise PermissionDenied(FOLDER_IMPORT_STAFF_ONLY)
            form = folder_form = FolderImportForm(request.POST, prefix="folder")
        else:
            form = tarball_form = TarballImportForm(request.POST, request.FILES, prefix="tarball")
        if form.is_valid():
            try:
                artifact = form.save(owner=request.user)
            except ValidationFailed as error:
                form.add_service_error(error)
            else:
                messages.success(request, f"Imported {artifact}: {artifact.architecture}, {artifact.num_parameters or 'unknown'} parameters.")
                return redirect("registry:artifact-detail", pk=artifact.pk)
        status = 400
    return render(request, "registry/artifact_import.html", {"tarball_form": tarball_form, "folder_form": folder_form}, status=status)


@require_GET
def artifact_detail(request: HttpRequest, pk: int) -> HttpResponse:
    artifact = selectors.artifact_get(user=request.user, pk=pk)
    context = {
        "artifact": artifact,
        "lineage": selectors.artifact_lineage(artifact=artifact),
        "children": selectors.artifact_list(user=request.user).filter(parent=artifact),
    }
    return render(request, "registry/artifact_detail.html", context)
