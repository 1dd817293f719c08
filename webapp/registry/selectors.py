from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.lib.ownership import visible_to
from webapp.registry.models import ModelArtifact


def artifact_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[ModelArtifact]:
    return visible_to(ModelArtifact.objects.select_related("owner", "parent"), user)


def artifact_get(*, user: AbstractBaseUser | AnonymousUser, pk: int) -> ModelArtifact:
    return get_object_or_404(artifact_list(user=user), pk=pk)


def artifact_lineage(*, artifact: ModelArtifact) -> list[ModelArtifact]:
    """Ancestors from the root base model down to `artifact` itself."""
    chain = [artifact]
    seen = {artifact.pk}
    node = artifact
    while node.parent_id is not None and node.parent_id not in seen:
        node = ModelArtifact.objects.select_related("parent").get(pk=node.parent_id)
        seen.add(node.pk)
        chain.append(node)
    return list(reversed(chain))
