from __future__ import annotations

from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.core.errors import ValidationFailed
from webapp.registry import imports, selectors, services
from webapp.registry.models import ArtifactKind, ModelArtifact
from webapp.registry.serializers import ModelArtifactSerializer

FOLDER_IMPORT_STAFF_ONLY = (
    "only staff may import from a folder on the server (it would let anyone read any folder there); "
    "upload the model as a .tar.gz instead"
)


class ArtifactListApi(generics.ListAPIView):
    serializer_class = ModelArtifactSerializer

    def get_queryset(self) -> QuerySet[ModelArtifact]:
        return selectors.artifact_list(user=self.request.user)


class ArtifactDetailApi(generics.RetrieveAPIView):
    serializer_class = ModelArtifactSerializer

    def get_queryset(self) -> QuerySet[ModelArtifact]:
        return selectors.artifact_list(user=self.request.user)


class ArtifactImportSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, allow_empty_file=True)
    folder = serializers.CharField(required=False, allow_blank=True, trim_whitespace=True, default="")
    name = serializers.CharField(required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(choices=ArtifactKind.choices, default=ArtifactKind.BASE)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class ArtifactImportApi(APIView):
    """POST /api/models/import/: multipart `file` (a .tar.gz, .tgz or .tar
    of a transformers model folder), or `folder` (a path on the server,
    staff only); `name` (defaults to the file or folder name), `kind`,
    `description`. 201 with the registered artifact."""

    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def post(self, request: Request) -> Response:
        form = ArtifactImportSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = form.validated_data
        upload, folder = data.get("file"), data["folder"]
        if (upload is None) == (not folder):
            raise ValidationFailed("send either `file` (a .tar.gz, .tgz or .tar upload) or `folder` (a path on the server)", field="file")
        common = {"owner": request.user, "kind": data["kind"], "description": data["description"]}
        if folder:
            if not request.user.is_staff:
                raise PermissionDenied(FOLDER_IMPORT_STAFF_ONLY)
            name = data["name"] or imports.name_from(folder)
            artifact = services.artifact_import_folder(name=name, source_folder=folder, **common)
        else:
            name = data["name"] or imports.name_from(upload.name or "")
            artifact = services.artifact_import_tarball(name=name, upload=upload, **common)
        return Response(ModelArtifactSerializer(artifact).data, status=status.HTTP_201_CREATED)


def download_response(request: Any, export: services.ArtifactExport) -> StreamingHttpResponse:
    """A streamed .tar.gz. Under ASGI the pieces come from an async iterator
    (Django would otherwise read a sync one into a single list)."""
    raw = getattr(request, "_request", request)
    content = export.achunks() if isinstance(raw, ASGIRequest) else export.chunks()
    response = StreamingHttpResponse(content, content_type="application/gzip")
    response["Content-Disposition"] = content_disposition_header(True, export.filename)
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # a proxy passes pieces on as they come
    return response


class ArtifactDownloadApi(APIView):
    """GET /api/models/{id}/download: the artifact's folder as
    <name>-v<version>.tar.gz, made while it is sent."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # `Accept: application/gzip` must not be a 406: errors fall back to JSON.
        return super().perform_content_negotiation(request, force=True)

    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        artifact = selectors.artifact_get(user=request.user, pk=pk)
        return download_response(request, services.artifact_export(artifact=artifact))
