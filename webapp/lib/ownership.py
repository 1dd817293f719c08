"""Owner scoping: every domain object has an `owner`; users see their own,
staff see everyone's. Reads go through here so that another user's object is
simply absent (404), never forbidden (403, which would confirm it exists)."""
from __future__ import annotations

from typing import TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)


def visible_to(queryset: QuerySet[M], user: AbstractBaseUser | AnonymousUser) -> QuerySet[M]:
    if not user.is_authenticated:
        return queryset.none()
    if user.is_staff:
        return queryset
    return queryset.filter(owner=user)
