from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.accounts.models import ApiKey


def api_key_list(*, user: AbstractBaseUser) -> QuerySet[ApiKey]:
    # Keys are personal: even staff see only their own here (admin shows all).
    return ApiKey.objects.filter(owner=user)


def api_key_get(*, user: AbstractBaseUser, pk: int) -> ApiKey:
    return get_object_or_404(api_key_list(user=user), pk=pk)
