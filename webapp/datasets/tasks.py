from __future__ import annotations

from celery import shared_task

from webapp.datasets.services import dataset_process


@shared_task(name="datasets.process")
def process_dataset(dataset_id: int) -> str | None:
    """Thin: the service claims the row (pending → processing) so a duplicate
    delivery does nothing."""
    dataset = dataset_process(dataset_id=dataset_id)
    return dataset.status if dataset else None
