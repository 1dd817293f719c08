"""Pipelines: the recipe (pt → sft → …) as linked jobs.

Job N + 1 `depends_on` job N (the stages run in order) and takes its
models from earlier stages' outputs (`Job.inputs`, see stage_inputs: rm and
ppo train from the SFT policy, ppo's reward model is the rm stage's): it is
stored `waiting` without them, and `pipeline_advance` (run after the commit
that settles job N: the runner's `_finish`, a cancel of a queued job, the
stale sweep) fills them in and queues it. A failed or cancelled
stage stops the stages after it (`cancelled`, error "stopped: stage …") and
the pipeline becomes failed/cancelled. Every transition is a conditional
UPDATE, so a duplicate advance does nothing.

    pipeline: queued ──first claim──► running ──last stage succeeded──► succeeded
                                         ├──a stage failed──► failed ──resume of that stage──► running
                                         └──a stage cancelled / cancel──► cancelled ──resume──► running
"""
from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from webapp.core.errors import Conflict, ValidationFailed
from webapp.datasets.models import Dataset, Mixture
from webapp.jobs.events import notify_job, record_status
from webapp.jobs.models import Job, JobStatus, Pipeline, PipelineStatus
from webapp.jobs.services import JobResources, JobSpec, _check_visible, enqueue_job, job_cancel, job_check
from webapp.lib.ownership import visible_to
from webapp.registry.models import ModelArtifact

log = logging.getLogger(__name__)

MAX_STAGES = 8
STAGE_FIELDS = {"stage", "dataset", "mixture", "eval_dataset", "config", "resources", "output_name", "inputs", "reward_artifact"}
# The model fields a stage may take from an earlier stage's output, and the
# job column each fills.
INPUT_FIELDS = ("base_model", "reward_model")
FIELD_OF_INPUT = {"base_model": "base_artifact", "reward_model": "reward_artifact"}
OPEN = (PipelineStatus.QUEUED, PipelineStatus.RUNNING)


def _prefixed(exc: ValidationFailed, prefix: str) -> ValidationFailed:
    field = f"{prefix}.{exc.field}" if exc.field else prefix
    return ValidationFailed(f"{prefix}: {exc.message}", field=field)


def stage_inputs(stages: list[str], index: int, given: Any) -> dict[str, int]:
    """Which earlier stage's output feeds each model field of stage `index`.
    Defaults: base_model ← the nearest earlier stage that makes a policy (not
    rm), so pt → sft → rm → ppo trains rm and ppo from the SFT policy; for
    ppo, reward_model ← the nearest earlier rm stage. A field with no source
    stage is absent (the pipeline's base model, or the stage's own
    reward_artifact). `given` overrides, e.g. {"base_model": 1}."""
    prefix = f"stages[{index}].inputs"
    stage = stages[index]
    inputs: dict[str, int] = {}
    policies = [i for i in range(index) if stages[i] != "rm"]
    if policies:
        inputs["base_model"] = policies[-1]
    rewards = [i for i in range(index) if stages[i] == "rm"]
    if stage == "ppo" and rewards:
        inputs["reward_model"] = rewards[-1]
    if given is None:
        return inputs
    if not isinstance(given, dict):
        raise ValidationFailed(f"{prefix} must map base_model / reward_model to an earlier stage's index", field=prefix)
    for field, source in given.items():
        where = f"{prefix}.{field}"
        if field not in INPUT_FIELDS:
            raise ValidationFailed(f"{prefix}: unknown field {field} (one of {', '.join(INPUT_FIELDS)})", field=where)
        if field == "reward_model" and stage != "ppo":
            raise ValidationFailed(f"{prefix}: only a ppo stage takes a reward model", field=where)
        if source is None:
            inputs.pop(field, None)
            continue
        if not isinstance(source, int) or isinstance(source, bool) or not 0 <= source < index:
            raise ValidationFailed(f"{prefix}: {field} must be the index of an earlier stage (0 to {index - 1})", field=where)
        wanted_rm = field == "reward_model"
        if (stages[source] == "rm") != wanted_rm:
            made = "a reward model" if stages[source] == "rm" else "a policy"
            raise ValidationFailed(f"{prefix}: stage {source} ({stages[source]}) makes {made}, not what {field} needs", field=where)
        inputs[field] = source
    return inputs


