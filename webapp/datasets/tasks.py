from __future__ import annotations

from celery import shared_task

from datetime import timedelta

from django.conf import settings

from webapp.datasets.services import dataset_process, dataset_requeue_stale


@shared_task(name="datasets.process")
def process_dataset(dataset_id: int) -> str | None:
    """Thin: the service claims the row (pending → processing) so a duplicate
    delivery does nothing."""
    dataset = dataset_process(dataset_id=dataset_id)
    return dataset.status if dataset else None


@shared_task(name="datasets.requeue_stale")
def requeue_stale_datasets() -> list[int]:
    """Periodic (beat): re-queue datasets whose worker died mid-file."""
    return dataset_requeue_stale(silent_for=timedelta(seconds=settings.DATASET_STALE_AFTER_S))
