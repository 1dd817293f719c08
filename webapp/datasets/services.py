"""Writes for datasets: upload, processing, deletion."""
from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from webapp.core.errors import Conflict, ValidationFailed
from webapp.core.notify import notify_user
from webapp.datasets.formats import BY_NAME, DEFAULT_CATEGORY_MAP, KINDS, categorise
from webapp.datasets.ingest import IngestError, IngestOptions, ingest, preview
from webapp.datasets.models import Dataset, DatasetStatus, MixtureComponent
from webapp.datasets.stats import StatsCollector, TokenCounter, tokenizer_counter
from webapp.lib.ownership import next_version
from webapp.registry.models import ModelArtifact

log = logging.getLogger(__name__)
OFFSET_EVERY = 1000  # rows between stored byte offsets (paged reads)
PREVIEW_BYTES = 1024 * 1024


def dataset_path(dataset: Dataset, name: str) -> Path:
    return Path(settings.MEDIA_ROOT) / dataset.folder / name


def safe_display_name(raw: str) -> str:
    """The base name only (`../../etc/passwd` → `passwd`), printable, bounded."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = "".join(ch for ch in base if ch.isprintable()).strip() or "upload"
    return cleaned[:255]


def check_upload_options(*, name: str, kind: str, format: str, on_error: str, txt_mode: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed("give the dataset a name", field="name")
    if len(name) > 100:
        raise ValidationFailed("names are at most 100 characters", field="name")
    if kind not in KINDS:
        raise ValidationFailed(f"kind must be one of {', '.join(KINDS)}", field="kind")
    if format:
        fmt = BY_NAME.get(format)
        allowed = {kind} | ({"instruction", "preference"} if kind == "prompts" else set())
        if fmt is None or fmt.kind not in allowed:
            names = ", ".join(f.name for f in BY_NAME.values() if f.kind in allowed)
            raise ValidationFailed(f"format {format!r} is not a {kind} format; use one of {names}", field="format")
    if on_error not in ("skip", "reject"):
        raise ValidationFailed("on_error must be skip or reject", field="on_error")
    if txt_mode not in ("paragraphs", "lines"):
        raise ValidationFailed("txt_mode must be paragraphs or lines", field="txt_mode")
    return name


def _store_upload(upload: UploadedFile, target: Path) -> int:
    """Stream the upload to disk; refuse it past the size limit."""
    limit = settings.DATASET_MAX_UPLOAD_BYTES
    written = 0
    with target.open("wb") as handle:
        for chunk in upload.chunks():
            written += len(chunk)
            if written > limit:
                raise ValidationFailed(f"the file is over the upload limit of {limit // (1024 * 1024)} MiB", field="file")
            handle.write(chunk)
    if written == 0:
        raise ValidationFailed("the file is empty", field="file")
    return written


def dataset_create_from_upload(
    *,
    owner: AbstractBaseUser,
    name: str,
    kind: str,
    upload: UploadedFile,
    format: str = "",
    on_error: str = "skip",
    txt_mode: str = "paragraphs",
    category_map: dict[str, str] | None = None,
    stats_model: ModelArtifact | None = None,
) -> Dataset:
    """Store the upload under a fresh folder and queue its processing."""
    name = check_upload_options(name=name, kind=kind, format=format, on_error=on_error, txt_mode=txt_mode)
    check_category_map(category_map)
    folder = f"datasets/{owner.pk}/{uuid.uuid4().hex}"
    root = Path(settings.MEDIA_ROOT) / folder
    root.mkdir(parents=True)
    try:
        size = _store_upload(upload, root / "original")
        with transaction.atomic():
            dataset = Dataset.objects.create(
                owner=owner, name=name, version=next_version(Dataset.objects.filter(owner=owner, name=name)), kind=kind, requested_format=format,
                on_error=on_error, txt_mode=txt_mode, category_map=category_map if category_map is not None else dict(DEFAULT_CATEGORY_MAP),
                stats_model=stats_model, original_name=safe_display_name(upload.name or ""), folder=folder, size_bytes=size,
            )
            from webapp.datasets.tasks import process_dataset

            transaction.on_commit(lambda: process_dataset.delay(dataset.pk))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # nothing half-stored
        raise
    return dataset


def check_category_map(category_map: Any) -> dict[str, str] | None:
    if category_map is not None and not (
        isinstance(category_map, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in category_map.items())
    ):
        raise ValidationFailed("category_map must map class names to category names", field="category_map")
    return category_map


def dataset_preview_upload(
    *, upload: UploadedFile, kind: str, format: str = "", txt_mode: str = "paragraphs", category_map: Any = None
) -> dict[str, Any]:
    """Detected format and the first converted rows (as processing will write
    them), from the upload's first MiB; nothing is stored."""
    check_upload_options(name="preview", kind=kind, format=format, on_error="skip", txt_mode=txt_mode)
    mapping = check_category_map(category_map) or DEFAULT_CATEGORY_MAP
    with tempfile.NamedTemporaryFile(suffix=".preview") as handle:
        taken = 0
        for chunk in upload.chunks():
            handle.write(chunk[: PREVIEW_BYTES - taken])
            taken += len(chunk)
            if taken >= PREVIEW_BYTES:
                break
        handle.flush()
        options = IngestOptions(kind=kind, format=format or None, txt_mode=txt_mode)
        try:
            result = preview(Path(handle.name), options)
        except IngestError as exc:
            raise ValidationFailed(str(exc), field="file") from None
    if kind == "eval":
        result["rows"] = [categorise(row, mapping) for row in result["rows"]]
    return result


