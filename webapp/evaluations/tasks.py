from __future__ import annotations

import socket
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from webapp.evaluations.services import evaluation_run, evaluation_sweep_stale


# Routed to the `eval` queue (CELERY_TASK_ROUTES "evaluations.*"). A second
# delivery (a redelivered message, a sweep's resend) finds the row no longer
# queued and does nothing: only one claim wins.
@shared_task(name="evaluations.run", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_evaluation(self, evaluation_id: int) -> str | None:
    """Thin: the service claims the evaluation (queued → running) and runs it."""
    evaluation = evaluation_run(evaluation_id=evaluation_id, worker=self.request.hostname or socket.gethostname())
    return evaluation.status if evaluation else None


@shared_task(name="evaluations.sweep_stale")
def sweep_stale_evaluations() -> list[int]:
    """Periodic (beat, on the default queue: eval workers may all be busy):
    running evaluations without a heartbeat are queued again and resume."""
    return evaluation_sweep_stale(silent_for=timedelta(seconds=settings.EVALUATIONS_STALE_AFTER_S))
