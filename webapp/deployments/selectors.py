"""Reads for deployments."""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Q, QuerySet

from webapp.core.errors import NotFound
from webapp.deployments.models import Deployment
from webapp.lib.ownership import visible_to


def deployment_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Deployment]:
    """What the user manages (own; staff: all)."""
    return visible_to(Deployment.objects.select_related("artifact", "owner"), user)


def deployment_get(*, user: AbstractBaseUser | AnonymousUser, pk: int) -> Deployment:
    try:
        return deployment_list(user=user).get(pk=pk)
    except Deployment.DoesNotExist:
        raise NotFound(f"deployment {pk} not found") from None


def servable_deployments(*, user: AbstractBaseUser) -> QuerySet[Deployment]:
    """What the user's API keys may call: enabled, and own or shared."""
    queryset = Deployment.objects.filter(enabled=True).select_related("artifact", "owner")
    if user.is_staff:
        return queryset
    return queryset.filter(Q(owner=user) | Q(shared=True))


def servable_deployment(*, user: AbstractBaseUser, name: str) -> Deployment | None:
    return servable_deployments(user=user).filter(name=name).first()
