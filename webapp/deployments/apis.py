from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.deployments import selectors, services
from webapp.deployments.models import Deployment
from webapp.deployments.serializers import (
    DeploymentInputSerializer,
    DeploymentSerializer,
    ServeLocallySerializer,
    TryInputSerializer,
)


class DeploymentListApi(generics.ListAPIView):
    serializer_class = DeploymentSerializer

    def get_queryset(self) -> QuerySet[Deployment]:
        return selectors.deployment_list(user=self.request.user)

    def post(self, request: Request) -> Response:
        data = DeploymentInputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        deployment = services.deployment_create(owner=request.user, spec=data.spec())
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)


class DeploymentDetailApi(APIView):
    def get(self, request: Request, pk: int) -> Response:
        return Response(DeploymentSerializer(selectors.deployment_get(user=request.user, pk=pk)).data)

    def patch(self, request: Request, pk: int) -> Response:
        deployment = selectors.deployment_get(user=request.user, pk=pk)
        data = DeploymentSerializer(deployment, data=request.data, partial=True, context={"request": request})
        data.is_valid(raise_exception=True)
        deployment = services.deployment_update(deployment=deployment, changes=dict(data.validated_data))
        return Response(DeploymentSerializer(deployment).data)

    def delete(self, request: Request, pk: int) -> Response:
        services.deployment_delete(deployment=selectors.deployment_get(user=request.user, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class DeploymentCheckApi(APIView):
    """Refresh the health now (the beat does it every 30 s)."""

    def post(self, request: Request, pk: int) -> Response:
        deployment = services.deployment_check_health(deployment=selectors.deployment_get(user=request.user, pk=pk))
        return Response(DeploymentSerializer(deployment).data)


class DeploymentTestConnectionApi(APIView):
    """The form's "test connection" button: checks fields without saving."""

    def post(self, request: Request) -> Response:
        data = DeploymentInputSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        health = services.deployment_test_connection(spec=data.spec())
        return Response({"ok": health.ok, "detail": health.detail})


class DeploymentTryApi(APIView):
    """The detail page's quick prompt box (session auth; no API key needed)."""

    def post(self, request: Request, pk: int) -> Response:
        deployment = selectors.deployment_get(user=request.user, pk=pk)
        data = TryInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(services.deployment_try(deployment=deployment, **data.validated_data))


class ServeLocallyApi(APIView):
    def post(self, request: Request) -> Response:
        data = ServeLocallySerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        deployment = services.deployment_serve_locally(owner=request.user, artifact=data.artifact_obj())
        return Response(DeploymentSerializer(deployment).data, status=status.HTTP_201_CREATED)
