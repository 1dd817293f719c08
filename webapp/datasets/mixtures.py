"""Mixtures: datasets of one kind sampled by weight or row count into an
immutable, shuffled JSONL snapshot (the seed's importance sampling across
sources). Deterministic for a seed."""
from __future__ import annotations

import random
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from webapp.core.errors import ValidationFailed
from webapp.datasets.models import Dataset, DatasetStatus, Mixture, MixtureComponent
from webapp.datasets.services import dataset_path

MAX_MIXTURE_ROWS = 50_000_000


@dataclass(frozen=True)
class ComponentSpec:
    dataset: Dataset
    weight: float | None = None
    row_count: int | None = None


def mixture_plan(*, components: list[ComponentSpec]) -> list[dict[str, Any]]:
    """Rows taken from each source; validates before anything is written."""
    if not components:
        raise ValidationFailed("a mixture needs at least one dataset", field="components")
    kinds = {c.dataset.kind for c in components}
    if len(kinds) > 1:
        raise ValidationFailed(f"all datasets of a mixture must be of one kind, got {', '.join(sorted(kinds))}", field="components")
    plan = []
    for index, spec in enumerate(components):
        where = f"components[{index}]"
        if spec.dataset.status != DatasetStatus.READY:
            raise ValidationFailed(f"{where}: dataset {spec.dataset} is {spec.dataset.status}, not ready", field="components")
        if (spec.weight is None) == (spec.row_count is None):
            raise ValidationFailed(f"{where}: give a weight or a row count, not both", field="components")
        if spec.weight is not None and not spec.weight > 0:
            raise ValidationFailed(f"{where}: weight must be positive", field="components")
        if spec.row_count is not None and spec.row_count < 1:
            raise ValidationFailed(f"{where}: row count must be at least 1", field="components")
        rows = spec.row_count if spec.row_count is not None else max(1, round(spec.weight * spec.dataset.rows))
        plan.append({"dataset": spec.dataset.pk, "name": str(spec.dataset), "available": spec.dataset.rows, "rows": rows})
    if sum(p["rows"] for p in plan) > MAX_MIXTURE_ROWS:
        raise ValidationFailed(f"a mixture holds at most {MAX_MIXTURE_ROWS:,} rows", field="components")
    return plan


def _multiplicities(available: int, wanted: int, rng: random.Random) -> dict[int, int]:
    """Row index → copies: whole passes over the source (upsampling), then a
    sample without replacement for the remainder."""
    passes, remainder = divmod(wanted, available)
    counts = {i: passes for i in range(available)} if passes else {}
    for i in rng.sample(range(available), remainder):
        counts[i] = counts.get(i, 0) + 1
    return counts


def _materialise(plan: list[dict[str, Any]], datasets: dict[int, Dataset], seed: int, target: Path) -> None:
    shuffle = random.Random(seed)
    entries: list[tuple[float, int, int, int]] = []  # (sort key, source, offset, length)
    sources: list[Path] = []
    for source, item in enumerate(plan):
        dataset = datasets[item["dataset"]]
        path = dataset_path(dataset, "canonical.jsonl")
        sources.append(path)
        counts = _multiplicities(item["available"], item["rows"], random.Random(f"{seed}:{source}:{dataset.pk}"))
        offset = 0
        with path.open("rb") as handle:
            for index, line in enumerate(handle):
                for _ in range(counts.get(index, 0)):
                    entries.append((shuffle.random(), source, offset, len(line)))
                offset += len(line)
    entries.sort()
    handles = [p.open("rb") for p in sources]
    try:
        with target.open("wb") as out:
            for _, source, offset, length in entries:
                handle = handles[source]
                handle.seek(offset)
                out.write(handle.read(length))
    finally:
        for handle in handles:
            handle.close()


def mixture_create(*, owner: AbstractBaseUser, name: str, seed: int, components: list[ComponentSpec]) -> Mixture:
    name = name.strip()
    if not name:
        raise ValidationFailed("give the mixture a name", field="name")
    plan = mixture_plan(components=components)
    folder = f"mixtures/{owner.pk}/{uuid.uuid4().hex}"
    root = Path(settings.MEDIA_ROOT) / folder
    root.mkdir(parents=True)
    try:
        _materialise(plan, {c.dataset.pk: c.dataset for c in components}, seed, root / "mixture.jsonl")
        with transaction.atomic():
            mixture = Mixture.objects.create(
                owner=owner, name=name, kind=components[0].dataset.kind, seed=seed, folder=folder,
                rows=sum(p["rows"] for p in plan), per_source=plan,
            )
            MixtureComponent.objects.bulk_create(
                MixtureComponent(mixture=mixture, dataset=c.dataset, weight=c.weight, row_count=c.row_count) for c in components
            )
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return mixture


def mixture_path(mixture: Mixture) -> Path:
    return Path(settings.MEDIA_ROOT) / mixture.folder / "mixture.jsonl"


def mixture_delete(*, mixture: Mixture) -> None:
    folder = Path(settings.MEDIA_ROOT) / mixture.folder
    mixture.delete()
    transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
