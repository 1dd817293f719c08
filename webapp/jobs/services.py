"""Writes for training jobs: create, cancel, resume, run, sweep.

Lifecycle (each arrow one conditional UPDATE, so concurrent callers — a
duplicate task delivery, a cancel racing a claim, the sweep racing a late
heartbeat — change a row at most once):

    queued ──claim──► running ──exit 0──► succeeded
      │                  ├──exit 143 / cancel──► cancelled ──resume──► queued
      └──cancel──► cancelled  ├──other exit──► failed ──resume──► queued
                              └──no heartbeat (sweep)──► failed

A pipeline's later stages start `waiting` (no base artifact) and become
`queued` when the stage before succeeds (webapp.jobs.pipelines).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from webapp.core.errors import Conflict, ValidationFailed
from webapp.datasets.models import Dataset, DatasetStatus, Mixture
from webapp.jobs import training_cli
from webapp.jobs.events import record_status
from webapp.jobs.models import STAGE_MODEL_INPUTS, Job, JobStage, JobStatus, stage_data_kinds
from webapp.lib.ownership import visible_to
from webapp.registry.models import ArtifactKind, ModelArtifact

MAX_GPUS_PER_NODE = 64
_HOSTFILE_LINE = re.compile(r"^(?P<host>[A-Za-z0-9_.\-]+)\s+slots=(?P<slots>\d+)$")


@dataclass(frozen=True)
class JobResources:
    """Where and how wide a job runs. `num_gpus` 0: one training process (CPU,
    or the worker's first GPU); N: the deepspeed launcher with N ranks per
    node; `hostfile`: deepspeed's multi-node launch over pdsh/ssh."""

    queue: str = "gpu"
    num_gpus: int = 0
    hostfile: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> JobResources:
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValidationFailed("resources must be an object {queue, num_gpus, hostfile}", field="resources")
        unknown = sorted(set(data) - {"queue", "num_gpus", "hostfile"})
        if unknown:
            raise ValidationFailed(f"unknown field {unknown[0]}", field=f"resources.{unknown[0]}")
        queue, num_gpus, hostfile = data.get("queue", "gpu"), data.get("num_gpus", 0), data.get("hostfile", "") or ""
        if not isinstance(queue, str):
            raise ValidationFailed("queue must be a string", field="resources.queue")
        if not isinstance(num_gpus, int) or isinstance(num_gpus, bool):
            raise ValidationFailed("num_gpus must be a whole number", field="resources.num_gpus")
        if not isinstance(hostfile, str):
            raise ValidationFailed("hostfile must be text", field="resources.hostfile")
        return cls(queue=queue, num_gpus=num_gpus, hostfile=hostfile)


def parse_hostfile(text: str) -> list[tuple[str, int]]:
    """deepspeed's hostfile: `hostname slots=N` per line; `#` comments."""
    hosts: list[tuple[str, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _HOSTFILE_LINE.match(line)
        if match is None or int(match["slots"]) < 1:
            raise ValidationFailed(f"hostfile line {number}: expected `hostname slots=N`, got {raw.strip()!r}", field="resources.hostfile")
        hosts.append((match["host"], int(match["slots"])))
    if text.strip() and not hosts:
        raise ValidationFailed("the hostfile lists no hosts", field="resources.hostfile")
    return hosts


def check_resources(resources: JobResources) -> int:
    """Validate; returns the number of training ranks the job will have."""
    queues = [queue.name for queue in settings.CELERY_TASK_QUEUES]
    if resources.queue not in queues:
        raise ValidationFailed(f"queue must be one of {', '.join(queues)}", field="resources.queue")
    if not 0 <= resources.num_gpus <= MAX_GPUS_PER_NODE:
        raise ValidationFailed(f"num_gpus must be between 0 and {MAX_GPUS_PER_NODE}", field="resources.num_gpus")
    hosts = parse_hostfile(resources.hostfile)
    if hosts:
        # --num_gpus caps the slots used on every node.
        return sum(min(slots, resources.num_gpus) if resources.num_gpus else slots for _, slots in hosts)
    return max(resources.num_gpus, 1)


def _check_visible(obj: Model | None, owner: AbstractBaseUser, field: str, label: str) -> None:
    # Another user's object reads as missing, like everywhere (lib.ownership).
    if obj is not None and not visible_to(type(obj).objects.filter(pk=obj.pk), owner).exists():
        raise ValidationFailed(f"no {label} with id {obj.pk}", field=field)


def check_job_data(*, stage: str, dataset: Dataset | None, mixture: Mixture | None, eval_dataset: Dataset | None) -> None:
    if (dataset is None) == (mixture is None):
        raise ValidationFailed("give a dataset or a mixture (one of them)", field="dataset")
    needed = stage_data_kinds(stage)
    for field, source in (("dataset", dataset), ("mixture", mixture), ("eval_dataset", eval_dataset)):
        if source is None:
            continue
        if source.kind not in needed:
            raise ValidationFailed(f"stage {stage} trains on {' or '.join(needed)} data; {source} is {source.kind}", field=field)
        if isinstance(source, Dataset) and source.status != DatasetStatus.READY:
            raise ValidationFailed(f"dataset {source} is {source.status}, not ready", field=field)


def job_config_merge(*, stage: str, overrides: Any) -> dict[str, Any]:
    """The stage defaults (from the CLI's schema) with the user's overrides."""
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ValidationFailed("config must be an object of training settings", field="config")
    for name in training_cli.PATH_FIELDS:
        if name in overrides:
            source = {
                "stage": "stage", "base_model": "base_artifact", "reward_model": "reward_artifact", "train_data": "dataset",
                "eval_data": "eval_dataset",
            }
            where = f"from {source[name]}" if name in source else "by the job"
            raise ValidationFailed(f"{name} is set {where}, not in config", field=f"config.{name}")
    return {**training_cli.stage_defaults(stage), **overrides}


def _problem_param(field: str, *, mixture: bool) -> str:
    """The API parameter a CLI error line is about."""
    top = field.split(".", 1)[0]
    mapped = {
        "stage": "stage", "base_model": "base_artifact", "reward_model": "reward_artifact",
        "train_data": "mixture" if mixture else "dataset",
        "eval_data": "eval_dataset", "config": "config", "output_dir": "config",
    }
    return mapped.get(top, f"config.{field}")


def check_model_inputs(
    *, stage: str, owner: AbstractBaseUser, reward_artifact: ModelArtifact | None, pending: tuple[str, ...] = ()
) -> None:
    """PPO needs a reward model (an rm output, kind reward); no other stage
    takes one. `pending` inputs come from an earlier pipeline stage."""
    if "reward_model" not in STAGE_MODEL_INPUTS.get(stage, ()):
        if reward_artifact is not None:
            raise ValidationFailed(f"only stage ppo takes a reward model, not {stage}", field="reward_artifact")
        return
    if "reward_model" in pending:
        return
    if reward_artifact is None:
        raise ValidationFailed("stage ppo needs a reward model (the output of an rm job)", field="reward_artifact")
    _check_visible(reward_artifact, owner, "reward_artifact", "model")
    if reward_artifact.kind != ArtifactKind.REWARD:
        raise ValidationFailed(f"{reward_artifact} is a {reward_artifact.kind} model, not a reward model", field="reward_artifact")


def check_job_config(
    *, stage: str, config: dict[str, Any], base_artifact: ModelArtifact, dataset: Dataset | None, mixture: Mixture | None,
    eval_dataset: Dataset | None, world_size: int, reward_artifact: ModelArtifact | None = None,
    pending: tuple[str, ...] = (),
) -> None:
    """Let the CLI judge the config with the real paths (`training_jobs
    validate`); a problem becomes a 400 naming the field. A `pending` model
    input (made by an earlier pipeline stage) is not checked yet."""
    from webapp.jobs.runner import resolved_config  # paths as the runner will write them

    full = resolved_config(
        stage=stage, config=config, base_artifact=base_artifact, dataset=dataset, mixture=mixture,
        eval_dataset=eval_dataset, output_dir="/nonexistent/validation-only", reward_artifact=reward_artifact,
    )
    if "reward_model" in pending:
        full["reward_model"] = "/nonexistent/made-by-an-earlier-stage"
    problems = training_cli.validate_config(full, world_size=world_size, pending=pending)
    if problems:
        field = problems[0].split(": ", 1)[0]
        raise ValidationFailed("; ".join(problems), field=_problem_param(field, mixture=mixture is not None))


def enqueue_job(job: Job) -> None:
    """Send `jobs.run` to the job's queue once the transaction commits."""
    from webapp.jobs.tasks import run_job

    job_id, queue = job.pk, job.queue
    transaction.on_commit(lambda: run_job.apply_async(args=[job_id], queue=queue))


@dataclass(frozen=True)
class JobSpec:
    """What a user asks a job to do: the input of job_check and job_create
    (the form, the REST API and each pipeline stage build one)."""

    stage: str
    base_artifact: ModelArtifact
    dataset: Dataset | None = None
    mixture: Mixture | None = None
    eval_dataset: Dataset | None = None
    config: dict[str, Any] | None = None
    resources: JobResources = field(default_factory=JobResources)
    output_name: str = ""
    reward_artifact: ModelArtifact | None = None


def job_check(*, owner: AbstractBaseUser, spec: JobSpec, pending: tuple[str, ...] = ()) -> tuple[dict[str, Any], str]:
    """Check everything a worker would trip on (job_create's checks, also
    used per stage by pipelines.pipeline_create); returns the merged config
    and the cleaned output name. `pending`: model inputs an earlier pipeline
    stage will produce."""
    stage = spec.stage
    if stage not in JobStage.values:
        raise ValidationFailed(f"stage must be one of {', '.join(JobStage.values)}", field="stage")
    _check_visible(spec.base_artifact, owner, "base_artifact", "model")
    _check_visible(spec.dataset, owner, "dataset", "dataset")
    _check_visible(spec.mixture, owner, "mixture", "mixture")
    _check_visible(spec.eval_dataset, owner, "eval_dataset", "dataset")
    check_job_data(stage=stage, dataset=spec.dataset, mixture=spec.mixture, eval_dataset=spec.eval_dataset)
    check_model_inputs(stage=stage, owner=owner, reward_artifact=spec.reward_artifact, pending=pending)
    output_name = spec.output_name.strip()
    if len(output_name) > 100:
        raise ValidationFailed("output_name is at most 100 characters", field="output_name")
    world_size = check_resources(spec.resources)
    merged = job_config_merge(stage=stage, overrides=spec.config)
    check_job_config(
        stage=stage, config=merged, base_artifact=spec.base_artifact, dataset=spec.dataset, mixture=spec.mixture,
        eval_dataset=spec.eval_dataset, world_size=world_size, reward_artifact=spec.reward_artifact, pending=pending,
    )
    return merged, output_name


def job_create(*, owner: AbstractBaseUser, spec: JobSpec) -> Job:
    """Check everything a worker would trip on, store the job as queued and
    enqueue it after commit."""
    merged, output_name = job_check(owner=owner, spec=spec)
    resources = spec.resources
    with transaction.atomic():
        job = Job.objects.create(
            owner=owner, stage=spec.stage, base_artifact=spec.base_artifact, reward_artifact=spec.reward_artifact,
            dataset=spec.dataset, mixture=spec.mixture, eval_dataset=spec.eval_dataset, config=merged,
            output_name=output_name, queue=resources.queue, num_gpus=resources.num_gpus, hostfile=resources.hostfile,
        )
        record_status(job, message="queued")
        enqueue_job(job)
    return job


def job_cancel(*, job: Job) -> Job:
    """A queued (or a pipeline's waiting) job is cancelled at once. A running
    one gets `cancel_requested`: its runner polls the flag (so the request
    may come from any machine), sends SIGTERM to the training process group,
    and the library saves a checkpoint and exits with 143 → cancelled. A
    pipeline's job that ends this way stops the stages after it."""
    from webapp.jobs.pipelines import pipeline_settled

    now = timezone.now()
    with transaction.atomic():
        if Job.objects.filter(pk=job.pk, status__in=[JobStatus.QUEUED, JobStatus.WAITING]).update(
            status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now
        ):
            job.refresh_from_db()
            record_status(job, message="cancelled before it started")
            pipeline_settled(job)
            return job
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(cancel_requested=True)
    job.refresh_from_db()
    if job.status in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        raise Conflict(f"the job has already {job.status}")
    return job


def job_resume(*, job: Job) -> Job:
    """A failed or cancelled job goes back to the queue; its next attempt
    runs with `--resume`, from the last checkpoint in its output folder. In
    a pipeline it re-opens the pipeline (the stages it stopped wait again)."""
    from webapp.jobs.pipelines import pipeline_reopen

    if job.base_artifact_id is None:
        raise Conflict("this pipeline stage never started: it has no input model yet; resume the stage it waited for")
    with transaction.atomic():
        resumed = Job.objects.filter(pk=job.pk, status__in=[JobStatus.FAILED, JobStatus.CANCELLED]).update(
            status=JobStatus.QUEUED, cancel_requested=False, error="", finished_at=None, pid=None
        )
        job.refresh_from_db()
        if not resumed:
            raise Conflict(f"only a failed or cancelled job can be resumed; this one is {job.status}")
        message = (
            f"resume: continues from the checkpoint at step {job.checkpoint_step}" if job.checkpoint_step is not None
            else "resume: no checkpoint yet, starts from step 0"
        )
        record_status(job, message=message)
        enqueue_job(job)
        pipeline_reopen(job)
    return job


def job_run(*, job_id: int, worker: str) -> Job | None:
    """Run a queued job to its end on this worker. Safe to call twice: only
    the caller that moves it from queued to running does anything."""
    from webapp.jobs.pipelines import pipeline_started
    from webapp.jobs.runner import JobRunner, claim

    job = claim(job_id=job_id, worker=worker)
    if job is None:
        return None
    pipeline_started(job)
    JobRunner(job).run()
    return Job.objects.get(pk=job_id)


def job_sweep_stale(*, silent_for: timedelta) -> list[int]:
    """Running jobs whose runner has not beaten for `silent_for` (its worker
    died, or the machine did) become failed; returns their ids. A runner
    beats every JOBS_HEARTBEAT_S even when training prints nothing."""
    from webapp.jobs.pipelines import pipeline_settled

    cutoff = timezone.now() - silent_for
    failed = []
    for pk in Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=pk, status=JobStatus.RUNNING, heartbeat_at__lt=cutoff).first()
            if job is None:  # it beat, or finished, meanwhile
                continue
            seen = timezone.localtime(job.heartbeat_at).strftime("%Y-%m-%d %H:%M:%S %Z") if job.heartbeat_at else "its start"
            job.status, job.finished_at, job.pid = JobStatus.FAILED, timezone.now(), None
            job.error = f"worker or training process lost (no heartbeat since {seen}, worker {job.worker or 'unknown'})"
            job.save(update_fields=["status", "finished_at", "pid", "error"])
            record_status(job, message=job.error)
            pipeline_settled(job)
            failed.append(pk)
    return failed
