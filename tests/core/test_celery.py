from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.support import celery_worker
from webapp.core.tasks import ping

pytestmark = pytest.mark.django_db(transaction=True)


def test_task_runs_in_a_real_worker_process(tmp_path: Path) -> None:
    token = uuid.uuid4().hex
    with celery_worker(log_dir=tmp_path) as (_, worker):
        result = ping.delay(token)
        payload = result.get(timeout=60)
    assert payload["token"] == token
    assert payload["pid"] == worker.pid != os.getpid()  # not eager: the worker ran it
    assert payload["database"] in ("sqlite", "postgresql")


@pytest.mark.parametrize(("task_name", "queue"), [("jobs.run", "gpu"), ("evaluations.judge", "eval"), ("core.ping", "default")])
def test_tasks_are_routed_to_their_queue(task_name: str, queue: str) -> None:
    from webapp.celery import app

    route = app.amqp.router.route({}, task_name)
    assert route["queue"].name == queue
