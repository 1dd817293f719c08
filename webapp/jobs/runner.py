"""Runs one attempt of a job on a worker: claim, write job.json, start the
`training_jobs` CLI in its own process group, turn its progress lines into
JobEvent rows and pushes, beat, honour cancels, and settle the row.

Threads: a reader thread copies the child's stdout+stderr into log.txt and
queues the progress events; the calling thread stores them in batches and,
every POLL_S, reads the row (cancel flag, still ours?) and beats every
JOBS_HEARTBEAT_S. The child never waits for the database: the pipe is
drained by the reader whatever the main thread is doing.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from webapp.core.errors import ValidationFailed
from webapp.datasets.mixtures import mixture_path
from webapp.datasets.models import Dataset, DatasetStatus, Mixture
from webapp.datasets.services import dataset_path
from webapp.jobs import training_cli
from webapp.jobs.events import allocate_seq, event_dict, notify_job, record_status
from webapp.jobs.layout import job_config_path, job_folder, job_hostfile_path, job_log_path, job_output_dir
from webapp.jobs.models import Job, JobEvent, JobStatus
from webapp.jobs.pipelines import pipeline_settled
from webapp.lib.embedded_redis import free_port
from webapp.registry.imports import saved_architecture
from webapp.registry.models import ArtifactKind, ModelArtifact
from webapp.registry.services import artifact_register

log = logging.getLogger(__name__)

EXIT_CANCELLED = 143  # training_jobs: SIGTERM → checkpoint → 128 + 15
POLL_S = 0.5  # how often the runner reads the row (cancel flag, ownership)
# After SIGTERM the library stops at the next optimizer step and writes a
# checkpoint; a child still alive this long after is killed.
KILL_AFTER_S = 300.0
# The deepspeed launcher can exit before its ranks (on SIGTERM it dies at
# once while the ranks write their checkpoint); the runner keeps reading
# until they close the pipe, for this long at most without a cancel.
LEADER_GONE_GRACE_S = 60.0
BATCH = 200  # events stored per transaction at most
# Events are stored and pushed at most this often (and at the end): a tiny
# model logs a step every few ms, and a transaction plus a websocket push
# per line would take CPU from the training on small machines.
FLUSH_S = 0.5
MAX_PENDING = 10_000  # events kept through a database outage (oldest dropped)
LOG_TAIL_LINES = 15
_EOF = object()


class _SetupError(Exception):
    """The attempt cannot start (data gone, not ready); str() is the reason."""


class _Lost(Exception):
    """The row is no longer this attempt's (swept as failed, or resumed)."""


# --- claiming and the launch ---------------------------------------------------


def claim(*, job_id: int, worker: str) -> Job | None:
    """queued → running with attempt + 1, in one conditional UPDATE: of two
    deliveries of the same task, one gets the job and the other None."""
    now = timezone.now()
    with transaction.atomic():
        claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING, attempt=F("attempt") + 1, worker=worker[:255], pid=None, started_at=now,
            heartbeat_at=now, finished_at=None, error="",
        )
        if not claimed:
            return None
        job = Job.objects.select_related("owner", "base_artifact", "dataset", "mixture", "eval_dataset").get(pk=job_id)
        record_status(job, message=f"attempt {job.attempt} on {worker}", worker=worker)
    return job


def train_data_path(*, dataset: Dataset | None, mixture: Mixture | None) -> Path:
    if mixture is not None:
        return mixture_path(mixture)
    assert dataset is not None
    return dataset_path(dataset, "canonical.jsonl")