def pipeline_create(
    *, owner: AbstractBaseUser, name: str, base_artifact: ModelArtifact, stages: list[dict[str, Any]]
) -> Pipeline:
    """Validate every stage up front (job_create's checks; stage i > 0 trains
    from stage i - 1's output, which does not exist yet: the base artifact's
    folder stands in, the architecture being the same), then store the jobs:
    the first `queued` (enqueued after commit), the others `waiting`. A
    problem is a 400 whose param names the stage: `stages[1].config.learning_rate`."""
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise ValidationFailed("name is 1 to 100 characters", field="name")
    _check_visible(base_artifact, owner, "base_artifact", "model")
    if not isinstance(stages, list) or not stages:
        raise ValidationFailed("stages must be a non-empty list", field="stages")
    if len(stages) > MAX_STAGES:
        raise ValidationFailed(f"a pipeline has at most {MAX_STAGES} stages", field="stages")
    kinds = [spec.get("stage", "") if isinstance(spec, dict) else "" for spec in stages]
    checked = []
    for index, spec in enumerate(stages):
        prefix = f"stages[{index}]"
        if not isinstance(spec, dict):
            raise ValidationFailed(f"{prefix} must be an object", field=prefix)
        unknown = sorted(set(spec) - STAGE_FIELDS)
        if unknown:
            raise ValidationFailed(f"{prefix}: unknown field {unknown[0]}", field=f"{prefix}.{unknown[0]}")
        inputs = stage_inputs(kinds, index, spec.get("inputs"))
        try:
            resources = spec.get("resources")
            resources = resources if isinstance(resources, JobResources) else JobResources.from_dict(resources)
            # An input made by an earlier stage does not exist yet: the base
            # artifact's folder stands in for a policy (same architecture);
            # a reward model's head is checked when its stage has run.
            config, output_name = job_check(owner=owner, spec=JobSpec(
                stage=spec.get("stage", ""), base_artifact=base_artifact, dataset=spec.get("dataset"),
                mixture=spec.get("mixture"), eval_dataset=spec.get("eval_dataset"), config=spec.get("config"),
                resources=resources, output_name=spec.get("output_name") or "",
                reward_artifact=None if "reward_model" in inputs else spec.get("reward_artifact"),
            ), pending=("reward_model",) if "reward_model" in inputs else ())
        except ValidationFailed as exc:
            raise _prefixed(exc, prefix) from None
        checked.append((spec, resources, config, output_name, inputs))

    with transaction.atomic():
        pipeline = Pipeline.objects.create(owner=owner, name=name, base_artifact=base_artifact)
        previous: Job | None = None
        for index, (spec, resources, config, output_name, inputs) in enumerate(checked):
            job = Job.objects.create(
                owner=owner, stage=spec["stage"], base_artifact=None if "base_model" in inputs else base_artifact,
                reward_artifact=None if "reward_model" in inputs else spec.get("reward_artifact"),
                dataset=spec.get("dataset"), mixture=spec.get("mixture"), eval_dataset=spec.get("eval_dataset"),
                config=config, output_name=output_name, queue=resources.queue, num_gpus=resources.num_gpus,
                hostfile=resources.hostfile, pipeline=pipeline, pipeline_index=index, depends_on=previous,
                status=JobStatus.QUEUED if previous is None else JobStatus.WAITING, inputs=inputs,
            )
            if previous is None:
                record_status(job, message=f"queued: stage 1 of pipeline {pipeline.pk}")
                enqueue_job(job)
            else:
                record_status(job, message=f"waiting for stage {index} ({previous.stage}, job {previous.pk})")
            previous = job
    return pipeline


def pipeline_started(job: Job) -> None:
    """A stage was claimed by a worker: the pipeline is running."""
    if job.pipeline_id is not None:
        Pipeline.objects.filter(pk=job.pipeline_id, status=PipelineStatus.QUEUED).update(status=PipelineStatus.RUNNING)


