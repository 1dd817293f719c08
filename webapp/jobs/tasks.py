from __future__ import annotations

import socket
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from webapp.jobs.services import job_run, job_sweep_stale


# acks_late + reject_on_worker_lost: a worker that dies mid-run gives the
# message back instead of losing it. The redelivery finds the job running
# (or already failed by the sweep) and its claim does nothing: a job never
# gets two live attempts; the user resumes it.
@shared_task(name="jobs.run", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_job(self, job_id: int) -> str | None:
    """Thin: the service claims the job (queued → running); a duplicate
    delivery, or one for a cancelled or deleted job, does nothing."""
    job = job_run(job_id=job_id, worker=self.request.hostname or socket.gethostname())
    return job.status if job else None


@shared_task(name="jobs.sweep_stale")
def sweep_stale_jobs() -> list[int]:
    """Periodic (beat, on the default queue: gpu workers may all be busy
    training): running jobs without a heartbeat become failed."""
    return job_sweep_stale(silent_for=timedelta(seconds=settings.JOBS_STALE_AFTER_S))
