"""Jobs in a real Celery worker running the real `training_jobs` CLI (tiny
BLOOM, DeepSpeed on CPU): success with lineage, cancel + resume from the
checkpoint, a killed training process, a killed worker."""
from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.utils import timezone

from tests.jobs.conftest import TINY_SFT, create_body
from tests.support import celery_worker, wait_until
from webapp.core.consumers import user_group
from webapp.jobs.events import job_group
from webapp.jobs.layout import job_output_dir
from webapp.jobs.models import TERMINAL_STATUSES, Job, JobEvent
from webapp.jobs.services import job_run, job_sweep_stale
from webapp.registry.models import ModelArtifact

pytestmark = pytest.mark.django_db(transaction=True)

# Long enough (~4 s of steps) for a cancel or a kill to land mid-run: the
# tests act at step 10, the runner reads the cancel flag every 0.5 s.
LONG_RUN = dict(TINY_SFT, max_steps=400, log_every=10)


def _worker_log(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("test-*.log"))


def _wait_status(job_id: int, tmp_path: Path, *, timeout_s: float = 200) -> Job:
    try:
        wait_until(lambda: Job.objects.get(pk=job_id).status in TERMINAL_STATUSES, timeout_s=timeout_s, what=f"job {job_id} to end")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- worker log ---\n{_worker_log(tmp_path)}") from None
    return Job.objects.get(pk=job_id)


def _wait_training(job_id: int, *, min_step: int = 10) -> Job:
    """Until the training loop is reporting (its SIGTERM handler is set)."""
    wait_until(lambda: Job.objects.get(pk=job_id).step >= min_step, timeout_s=90, what=f"job {job_id} to train")
    return Job.objects.get(pk=job_id)


def _events(job: Job, kind: str, attempt: int | None = None) -> list[dict]:
    rows = JobEvent.objects.filter(job=job, kind=kind).order_by("seq")
    return [e.payload for e in rows if attempt is None or e.attempt == attempt]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead, only not reaped (its parent is gone too)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _subscribe(*groups: str) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    for group in groups:
        async_to_sync(layer.group_add)(group, channel)
    return channel


def _drain(channel: str, *, quiet_s: float = 1.0) -> list[dict]:
    """Messages on `channel` until it stays quiet for `quiet_s`."""
    layer = get_channel_layer()

    async def collect() -> list[dict]:
        messages = []
        while True:
            try:
                messages.append((await asyncio.wait_for(layer.receive(channel), quiet_s))["payload"])
            except asyncio.TimeoutError:
                return messages

    return async_to_sync(collect)()


def test_sft_job_runs_to_succeeded_and_registers_its_model(authed, alice, roots, make_base, make_dataset, tmp_path) -> None:
    base, data = make_base(alice), make_dataset(alice)
    body = create_body(base, data, config=dict(TINY_SFT, max_steps=12, log_every=3), output_name="tiny-sft")
    user_channel = _subscribe(user_group(alice.pk))
    with celery_worker(log_dir=tmp_path) as (hostname, _):
        response = authed.post("/api/jobs/", body, format="json")
        assert response.status_code == 201, response.content
        job_channel = _subscribe(job_group(response.json()["id"]))  # a job page opened after the submit
        job = _wait_status(response.json()["id"], tmp_path)
    assert job.status == "succeeded", job.error
    pushed = _drain(user_channel)
    assert [m["status"] for m in pushed if m["event"] == "job.status"] == ["queued", "running", "succeeded"]
    steps = [e["data"]["step"] for m in pushed if m["event"] == "job.progress" for e in m["events"] if e["kind"] == "metrics"]
    assert steps == [3, 6, 9, 12]
    assert [m for m in _drain(job_channel, quiet_s=0.2) if m["event"] == "job.progress"]
    assert (job.attempt, job.worker, job.step, job.total_steps, job.pid) == (1, hostname, 12, 12, None)
    assert [m["step"] for m in _events(job, "metrics")] == [3, 6, 9, 12]
    assert all(m["loss"] > 0 for m in _events(job, "metrics")) and job.metrics["step"] == 12
    assert job.result["steps"] == 12 and job.result["train_loss"] == job.metrics["loss"]
    kinds = list(job.events.values_list("kind", flat=True))
    assert kinds[:3] == ["status", "status", "start"] and kinds[-2:] == ["done", "status"]
    assert [e.payload["status"] for e in job.events.filter(kind="status")] == ["queued", "running", "succeeded"]

    artifact = job.output_artifact
    assert (artifact.name, artifact.version, artifact.kind, artifact.owner) == ("tiny-sft", 1, "policy", alice)
    assert artifact.parent == base and artifact.produced_by == job and list(job.artifacts.all()) == [artifact]
    assert artifact.architecture == "BloomForCausalLM" and artifact.num_parameters > 0
    folder = roots.artifacts / artifact.folder
    assert folder == job_output_dir(job.pk) and not (folder / "checkpoints").exists()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert model.num_parameters() == artifact.num_parameters and tokenizer("冰箱多少钱?")["input_ids"]

    api = authed.get(f"/api/jobs/{job.pk}/").json()
    assert api["status"] == "succeeded" and api["output_artifact"] == artifact.pk and api["progress"] == 1.0
    log = authed.get(f"/api/jobs/{job.pk}/log?lines=5000").content.decode()
    assert log.startswith(f"=== attempt 1 on {hostname}") and '"event": "done"' in log
    assert log.rstrip().endswith("=== attempt 1 exited with code 0")
    # A late duplicate of the task: the job is no longer queued.
    assert job_run(job_id=job.pk, worker="late@host") is None
    assert Job.objects.get(pk=job.pk).attempt == 1 and ModelArtifact.objects.filter(produced_by=job).count() == 1