def pipeline_settled(job: Job) -> None:
    """Hook for the places that settle a job (call inside their transaction):
    advance its pipeline once that commits. Never raises into the caller."""
    if job.pipeline_id is None:
        return
    job_id = job.pk

    def advance() -> None:
        try:
            pipeline_advance(job=Job.objects.get(pk=job_id))
        except Exception:
            log.exception("job %s: could not advance its pipeline", job_id)

    transaction.on_commit(advance)


def _stop_reason(job: Job) -> str:
    if job.error:
        return job.error
    last = job.events.filter(kind="status").order_by("-seq").values_list("payload", flat=True).first() or {}
    return str(last.get("message") or job.status)


def _notify(pipeline: Pipeline, job: Job) -> None:
    notify_job(
        job_id=job.pk, owner_id=pipeline.owner_id,
        payload={"event": "pipeline.status", "id": pipeline.pk, "status": pipeline.status, "error": pipeline.error},
    )


def _stop_rest(pipeline: Pipeline, after_index: int, error: str) -> None:
    now = timezone.now()
    for waiting in pipeline.jobs.filter(status=JobStatus.WAITING, pipeline_index__gt=after_index):
        if Job.objects.filter(pk=waiting.pk, status=JobStatus.WAITING).update(
            status=JobStatus.CANCELLED, error=error, finished_at=now
        ):
            waiting.refresh_from_db()
            record_status(waiting, message=error)


def _settle_pipeline(pipeline: Pipeline, job: Job, status: str, error: str = "") -> None:
    if Pipeline.objects.filter(pk=pipeline.pk, status__in=OPEN).update(
        status=status, error=error, finished_at=timezone.now()
    ):
        pipeline.refresh_from_db()
        _notify(pipeline, job)


def pipeline_advance(*, job: Job) -> None:
    """After `job` (a pipeline stage) settled: queue the next stage on its
    output, or stop the rest, or finish the pipeline. Idempotent."""
    if job.pipeline_id is None:
        return
    with transaction.atomic():
        # The lock orders two advances of one pipeline (Postgres).
        pipeline = Pipeline.objects.select_for_update().get(pk=job.pipeline_id)
        job = Job.objects.select_related("output_artifact").get(pk=job.pk)
        number = (job.pipeline_index or 0) + 1
        if job.status == JobStatus.SUCCEEDED:
            following = Job.objects.filter(depends_on=job).first()
            if following is None:
                _settle_pipeline(pipeline, job, PipelineStatus.SUCCEEDED)
                return
            # The stages run in order, so every input of the next one has
            # succeeded by now; each must still have its output model.
            sources = {job.pipeline_index: job, **{
                stage.pipeline_index: stage for stage in pipeline.jobs.select_related("output_artifact")
                if stage.pipeline_index in following.inputs.values()
            }}
            models = {field: sources[index].output_artifact for field, index in following.inputs.items()}
            missing = next((sources[following.inputs[f]] for f, artifact in models.items() if artifact is None), None)
            if missing is not None:
                gone = (missing.pipeline_index or 0) + 1
                error = f"stopped: stage {gone} ({missing.stage}) succeeded but its output model was deleted"
                _stop_rest(pipeline, job.pipeline_index or 0, error)
                _settle_pipeline(pipeline, job, PipelineStatus.FAILED, error)
                return
            fields = {FIELD_OF_INPUT[field]: artifact for field, artifact in models.items()}
            if Job.objects.filter(pk=following.pk, status=JobStatus.WAITING).update(status=JobStatus.QUEUED, **fields):
                following.refresh_from_db()
                base = following.base_artifact
                reward = f", reward model {following.reward_artifact}" if "reward_model" in models else ""
                record_status(following, message=f"queued: trains from {base}{reward} (after stage {number}, job {job.pk})")
                enqueue_job(following)
                Pipeline.objects.filter(pk=pipeline.pk, status=PipelineStatus.QUEUED).update(status=PipelineStatus.RUNNING)
        elif job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
            error = f"stopped: stage {number} ({job.stage}) {job.status}: {_stop_reason(job)}"
            _stop_rest(pipeline, job.pipeline_index or 0, error)
            status = PipelineStatus.FAILED if job.status == JobStatus.FAILED else PipelineStatus.CANCELLED
            _settle_pipeline(pipeline, job, status, error)


