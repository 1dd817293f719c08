"""Job events: rows in JobEvent and pushes to the websocket groups.

Every push goes to the owner's group `user.<id>` (the notification socket of
every page) and to `job.<id>` (for a job page that subscribes to one job),
after the transaction that wrote the change commits. Payloads:

- `{"event": "job.progress", "id", "status", "step", "total_steps", "events": [{seq, attempt, kind, data}]}`
- `{"event": "job.status", "id", "status", "attempt", "error", "output_artifact", "seq"}`
"""
from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import F

from webapp.core.consumers import user_group
from webapp.jobs.models import Job, JobEvent

log = logging.getLogger(__name__)


def job_group(job_id: int) -> str:
    """Channels group of one job's page."""
    return f"job.{job_id}"


def notify_job(*, job_id: int, owner_id: int, payload: dict[str, Any]) -> None:
    """Push `payload` to the owner's and the job's groups once the current
    transaction commits. A broker hiccup is logged, never raised: a training
    run must not fail because nobody could be told about a step."""

    def send() -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        message = {"type": "notify", "payload": payload}

        async def both() -> None:
            await layer.group_send(user_group(owner_id), message)
            await layer.group_send(job_group(job_id), message)

        try:
            async_to_sync(both)()
        except Exception:
            log.warning("job %s: could not push %s", job_id, payload.get("event"), exc_info=True)

    transaction.on_commit(send)


def allocate_seq(job_id: int, count: int) -> int:
    """Reserve `count` event numbers for `job_id`; returns the first. Call
    inside a transaction (the UPDATE's row lock is held until it commits)."""
    Job.objects.filter(pk=job_id).update(event_seq=F("event_seq") + count)
    last = Job.objects.filter(pk=job_id).values_list("event_seq", flat=True).get()
    return last - count + 1


def event_dict(event: JobEvent) -> dict[str, Any]:
    return {
        "seq": event.seq, "attempt": event.attempt, "kind": event.kind, "data": event.payload,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


def record_status(job: Job, *, message: str = "", **extra: Any) -> JobEvent:
    """A `status` event for the row's current status (call in the
    transaction that changed it) and its push."""
    payload = {"status": job.status, "attempt": job.attempt, "message": message, **extra}
    event = JobEvent.objects.create(
        job_id=job.pk, seq=allocate_seq(job.pk, 1), attempt=job.attempt, kind="status", payload=payload
    )
    notify_job(
        job_id=job.pk, owner_id=job.owner_id,
        payload={
            "event": "job.status", "id": job.pk, "status": job.status, "attempt": job.attempt,
            "error": job.error, "output_artifact": job.output_artifact_id, "seq": event.seq, "message": message,
        },
    )
    return event
