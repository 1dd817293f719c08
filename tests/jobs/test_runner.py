"""The runner's pieces that need no worker: claiming, the sweep, the launch
command, reading progress lines."""
from __future__ import annotations

import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.jobs.conftest import create_body
from webapp.jobs.models import Job
from webapp.jobs.runner import claim, launch_argv, parse_event
from webapp.jobs.services import job_run, job_sweep_stale
from webapp.jobs.tasks import run_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(authed, alice, make_base, make_dataset) -> Job:
    response = authed.post("/api/jobs/", create_body(make_base(alice), make_dataset(alice)), format="json")
    return Job.objects.get(pk=response.json()["id"])


def test_a_duplicate_delivery_does_nothing(job: Job) -> None:
    first = claim(job_id=job.pk, worker="w1@host")
    assert first is not None and (first.status, first.attempt, first.worker) == ("running", 1, "w1@host")
    # The second delivery of jobs.run (here run in-process, eagerly) finds
    # the job running: no claim, no training process, no change.
    assert run_job.apply(args=[job.pk]).get() is None
    assert job_run(job_id=job.pk, worker="w2@host") is None
    job.refresh_from_db()
    assert (job.status, job.attempt, job.worker, job.pid) == ("running", 1, "w1@host", None)
    assert job_run(job_id=10**9, worker="w2@host") is None  # a deleted job


def test_sweep_fails_running_jobs_without_a_heartbeat(job: Job, alice, make_base, make_dataset, authed) -> None:
    fresh = Job.objects.get(pk=authed.post("/api/jobs/", create_body(job.base_artifact, job.dataset), format="json").json()["id"])
    claim(job_id=job.pk, worker="gone@host")
    claim(job_id=fresh.pk, worker="alive@host")
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=300))
    assert job_sweep_stale(silent_for=timedelta(seconds=90)) == [job.pk]
    job.refresh_from_db()
    assert job.status == "failed" and job.finished_at is not None
    assert job.error.startswith("worker or training process lost (no heartbeat since ") and "gone@host" in job.error
    assert Job.objects.get(pk=fresh.pk).status == "running"
    assert job_sweep_stale(silent_for=timedelta(seconds=90)) == []
    assert job.events.last().payload == {"status": "failed", "attempt": 1, "message": job.error}


def test_launch_commands(job: Job) -> None:
    single = launch_argv(job, resume=False, master_port=29511)
    assert single == [sys.executable, "-m", "training_jobs", "run", "--config", single[5]]
    assert single[5].endswith(f"jobs/{job.pk}/job.json")
    job.num_gpus = 8
    multi = launch_argv(job, resume=True, master_port=29511)
    assert multi[:3] == [sys.executable, "-m", "deepspeed.launcher.runner"]
    assert multi[3:] == ["--num_gpus", "8", "--master_port", "29511", "--module", "training_jobs", "run", "--config", single[5], "--resume"]
    job.num_gpus, job.hostfile = 0, "node1 slots=8\nnode2 slots=8"
    nodes = launch_argv(job, resume=False, master_port=29511)
    assert nodes[3] == "--hostfile" and nodes[4].endswith(f"jobs/{job.pk}/hostfile") and "--num_gpus" not in nodes


def test_progress_lines_are_found_among_log_lines() -> None:
    assert parse_event('{"event": "metrics", "ts": 1.0, "step": 3, "loss": null}\n') == {"event": "metrics", "ts": 1.0, "step": 3, "loss": None}
    # A progress bar on stderr left without a newline before the event.
    assert parse_event('Loading weights: 100%|███| 29/29\r{"event": "start", "total_steps": 4}')["total_steps"] == 4
    for line in ["[INFO] step 3", '{"not": "an event"}', '{"event": "metrics", "step": ', "{", ""]:
        assert parse_event(line) is None
