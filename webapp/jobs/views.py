"""Pages for training jobs. The live parts (progress over the notifications
socket and the job socket, charts, cancel/resume, the log tail) are page
scripts calling the REST API in webapp.jobs.apis."""
from __future__ import annotations

import json
import os
import shlex
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.core.errors import Conflict, ValidationFailed
from webapp.jobs import selectors, services
from webapp.jobs.forms import JobForm, cli_stages, initial_from_job
from webapp.jobs.models import Job, JobStage, JobStatus
from webapp.jobs.runner import launch_preview

# Shown in a preview where the job's id will be once it is saved.
ID_PLACEHOLDER = "<id>"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


@require_GET
def job_list(request: HttpRequest) -> HttpResponse:
    status, stage = request.GET.get("status") or "", request.GET.get("stage") or ""
    try:
        jobs = selectors.job_list(user=request.user, status=status or None, stage=stage or None)
    except ValidationFailed as error:
        messages.error(request, error.message)
        status, stage = "", ""
        jobs = selectors.job_list(user=request.user)
    return render(request, "jobs/job_list.html", {
        "jobs": jobs.select_related("dataset", "mixture"), "status": status, "stage": stage,
        "statuses": JobStatus.choices, "stages": JobStage.choices, "filtered": bool(status or stage),
    })


def _form_stage(request: HttpRequest, clone: Job | None) -> str:
    stages = cli_stages()
    wanted = request.POST.get("stage") or request.GET.get("stage") or (clone.stage if clone else "")
    if wanted in stages:
        return wanted
    return "sft" if "sft" in stages else stages[0]


@require_http_methods(["GET", "POST"])
def job_new(request: HttpRequest) -> HttpResponse:
    clone_id = _int(request.GET.get("clone"))
    clone = selectors.job_get(user=request.user, pk=clone_id) if clone_id is not None else None
    stage = _form_stage(request, clone)
    initial = initial_from_job(clone) if clone is not None and clone.stage == stage else {}
    form = JobForm(request.POST or None, user=request.user, stage=stage, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            job = services.job_create(owner=request.user, spec=form.spec())
        except (ValidationFailed, Conflict) as error:
            form.add_service_error(error)
        else:
            messages.success(request, f"Job {job.pk} queued: it starts when a worker on the “{job.queue}” queue is free.")
            return redirect("jobs:detail", pk=job.pk)
    return render(request, "jobs/job_form.html", {"form": form, "stage": stage, "clone": clone})


def _placeholder(value: Any) -> Any:
    """An unsaved job's folder is jobs/None/: name it jobs/<id>/."""
    if isinstance(value, str):
        return value.replace(f"{os.sep}jobs{os.sep}None{os.sep}", f"{os.sep}jobs{os.sep}{ID_PLACEHOLDER}{os.sep}").replace(
            f"{os.sep}jobs{os.sep}None", f"{os.sep}jobs{os.sep}{ID_PLACEHOLDER}")
    if isinstance(value, list):
        return [_placeholder(item) for item in value]
    if isinstance(value, dict):
        return {key: _placeholder(item) for key, item in value.items()}
    return value


@require_POST
def job_preview(request: HttpRequest) -> JsonResponse:
    """What submitting the form would run: the checks of job_create (the CLI
    validates the config), then the launch command and job.json of an
    unsaved job, with `<id>` where the job's id will be."""
    stage = _form_stage(request, None)
    form = JobForm(request.POST, user=request.user, stage=stage)
    if not form.is_valid():
        errors = {name: " ".join(errs) for name, errs in form.errors.items()}
        return JsonResponse({"ok": False, "errors": errors}, status=400)
    spec = form.spec()
    try:
        merged, _ = services.job_check(owner=request.user, spec=spec)  # job_create's own checks
    except ValidationFailed as error:
        form.add_service_error(error)
        errors = {name: " ".join(errs) for name, errs in form.errors.items()}
        return JsonResponse({"ok": False, "errors": errors}, status=400)
    resources = spec.resources
    world_size = services.check_resources(resources)
    job = Job(
        owner=request.user, stage=stage, base_artifact=spec.base_artifact, reward_artifact=spec.reward_artifact,
        dataset=spec.dataset, mixture=spec.mixture, eval_dataset=spec.eval_dataset, config=merged, queue=resources.queue,
        num_gpus=resources.num_gpus, hostfile=resources.hostfile,
    )
    preview = _placeholder(launch_preview(job))
    argv = preview["argv"]
    return JsonResponse({
        "ok": True, "argv": argv, "command": shlex.join(argv), "config": preview["config"],
        "world_size": world_size, "queue": resources.queue,
        "note": f"{ID_PLACEHOLDER} is the job's number once submitted; the worker that runs it writes job.json there. "
                "master_port is chosen free on the worker at launch.",
    })


# Charts a stage adds to loss and learning rate: (metrics key, title); the
# keys are the training_jobs progress protocol's (training_jobs/README.md).
STAGE_CHARTS = {
    "rm": (("accuracy", "Pairwise accuracy"), ("chosen_score", "Chosen score"), ("rejected_score", "Rejected score")),
    "ppo": (("reward_mean", "Mean reward"), ("kl", "KL to the reference"), ("critic_loss", "Critic loss"),
            ("response_length", "Response length")),
    "dpo": (("reward_accuracy", "Reward accuracy"), ("reward_margin", "Reward margin")),
}


@require_GET
def job_detail(request: HttpRequest, pk: int) -> HttpResponse:
    job = selectors.job_get(user=request.user, pk=pk)
    checkpoints = [event.payload for event in job.events.filter(kind="checkpoint").order_by("seq")]
    return render(request, "jobs/job_detail.html", {
        "job": job,
        "config": json.dumps(job.config, indent=2, ensure_ascii=False),
        "checkpoints": checkpoints,
        "progress_pct": round(100 * min(job.step / job.total_steps, 1.0), 1) if job.total_steps else 0,
        "stage_charts": STAGE_CHARTS.get(job.stage, ()),
    })