def resolved_config(
    *, stage: str, config: dict[str, Any], base_artifact: ModelArtifact, dataset: Dataset | None,
    mixture: Mixture | None, eval_dataset: Dataset | None, output_dir: str | Path,
    reward_artifact: ModelArtifact | None = None,
) -> dict[str, Any]:
    """The job.json the CLI gets: the stored config plus this machine's paths."""
    full = {
        **config, "stage": stage, "base_model": str(Path(settings.ARTIFACTS_ROOT) / base_artifact.folder),
        "train_data": str(train_data_path(dataset=dataset, mixture=mixture)), "output_dir": str(output_dir),
    }
    if reward_artifact is not None:
        full["reward_model"] = str(Path(settings.ARTIFACTS_ROOT) / reward_artifact.folder)
    if eval_dataset is not None:
        full["eval_data"] = str(dataset_path(eval_dataset, "canonical.jsonl"))
    return full


def launch_argv(job: Job, *, resume: bool, master_port: int) -> list[str]:
    """One process for `num_gpus` 0 without a hostfile; else the deepspeed
    launcher (`--num_gpus` ranks per node, `--hostfile` for several nodes;
    the launcher sets RANK/WORLD_SIZE/… for each rank and forwards SIGTERM)."""
    run = ["run", "--config", str(job_config_path(job.pk)), *(["--resume"] if resume else [])]
    if not job.num_gpus and not job.hostfile.strip():
        return training_cli.cli_argv(*run)
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner"]
    if job.hostfile.strip():
        launcher += ["--hostfile", str(job_hostfile_path(job.pk))]
    if job.num_gpus:
        launcher += ["--num_gpus", str(job.num_gpus)]
    return [*launcher, "--master_port", str(master_port), "--module", "training_jobs", *run]


def launch_env(job: Job, *, master_port: int) -> dict[str, str]:
    if not job.num_gpus and not job.hostfile.strip():
        # Without the launcher the library would look for MPI: it is rank 0 of 1.
        return training_cli.cli_env(
            RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(master_port)
        )
    return training_cli.cli_env()


def launch_preview(job: Job) -> dict[str, Any]:
    """The command and job.json an attempt of `job` would run (for a preview)."""
    return {
        "argv": launch_argv(job, resume=job.attempt > 0, master_port=29500),
        "config": resolved_config(
            stage=job.stage, config=job.config, base_artifact=job.base_artifact, dataset=job.dataset,
            mixture=job.mixture, eval_dataset=job.eval_dataset, output_dir=job_output_dir(job.pk),
            reward_artifact=job.reward_artifact,
        ),
    }


# --- reading the child's output ---------------------------------------------------


def parse_event(line: str) -> dict[str, Any] | None:
    """A progress event, or None for a log line. Progress lines are JSON
    objects whose first key is `event`; a progress bar on stderr without a
    newline may precede one on the same line, so look for the object."""
    start = line.find('{"event"')
    if start < 0:
        return None
    try:
        record = json.loads(line[start:])
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("event"), str) else None


def _pump(stream: IO[bytes], log_file: IO[bytes], events: queue.Queue[Any]) -> None:
    try:
        for raw in iter(stream.readline, b""):
            log_file.write(raw)
            log_file.flush()
            record = parse_event(raw.decode("utf-8", "replace"))
            if record is not None:
                events.put(record)
    except Exception:  # a full disk must not hang the runner
        log.exception("job output reader failed")
    finally:
        events.put(_EOF)


def log_tail(path: Path, lines: int = LOG_TAIL_LINES, max_bytes: int = 16384) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    kept = [line.rsplit("\r", 1)[-1] for line in text.splitlines() if line.strip() and not line.startswith("=== ")]
    return "\n".join(kept[-lines:])


# --- the runner --------------------------------------------------------------------


