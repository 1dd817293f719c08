from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.datasets import mixtures, selectors, services
from webapp.datasets.models import Dataset, Mixture
from webapp.datasets.serializers import (
    DatasetPreviewSerializer,
    DatasetSerializer,
    DatasetUploadSerializer,
    MixtureCreateSerializer,
    MixtureSerializer,
)
from webapp.lib.query import int_query_param
from webapp.registry.selectors import artifact_get


class DatasetListCreateApi(generics.ListAPIView):
    serializer_class = DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Dataset]:
        return selectors.dataset_list(user=self.request.user)

    def post(self, request: Request) -> Response:
        form = DatasetUploadSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data: dict[str, Any] = form.validated_data
        upload = data["file"]
        stats_model = artifact_get(user=request.user, pk=data["stats_model"]) if "stats_model" in data else None
        dataset = services.dataset_create_from_upload(
            owner=request.user, name=data.get("name") or services.safe_display_name(upload.name).split(".")[0],
            kind=data["kind"], upload=upload, format=data["format"], on_error=data["on_error"],
            txt_mode=data["txt_mode"], category_map=data.get("category_map"), stats_model=stats_model,
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(generics.RetrieveDestroyAPIView):
    serializer_class = DatasetSerializer

    def get_queryset(self) -> QuerySet[Dataset]:
        return selectors.dataset_list(user=self.request.user)

    def perform_destroy(self, instance: Dataset) -> None:
        services.dataset_delete(dataset=instance)


class DatasetRowsApi(APIView):
    def get(self, request: Request, pk: int) -> Response:
        dataset = selectors.dataset_get(user=request.user, pk=pk)
        offset, limit = int_query_param(request, "offset", 0), int_query_param(request, "limit", 20)
        rows = selectors.dataset_rows(dataset=dataset, offset=offset, limit=limit)
        return Response({"offset": offset, "limit": limit, "total": dataset.rows, "rows": rows})


class DatasetErrorsApi(APIView):
    def get(self, request: Request, pk: int) -> Response:
        dataset = selectors.dataset_get(user=request.user, pk=pk)
        return Response({"error_count": dataset.error_count, "errors": dataset.errors, "error": dataset.error})


class DatasetPreviewApi(APIView):
    parser_classes = [MultiPartParser, FormParser]

    def post(self, request: Request) -> Response:
        form = DatasetPreviewSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        return Response(
            services.dataset_preview_upload(
                upload=data["file"], kind=data["kind"], format=data["format"], txt_mode=data["txt_mode"],
                category_map=data.get("category_map"),
            )
        )


def _component_specs(request: Request, items: list[dict[str, Any]]) -> list[mixtures.ComponentSpec]:
    return [
        mixtures.ComponentSpec(
            dataset=selectors.dataset_get(user=request.user, pk=item["dataset"]),
            weight=item.get("weight"), row_count=item.get("rows"),
        )
        for item in items
    ]


class MixtureListCreateApi(generics.ListAPIView):
    serializer_class = MixtureSerializer
    parser_classes = [JSONParser]

    def get_queryset(self) -> QuerySet[Mixture]:
        return selectors.mixture_list(user=self.request.user)

    def post(self, request: Request) -> Response:
        form = MixtureCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        mixture = mixtures.mixture_create(
            owner=request.user, name=data["name"], seed=data["seed"], components=_component_specs(request, data["components"])
        )
        return Response(MixtureSerializer(mixture).data, status=status.HTTP_201_CREATED)


class MixturePreviewApi(APIView):
    parser_classes = [JSONParser]

    def post(self, request: Request) -> Response:
        form = MixtureCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        plan = mixtures.mixture_plan(components=_component_specs(request, form.validated_data["components"]))
        return Response({"rows": sum(p["rows"] for p in plan), "per_source": plan})


class MixtureDetailApi(generics.RetrieveDestroyAPIView):
    serializer_class = MixtureSerializer

    def get_queryset(self) -> QuerySet[Mixture]:
        return selectors.mixture_list(user=self.request.user)

    def perform_destroy(self, instance: Mixture) -> None:
        mixtures.mixture_delete(mixture=instance)
