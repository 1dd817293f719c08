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


def next_version(queryset: QuerySet[M]) -> int:
    """1 + the highest `version` among `queryset`'s rows (one owner's rows of
    one name), locking them so concurrent creations can't take the same one.
    Call inside a transaction."""
    from django.db.models import Max

    top = queryset.select_for_update().aggregate(top=Max("version"))["top"]
    return (top or 0) + 1