class JobRunner:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.attempt = job.attempt
        self.proc: subprocess.Popen[bytes] | None = None
        self.lost = False
        self.signalled_at: float | None = None  # SIGTERM sent (cancel or lost)
        self.cancel_seen = False
        self.saw_cancelled = False  # a `cancelled` event: stopped with a checkpoint
        self.last_error: str | None = None
        self.params: int | None = None
        self.pending: list[dict[str, Any]] = []  # events not stored yet
        self.step, self.total_steps = job.step, job.total_steps

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:
            log.exception("job %s attempt %s: runner failed", self.job.pk, self.attempt)
            self._signal(signal.SIGKILL)
            self._finish(JobStatus.FAILED, error=f"internal error in the job runner: {type(exc).__name__}: {exc}")

    # -- one attempt ------------------------------------------------------------

    def _run(self) -> None:
        job = self.job
        job_folder(job.pk).mkdir(parents=True, exist_ok=True)
        output = job_output_dir(job.pk)
        output.mkdir(exist_ok=True)
        try:
            config = self._config(output)
        except _SetupError as exc:
            self._finish(JobStatus.FAILED, error=str(exc))
            return
        job_config_path(job.pk).write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")
        if job.hostfile.strip():
            job_hostfile_path(job.pk).write_text(job.hostfile.strip() + "\n")
        port = free_port()
        argv = launch_argv(job, resume=self.attempt > 1, master_port=port)
        if self._row_cancel_requested():
            self._finish(JobStatus.CANCELLED, message="cancelled before the training process started")
            return
        with job_log_path(job.pk).open("ab") as log_file:
            started = timezone.now().isoformat(timespec="seconds")
            log_file.write(f"=== attempt {self.attempt} on {job.worker} at {started}: {' '.join(argv)}\n".encode())
            log_file.flush()
            self.proc = subprocess.Popen(
                argv, cwd=settings.BASE_DIR, env=launch_env(job, master_port=port), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            )
            Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=self.attempt).update(
                pid=self.proc.pid, heartbeat_at=timezone.now()
            )
            events: queue.Queue[Any] = queue.Queue()
            assert self.proc.stdout is not None
            reader = threading.Thread(
                target=_pump, args=(self.proc.stdout, log_file, events), name=f"job-{job.pk}-reader", daemon=True
            )
            reader.start()
            self._watch(events)
            code = self.proc.wait()
            self._signal(signal.SIGKILL)  # ranks or helpers left in the group
            reader.join(timeout=30)
            log_file.write(f"=== attempt {self.attempt} exited with code {code}\n".encode())
        self._conclude(code)

    def _config(self, output: Path) -> dict[str, Any]:
        job = self.job
        if job.dataset is None and job.mixture is None:
            raise _SetupError("the job's dataset was deleted")
        for source in (job.dataset, job.eval_dataset):
            if source is not None and source.status != DatasetStatus.READY:
                raise _SetupError(f"dataset {source} is {source.status}, not ready")
        return resolved_config(
            stage=job.stage, config=job.config, base_artifact=job.base_artifact, dataset=job.dataset,
            mixture=job.mixture, eval_dataset=job.eval_dataset, output_dir=output, reward_artifact=job.reward_artifact,
        )

    def _watch(self, events: queue.Queue[Any]) -> None:
        heartbeat_s = float(settings.JOBS_HEARTBEAT_S)
        last_poll = last_beat = last_flush = time.monotonic()
        leader_gone_at: float | None = None
        done = False
        while not done:
            batch: list[dict[str, Any]] = []
            try:
                item = events.get(timeout=POLL_S)
                while True:
                    if item is _EOF:
                        done = True
                        break
                    batch.append(item)
                    if len(batch) >= BATCH:
                        break
                    item = events.get_nowait()
            except queue.Empty:
                pass
            self.pending.extend(batch)
            if done or time.monotonic() - last_flush >= FLUSH_S:
                last_flush = time.monotonic()
                while self.pending and not self.lost and self._guarded(self._store, self.pending[:BATCH]):
                    del self.pending[:BATCH]
                    last_beat = time.monotonic()
            now = time.monotonic()
            if now - last_poll >= POLL_S:
                last_poll = now
                beat = now - last_beat >= heartbeat_s
                if self._guarded(self._poll, beat=beat) and beat:
                    last_beat = now
            assert self.proc is not None
            if not done and self.proc.poll() is not None:
                # The leader is gone but something in its group holds the
                # pipe open: launcher ranks finishing a checkpoint, or
                # strays. Give them time, then kill them so EOF arrives.
                if leader_gone_at is None:
                    leader_gone_at = now
                elif now - leader_gone_at > (KILL_AFTER_S if self.signalled_at is not None else LEADER_GONE_GRACE_S):
                    self._signal(signal.SIGKILL)

    def _guarded(self, step: Any, *args: Any, **kwargs: Any) -> bool:
        """Run a database step; a database outage is waited out, not fatal:
        training goes on, events wait in `pending`, and if the outage
        outlasts JOBS_STALE_AFTER_S the sweep fails the row, which this
        runner then notices (lost) and stops its training."""
        try:
            step(*args, **kwargs)
        except DatabaseError:
            log.warning("job %s: database unavailable, will retry", self.job.pk, exc_info=True)
            close_old_connections()
            if len(self.pending) > MAX_PENDING:
                del self.pending[: len(self.pending) - MAX_PENDING]
            return False
        return True

    def _store(self, batch: list[dict[str, Any]]) -> None:
        fields: dict[str, Any] = {}
        for record in batch:
            kind = record["event"]
            if kind == "start":
                fields["total_steps"] = record.get("total_steps")
                fields["step"] = record.get("resumed_from_step") or 0
                self.params = record.get("params") or self.params
            elif kind == "metrics":
                fields["step"] = record.get("step", 0)
                fields["metrics"] = record
            elif kind == "eval":
                fields["eval_metrics"] = record
            elif kind == "checkpoint":
                fields["checkpoint_step"] = record.get("step")
            elif kind == "cancelled":
                fields["step"] = record.get("step", 0)
                self.saw_cancelled = True
            elif kind == "done":
                fields["result"] = record.get("metrics") or {}
            elif kind == "error":
                self.last_error = str(record.get("message") or "")
        job = self.job
        with transaction.atomic():
            # The UPDATE is the ownership check and the row lock that orders
            # seq numbers; 0 rows: the sweep or a resume took the job.
            if not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=self.attempt).update(
                heartbeat_at=timezone.now(), **fields
            ):
                self._lose()
                return
            first = allocate_seq(job.pk, len(batch))
            rows = JobEvent.objects.bulk_create(
                JobEvent(job_id=job.pk, seq=first + i, attempt=self.attempt, kind=record["event"][:16], payload=record)
                for i, record in enumerate(batch)
            )
            self.step = fields.get("step", self.step)
            self.total_steps = fields.get("total_steps", self.total_steps)
            notify_job(
                job_id=job.pk, owner_id=job.owner_id,
                payload={
                    "event": "job.progress", "id": job.pk, "status": JobStatus.RUNNING, "step": self.step,
                    "total_steps": self.total_steps, "events": [event_dict(row) for row in rows],
                },
            )

    def _poll(self, *, beat: bool) -> None:
        if self.lost:
            self._escalate()
            return
        job = self.job
        row = Job.objects.filter(pk=job.pk).values("status", "attempt", "cancel_requested").first()
        if row is None or row["status"] != JobStatus.RUNNING or row["attempt"] != self.attempt:
            self._lose()
            return
        if row["cancel_requested"] and not self.cancel_seen:
            self.cancel_seen = True
            self.signalled_at = time.monotonic()
            self._signal(signal.SIGTERM)  # the library checkpoints and exits 143
        self._escalate()
        if beat and not Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, attempt=self.attempt).update(
            heartbeat_at=timezone.now()
        ):
            self._lose()

    def _lose(self) -> None:
        """Someone else settled the row (the sweep, after a heartbeat gap):
        stop training — its result has no row to land in."""
        if not self.lost:
            log.warning("job %s attempt %s lost its row; stopping the training process", self.job.pk, self.attempt)
            self.lost = True
            self.signalled_at = time.monotonic()
            self._signal(signal.SIGTERM)

    def _escalate(self) -> None:
        if self.signalled_at is not None and time.monotonic() - self.signalled_at > KILL_AFTER_S:
            self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signum)  # the group: every rank of the launcher too
        except (ProcessLookupError, PermissionError):
            pass

    def _row_cancel_requested(self) -> bool:
        return Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists()

    # -- settling the row ----------------------------------------------------------

    def _conclude(self, code: int) -> None:
        if self.lost:
            return
        cancel = self.cancel_seen or self._row_cancel_requested()
        if code == 0:
            self._succeed()
        elif cancel or code == EXIT_CANCELLED or self.saw_cancelled:
            step = Job.objects.filter(pk=self.job.pk).values_list("checkpoint_step", flat=True).get()
            message = (
                f"cancelled; resume continues from the checkpoint at step {step}" if step is not None
                else "cancelled before the first checkpoint"
            )
            if not cancel:
                message = f"stopped by a SIGTERM from outside the web app; {message}"
            self._finish(JobStatus.CANCELLED, message=message)
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = "unknown signal"
            self._finish(JobStatus.FAILED, error=f"training process killed by signal {-code} ({name})")
        else:
            reason = self.last_error or log_tail(job_log_path(self.job.pk)) or "no output"
            self._finish(JobStatus.FAILED, error=f"training exited with code {code}: {reason}")

    def _succeed(self) -> None:
        job = self.job
        output = job_output_dir(job.pk)
        architecture = saved_architecture(output)
        if architecture is None:
            self._finish(JobStatus.FAILED, error=f"training exited with code 0 but left no model in {output}")
            return
        suffix = f"-{job.stage}"
        name = job.output_name or f"{job.base_artifact.name[: 100 - len(suffix)]}{suffix}"
        ema = output / "ema"  # ppo with ema: the EMA actor, a second servable policy
        ema_architecture = saved_architecture(ema) if job.stage == "ppo" else None
        try:
            with transaction.atomic():
                artifact = artifact_register(
                    owner=job.owner, name=name, architecture=architecture,
                    kind=ArtifactKind.REWARD if job.stage == "rm" else ArtifactKind.POLICY, folder=output,
                    parent=job.base_artifact, num_parameters=self.params,
                    description=f"{job.get_stage_display()} of {job.base_artifact} by job {job.pk}",
                )
                produced = [artifact.pk]
                if ema_architecture is not None:
                    ema_artifact = artifact_register(
                        owner=job.owner, name=f"{name[:96]}-ema", architecture=ema_architecture, kind=ArtifactKind.POLICY,
                        folder=ema, parent=job.base_artifact, num_parameters=self.params,
                        description=f"EMA of the PPO actor of {job.base_artifact} by job {job.pk}",
                    )
                    produced.append(ema_artifact.pk)
                ModelArtifact.objects.filter(pk__in=produced).update(produced_by=job)
                if not self._finish(JobStatus.SUCCEEDED, message=f"registered {artifact}", output_artifact=artifact):
                    raise _Lost
        except _Lost:
            return
        except ValidationFailed as exc:
            self._finish(JobStatus.FAILED, error=f"could not register the output model: {exc.message}")
            return
        # DeepSpeed checkpoints (weights + optimizer state, ~3× the model)
        # only serve a resume, which a succeeded job never gets.
        shutil.rmtree(output / "checkpoints", ignore_errors=True)

    def _finish(self, status: str, *, error: str = "", message: str = "", **fields: Any) -> bool:
        """Settle the row if it is still this attempt's; False otherwise."""
        with transaction.atomic():
            if not Job.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING, attempt=self.attempt).update(
                status=status, error=error, finished_at=timezone.now(), pid=None, **fields
            ):
                return False
            settled = Job.objects.get(pk=self.job.pk)
            record_status(settled, message=message or error)
            pipeline_settled(settled)  # a pipeline's next stage, after the commit
        return True
