from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import generics

from webapp.registry.models import ModelArtifact
from webapp.registry.selectors import artifact_list
from webapp.registry.serializers import ModelArtifactSerializer


class ArtifactListApi(generics.ListAPIView):
    serializer_class = ModelArtifactSerializer

    def get_queryset(self) -> QuerySet[ModelArtifact]:
        return artifact_list(user=self.request.user)


class ArtifactDetailApi(generics.RetrieveAPIView):
    serializer_class = ModelArtifactSerializer

    def get_queryset(self) -> QuerySet[ModelArtifact]:
        return artifact_list(user=self.request.user)