def pipeline_cancel(*, pipeline: Pipeline) -> Pipeline:
    """Cancel the waiting stages at once and the queued/running one as
    job_cancel does (a running one stops at its next step, checkpointed)."""
    with transaction.atomic():
        pipeline = Pipeline.objects.select_for_update().get(pk=pipeline.pk)
        if pipeline.status not in OPEN:
            raise Conflict(f"the pipeline has already {pipeline.status}")
        active = list(pipeline.jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).order_by("pipeline_index"))
        at = active[0] if active else None
        error = "cancelled" + (f" at stage {(at.pipeline_index or 0) + 1} ({at.stage})" if at else "")
        _stop_rest(pipeline, -1, f"stopped: pipeline {error}")
        _settle_pipeline(pipeline, at or pipeline.jobs.order_by("pipeline_index").first(), PipelineStatus.CANCELLED, error)
        for job in active:
            try:
                job_cancel(job=job)
            except Conflict:  # it finished meanwhile
                pass
    pipeline.refresh_from_db()
    return pipeline


def pipeline_reopen(job: Job) -> None:
    """A stage of a failed/cancelled pipeline was resumed (call inside
    job_resume's transaction): the pipeline runs again and the stages this
    one stopped wait again for it."""
    if job.pipeline_id is None:
        return
    reopened = Pipeline.objects.filter(
        pk=job.pipeline_id, status__in=[PipelineStatus.FAILED, PipelineStatus.CANCELLED]
    ).update(status=PipelineStatus.RUNNING, error="", finished_at=None)
    later = Job.objects.filter(
        pipeline_id=job.pipeline_id, pipeline_index__gt=job.pipeline_index, status=JobStatus.CANCELLED, attempt=0
    )
    for stopped in later:
        inputs_reset = {FIELD_OF_INPUT[field]: None for field in stopped.inputs}
        if Job.objects.filter(pk=stopped.pk, status=JobStatus.CANCELLED, attempt=0).update(
            status=JobStatus.WAITING, error="", finished_at=None, cancel_requested=False, **inputs_reset
        ):
            stopped.refresh_from_db()
            record_status(stopped, message=f"waiting again: stage {(job.pipeline_index or 0) + 1} was resumed")
    if reopened:
        pipeline = Pipeline.objects.get(pk=job.pipeline_id)
        _notify(pipeline, job)


def pipeline_stage_rows(*, stages: Any, row: Any) -> list[dict[str, Any]]:
    """API helper: turn the ids of each stage into rows (`row(model, pk,
    field, label)`), naming the stage in errors."""
    if not isinstance(stages, list):
        raise ValidationFailed("stages must be a list of objects", field="stages")
    result = []
    for index, spec in enumerate(stages):
        prefix = f"stages[{index}]"
        if not isinstance(spec, dict):
            raise ValidationFailed(f"{prefix} must be an object", field=prefix)
        resolved = dict(spec)
        for field, model, label in (
            ("dataset", Dataset, "dataset"), ("mixture", Mixture, "mixture"), ("eval_dataset", Dataset, "dataset"),
            ("reward_artifact", ModelArtifact, "model"),
        ):
            value = spec.get(field)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValidationFailed(f"{prefix}: {field} must be an id", field=f"{prefix}.{field}")
            try:
                resolved[field] = row(model, value, field, label)
            except ValidationFailed as exc:
                raise _prefixed(exc, prefix) from None
        result.append(resolved)
    return result


# --- reads ----------------------------------------------------------------------


def pipeline_list(*, user: AbstractBaseUser | AnonymousUser) -> QuerySet[Pipeline]:
    jobs = Job.objects.select_related("owner").order_by("pipeline_index")
    return visible_to(Pipeline.objects.select_related("owner"), user).prefetch_related(Prefetch("jobs", queryset=jobs))


def pipeline_get(*, user: AbstractBaseUser | AnonymousUser, pk: int) -> Pipeline:
    return get_object_or_404(pipeline_list(user=user), pk=pk)
