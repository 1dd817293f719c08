from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.core.errors import ValidationFailed
from webapp.datasets.models import Dataset
from webapp.deployments.models import Deployment
from webapp.evaluations import selectors, services
from webapp.evaluations.judging.prompts import default_templates
from webapp.evaluations.models import Evaluation, JudgeLanguage, JudgeMode
from webapp.evaluations.serializers import EvaluationCreateSerializer, EvaluationSerializer
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


class EvaluationListCreateApi(generics.ListAPIView):
    """GET: the user's evaluations (?status=, ?dataset=). POST: JSON, or
    multipart with the answers files as `a_answers` / `b_answers`."""

    serializer_class = EvaluationSerializer
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Evaluation]:
        params = self.request.query_params
        dataset = int_query_param(self.request, "dataset", 0)
        evaluations = selectors.evaluation_list(user=self.request.user, status=params.get("status"))
        return evaluations.filter(dataset_id=dataset) if dataset else evaluations

    def post(self, request: Request) -> Response:
        form = EvaluationCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = dict(form.validated_data)
        spec = services.EvaluationSpec(**{
            **data,
            "dataset": _row(Dataset, data["dataset"], "dataset", "dataset"),
            "a_deployment": _row(Deployment, data["a_deployment"], "a_deployment", "deployment"),
            "b_deployment": _row(Deployment, data["b_deployment"], "b_deployment", "deployment"),
            "reward_model": _row(ModelArtifact, data["reward_model"], "reward_model", "model"),
        })
        evaluation = services.evaluation_create(owner=request.user, spec=spec)
        return Response(EvaluationSerializer(evaluation).data, status=status.HTTP_201_CREATED)


class EvaluationDetailApi(generics.RetrieveDestroyAPIView):
    serializer_class = EvaluationSerializer

    def get_queryset(self) -> QuerySet[Evaluation]:
        return selectors.evaluation_list(user=self.request.user)

    def perform_destroy(self, instance: Evaluation) -> None:
        services.evaluation_delete(evaluation=instance)


class EvaluationCancelApi(APIView):
    def post(self, request: Request, pk: int) -> Response:
        evaluation = services.evaluation_cancel(evaluation=selectors.evaluation_get(user=request.user, pk=pk))
        return Response(EvaluationSerializer(evaluation).data)


class EvaluationResumeApi(APIView):
    def post(self, request: Request, pk: int) -> Response:
        evaluation = services.evaluation_resume(evaluation=selectors.evaluation_get(user=request.user, pk=pk))
        return Response(EvaluationSerializer(evaluation).data)


class EvaluationReportApi(APIView):
    """The report computed from the stored rows: final once the run ended,
    partial (unjudged questions count as unparsed) while it runs."""

    def get(self, request: Request, pk: int) -> Response:
        evaluation = selectors.evaluation_get(user=request.user, pk=pk)
        return Response(selectors.evaluation_report(evaluation=evaluation))


class EvaluationQuestionsApi(APIView):
    """?category= &outcome=win|tie|loss|unparsed|inconsistent &search= &offset= &limit="""

    def get(self, request: Request, pk: int) -> Response:
        evaluation = selectors.evaluation_get(user=request.user, pk=pk)
        params = request.query_params
        offset, limit = int_query_param(request, "offset", 0), int_query_param(request, "limit", 50)
        rows, total = selectors.question_rows(
            evaluation=evaluation, category=params.get("category") or None, outcome=params.get("outcome") or None,
            search=params.get("search") or None, offset=offset, limit=limit,
        )
        return Response({"data": rows, "total": total, "offset": offset, "limit": limit})


class EvaluationExportCsvApi(APIView):
    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        evaluation = selectors.evaluation_get(user=request.user, pk=pk)
        response = StreamingHttpResponse(selectors.export_csv(evaluation=evaluation), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="evaluation-{evaluation.pk}.csv"'
        return response


class EvaluationExportJsonApi(APIView):
    def get(self, request: Request, pk: int) -> HttpResponse:
        evaluation = selectors.evaluation_get(user=request.user, pk=pk)
        response = HttpResponse(selectors.export_json_bytes(evaluation=evaluation), content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="evaluation-{evaluation.pk}.json"'
        return response


class EvaluationTemplatesApi(APIView):
    """The default judge prompts for ?mode=score|verdict &language=zh|en."""

    def get(self, request: Request) -> Response:
        mode = request.query_params.get("mode") or JudgeMode.SCORE_PAIR
        language = request.query_params.get("language") or JudgeLanguage.ZH
        if mode not in JudgeMode.values:
            raise ValidationFailed(f"mode must be one of {', '.join(JudgeMode.values)}", field="mode")
        if language not in JudgeLanguage.values:
            raise ValidationFailed(f"language must be one of {', '.join(JudgeLanguage.values)}", field="language")
        return Response({"mode": mode, "language": language, "templates": default_templates(mode, language)})