class _OffsetWriter:
    """A text sink for ingest that writes UTF-8 and records the byte offset of
    every OFFSET_EVERY-th row, so any page of rows is one seek away."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.position = 0
        self.rows = 0
        self.offsets: list[int] = []
        self.in_row = False

    def write(self, text: str) -> None:
        if text == "\n":
            self.rows += 1
            self.in_row = False
        elif not self.in_row:
            if self.rows % OFFSET_EVERY == 0:
                self.offsets.append(self.position)
            self.in_row = True
        data = text.encode("utf-8")
        self.handle.write(data)
        self.position += len(data)


def _token_counter(dataset: Dataset) -> tuple[TokenCounter | None, str | None]:
    """Token counts with the chosen registry model's tokenizer, else the demo
    model's; (None, None) when neither is there."""
    from webapp.core.demo import DEMO_MODEL_NAME

    artifact = dataset.stats_model or ModelArtifact.objects.filter(name=DEMO_MODEL_NAME).order_by("-created_at").first()
    if artifact is None:
        return None, None
    try:
        return tokenizer_counter(str(Path(settings.ARTIFACTS_ROOT) / artifact.folder)), str(artifact)
    except Exception:  # a broken model folder must not fail the dataset
        log.warning("no tokenizer for dataset stats from %s", artifact, exc_info=True)
        return None, None


def _claim(dataset_id: int) -> Dataset | None:
    now = timezone.now()
    claimed = Dataset.objects.filter(pk=dataset_id, status=DatasetStatus.PENDING).update(
        status=DatasetStatus.PROCESSING, started_at=now, heartbeat_at=now
    )
    return Dataset.objects.get(pk=dataset_id) if claimed else None


def dataset_requeue_stale(*, silent_for: timedelta) -> list[int]:
    """Datasets whose processing task stopped beating (its worker died) go
    back to pending and are queued again; returns their ids. Progress beats
    every 10,000 rows, so a live task is never silent for minutes."""
    from webapp.datasets.tasks import process_dataset

    cutoff = timezone.now() - silent_for
    requeued = []
    for pk in Dataset.objects.filter(status=DatasetStatus.PROCESSING, heartbeat_at__lt=cutoff).values_list("pk", flat=True):
        # Conditional update: a task that beats meanwhile keeps its row.
        if Dataset.objects.filter(pk=pk, status=DatasetStatus.PROCESSING, heartbeat_at__lt=cutoff).update(
            status=DatasetStatus.PENDING, processed_rows=0
        ):
            requeued.append(pk)
            transaction.on_commit(lambda pk=pk: process_dataset.delay(pk))
    return requeued


def dataset_process(*, dataset_id: int) -> Dataset | None:
    """Validate, normalise and profile a pending dataset. Safe to run twice:
    only the run that moves it from pending to processing does the work."""
    dataset = _claim(dataset_id)
    if dataset is None:
        return None
    options = IngestOptions(
        kind=dataset.kind, format=dataset.requested_format or None, on_error=dataset.on_error, txt_mode=dataset.txt_mode
    )
    count_tokens, tokenizer_name = _token_counter(dataset)
    collector = StatsCollector(count_tokens=count_tokens, seed=dataset.pk)
    mapping = dataset.category_map or DEFAULT_CATEGORY_MAP
    transform = (lambda row: categorise(row, mapping)) if dataset.kind == "eval" else None

    def progress(rows: int) -> None:
        Dataset.objects.filter(pk=dataset.pk).update(processed_rows=rows, heartbeat_at=timezone.now())
        notify_user(user_id=dataset.owner_id, payload={"event": "dataset.progress", "id": dataset.pk, "processed_rows": rows})

    partial = dataset_path(dataset, "canonical.jsonl.part")
    try:
        with partial.open("wb") as handle:
            writer = _OffsetWriter(handle)
            report = ingest(
                dataset_path(dataset, "original"), writer, options, on_row=collector.add, on_progress=progress,
                transform=transform, on_source=collector.add_source,
            )
        partial.rename(dataset_path(dataset, "canonical.jsonl"))
    except Exception as exc:
        message = str(exc) if isinstance(exc, IngestError) else f"internal error: {type(exc).__name__}: {exc}"
        if not isinstance(exc, IngestError):
            log.exception("dataset %s failed", dataset.pk)
        shutil.rmtree(Path(settings.MEDIA_ROOT) / dataset.folder, ignore_errors=True)  # no orphan files
        Dataset.objects.filter(pk=dataset.pk).update(status=DatasetStatus.FAILED, error=message, finished_at=timezone.now())
        notify_user(user_id=dataset.owner_id, payload={"event": "dataset.failed", "id": dataset.pk, "error": message})
        return Dataset.objects.get(pk=dataset.pk)
    stats = collector.result()
    stats["tokenizer"] = tokenizer_name if count_tokens is not None else None
    Dataset.objects.filter(pk=dataset.pk).update(
        status=DatasetStatus.READY, format=report.format, encoding=report.encoding, source_rows=report.source_rows,
        processed_rows=report.source_rows, rows=report.rows, error_count=report.error_count,
        errors=[e.as_dict() for e in report.errors], stats=stats, row_offsets=writer.offsets, finished_at=timezone.now(),
    )
    notify_user(user_id=dataset.owner_id, payload={"event": "dataset.ready", "id": dataset.pk, "rows": report.rows})
    return Dataset.objects.get(pk=dataset.pk)


def dataset_delete(*, dataset: Dataset) -> None:
    if MixtureComponent.objects.filter(dataset=dataset).exists():
        raise Conflict("a mixture uses this dataset; delete the mixture first")
    folder = Path(settings.MEDIA_ROOT) / dataset.folder
    dataset.delete()
    transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))