def test_cancel_keeps_a_checkpoint_and_resume_continues_from_it(authed, alice, make_base, make_dataset, tmp_path) -> None:
    base, data = make_base(alice), make_dataset(alice)
    with celery_worker(log_dir=tmp_path):
        job_id = authed.post("/api/jobs/", create_body(base, data, config=LONG_RUN), format="json").json()["id"]
        _wait_training(job_id)
        response = authed.post(f"/api/jobs/{job_id}/cancel")
        assert response.status_code == 200 and response.json()["cancel_requested"]
        job = _wait_status(job_id, tmp_path)
        assert job.status == "cancelled", job.error
        stopped = job.checkpoint_step
        assert stopped is not None and 10 <= stopped < 400
        assert (job_output_dir(job_id) / "checkpoints" / f"step-{stopped}").is_dir()
        assert _events(job, "cancelled")[0]["step"] == stopped == _events(job, "checkpoint")[0]["step"]
        assert job.events.last().payload["message"] == f"cancelled; resume continues from the checkpoint at step {stopped}"

        response = authed.post(f"/api/jobs/{job_id}/resume")
        assert response.status_code == 200 and response.json()["status"] == "queued"
        job = _wait_status(job_id, tmp_path)
    assert job.status == "succeeded", job.error
    assert job.attempt == 2 and job.step == 400
    (start,) = _events(job, "start", attempt=2)
    assert start["resumed_from_step"] == stopped
    steps = [m["step"] for m in _events(job, "metrics", attempt=2)]
    assert steps[0] == (stopped // 10 + 1) * 10 and steps[-1] == 400  # no step trained twice
    assert job.output_artifact.produced_by_id == job_id


def test_a_killed_training_process_fails_the_job_with_the_reason(authed, alice, make_base, make_dataset, tmp_path) -> None:
    base, data = make_base(alice), make_dataset(alice)
    with celery_worker(log_dir=tmp_path):
        job_id = authed.post("/api/jobs/", create_body(base, data, config=LONG_RUN), format="json").json()["id"]
        pid = _wait_training(job_id).pid
        os.kill(pid, signal.SIGKILL)
        job = _wait_status(job_id, tmp_path)
    assert job.status == "failed" and job.error == "training process killed by signal 9 (SIGKILL)"
    assert job.pid is None and job.output_artifact is None and not _alive(pid)


def test_a_killed_worker_leaves_nothing_running(authed, alice, make_base, make_dataset, tmp_path) -> None:
    base, data = make_base(alice), make_dataset(alice)
    with celery_worker(log_dir=tmp_path) as (hostname, worker):
        job_id = authed.post("/api/jobs/", create_body(base, data, config=LONG_RUN), format="json").json()["id"]
        pid = _wait_training(job_id).pid
        worker.kill()
        worker.wait()
    # Its training process dies at its next progress line (the pipe to the
    # runner is gone) ...
    wait_until(lambda: not _alive(pid), timeout_s=30, what="the orphaned training process to exit")
    assert Job.objects.get(pk=job_id).status == "running"  # nobody left to say otherwise ...
    # ... until the beat's sweep finds the heartbeat stale.
    wait_until(lambda: Job.objects.get(pk=job_id).heartbeat_at < timezone.now() - timedelta(seconds=1), timeout_s=30, what="a stale heartbeat")
    assert job_sweep_stale(silent_for=timedelta(seconds=1)) == [job_id]
    job = Job.objects.get(pk=job_id)
    assert job.status == "failed" and "worker or training process lost" in job.error and hostname in job.error


def test_the_deepspeed_launcher_runs_cancels_and_resumes(authed, alice, make_base, make_dataset, tmp_path) -> None:
    """num_gpus 2 on a CPU worker: the deepspeed launcher starts two gloo
    ranks. A cancel (SIGTERM to the group) kills the launcher at once; the
    ranks still write their checkpoint and the runner waits for them."""
    base, data = make_base(alice), make_dataset(alice)
    # Two ranks on two cores: ~50 ms a step, so fewer steps.
    body = create_body(base, data, config=dict(LONG_RUN, max_steps=120), resources={"num_gpus": 2})
    with celery_worker(log_dir=tmp_path):
        job_id = authed.post("/api/jobs/", body, format="json").json()["id"]
        _wait_training(job_id)
        authed.post(f"/api/jobs/{job_id}/cancel")
        job = _wait_status(job_id, tmp_path)
        assert job.status == "cancelled", job.error
        stopped = job.checkpoint_step
        assert stopped is not None and (job_output_dir(job_id) / "checkpoints" / f"step-{stopped}").is_dir()
        authed.post(f"/api/jobs/{job_id}/resume")
        job = _wait_status(job_id, tmp_path)
    assert job.status == "succeeded", job.error
    starts = _events(job, "start")
    assert [(s["world_size"], s["resumed_from_step"]) for s in starts] == [(2, None), (2, stopped)]
    assert "deepspeed.launcher.runner --num_gpus 2" in authed.get(f"/api/jobs/{job_id}/log?lines=10000").content.decode()
