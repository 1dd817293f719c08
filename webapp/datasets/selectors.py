from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from webapp.datasets.models import Dataset, DatasetStatus, Mixture
from webapp.datasets.services import OFFSET_EVERY, dataset_path
from webapp.lib.ownership import visible_to

User = AbstractBaseUser | AnonymousUser
MAX_PAGE = 200


def dataset_list(*, user: User) -> QuerySet[Dataset]:
    return visible_to(Dataset.objects.select_related("owner"), user)


def dataset_get(*, user: User, pk: int) -> Dataset:
    return get_object_or_404(dataset_list(user=user), pk=pk)


def dataset_rows(*, dataset: Dataset, offset: int, limit: int) -> list[dict[str, Any]]:
    """Canonical rows [offset, offset + limit): one seek to the stored offset
    of the row's block, then at most OFFSET_EVERY lines skipped."""
    if dataset.status != DatasetStatus.READY or offset >= dataset.rows:
        return []
    limit = max(0, min(limit, MAX_PAGE))
    block = offset // OFFSET_EVERY
    rows: list[dict[str, Any]] = []
    with dataset_path(dataset, "canonical.jsonl").open("rb") as handle:
        handle.seek(dataset.row_offsets[block])
        for _ in range(offset - block * OFFSET_EVERY):
            handle.readline()
        for _ in range(limit):
            line = handle.readline()
            if not line:
                break
            rows.append(json.loads(line))
    return rows


def mixture_list(*, user: User) -> QuerySet[Mixture]:
    return visible_to(Mixture.objects.select_related("owner").prefetch_related("components__dataset"), user)


def mixture_get(*, user: User, pk: int) -> Mixture:
    return get_object_or_404(mixture_list(user=user), pk=pk)
