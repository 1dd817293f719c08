from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.http import FileResponse, HttpResponse
from rest_framework import generics, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.core.errors import ValidationFailed
from webapp.datasets.models import Dataset, Mixture
from webapp.jobs import pipelines, selectors, services
from webapp.jobs.models import Job, Pipeline
from webapp.jobs.serializers import (
    JobCreateSerializer, JobSerializer, PipelineCreateSerializer, PipelineSerializer,
)
from webapp.lib.query import int_query_param
from webapp.registry.models import ModelArtifact


def _row(model: type[Model], pk: int | None, field: str, label: str) -> Any:
    """The row or None; visibility is the service's check (same message)."""
    if pk is None:
        return None
    row = model.objects.filter(pk=pk).first()
    if row is None:
        raise ValidationFailed(f"no {label} with id {pk}", field=field)
    return row


class JobListCreateApi(generics.ListAPIView):
    serializer_class = JobSerializer
    parser_classes = [JSONParser]

    def get_queryset(self) -> QuerySet[Job]:
        params = self.request.query_params
        return selectors.job_list(user=self.request.user, status=params.get("status"), stage=params.get("stage"))

    def post(self, request: Request) -> Response:
        form = JobCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        job = services.job_create(owner=request.user, spec=services.JobSpec(
            stage=data["stage"],
            base_artifact=_row(ModelArtifact, data["base_artifact"], "base_artifact", "model"),
            reward_artifact=_row(ModelArtifact, data.get("reward_artifact"), "reward_artifact", "model"),
            dataset=_row(Dataset, data.get("dataset"), "dataset", "dataset"),
            mixture=_row(Mixture, data.get("mixture"), "mixture", "mixture"),
            eval_dataset=_row(Dataset, data.get("eval_dataset"), "eval_dataset", "dataset"),
            config=data["config"], resources=services.JobResources.from_dict(data["resources"]),
            output_name=data["output_name"],
        ))
        return Response(JobSerializer(job).data, status=status.HTTP_201_CREATED)


class JobDetailApi(generics.RetrieveAPIView):
    serializer_class = JobSerializer

    def get_queryset(self) -> QuerySet[Job]:
        return selectors.job_list(user=self.request.user)


class JobCancelApi(APIView):
    def post(self, request: Request, pk: int) -> Response:
        job = services.job_cancel(job=selectors.job_get(user=request.user, pk=pk))
        return Response(JobSerializer(job).data)


class JobResumeApi(APIView):
    def post(self, request: Request, pk: int) -> Response:
        job = services.job_resume(job=selectors.job_get(user=request.user, pk=pk))
        return Response(JobSerializer(job).data)


class JobEventsApi(APIView):
    def get(self, request: Request, pk: int) -> Response:
        job = selectors.job_get(user=request.user, pk=pk)
        after, limit = int_query_param(request, "after", 0), int_query_param(request, "limit", 100)
        events, has_more = selectors.job_events(job=job, after=after, limit=limit)
        return Response({"data": events, "has_more": has_more, "last_seq": events[-1]["seq"] if events else after})


class JobLogApi(APIView):
    """text/plain: the last `lines` (default 200) lines; `?full=1` the whole file."""

    def get(self, request: Request, pk: int) -> HttpResponse:
        job = selectors.job_get(user=request.user, pk=pk)
        if request.query_params.get("full") in ("1", "true", "yes"):
            path = selectors.job_log_file(job=job)
            if path is not None:
                return FileResponse(
                    path.open("rb"), content_type="text/plain; charset=utf-8", as_attachment=True,
                    filename=f"job-{job.pk}-log.txt",
                )
            return HttpResponse("", content_type="text/plain; charset=utf-8")
        text = selectors.job_log_tail(job=job, lines=max(1, min(int_query_param(request, "lines", 200), 10_000)))
        return HttpResponse(text, content_type="text/plain; charset=utf-8")


class PipelineListCreateApi(generics.ListAPIView):
    serializer_class = PipelineSerializer
    parser_classes = [JSONParser]

    def get_queryset(self) -> QuerySet[Pipeline]:
        return pipelines.pipeline_list(user=self.request.user)

    def post(self, request: Request) -> Response:
        form = PipelineCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        pipeline = pipelines.pipeline_create(
            owner=request.user, name=data["name"],
            base_artifact=_row(ModelArtifact, data["base_artifact"], "base_artifact", "model"),
            stages=pipelines.pipeline_stage_rows(stages=data["stages"], row=_row),
        )
        return Response(PipelineSerializer(pipeline).data, status=status.HTTP_201_CREATED)


class PipelineDetailApi(generics.RetrieveAPIView):
    serializer_class = PipelineSerializer

    def get_queryset(self) -> QuerySet[Pipeline]:
        return pipelines.pipeline_list(user=self.request.user)


class PipelineCancelApi(APIView):
    def post(self, request: Request, pk: int) -> Response:
        pipeline = pipelines.pipeline_cancel(pipeline=pipelines.pipeline_get(user=request.user, pk=pk))
        return Response(PipelineSerializer(pipeline).data)
