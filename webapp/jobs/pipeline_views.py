"""Pages for pipelines (the recipe as linked jobs): the form, the list and
the pipeline page. The live parts (progress over the notifications socket,
a fallback poll, cancel) are static/js/pipeline_detail.js calling the REST
API in webapp.jobs.apis."""
from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from webapp.core.errors import Conflict, ValidationFailed
from webapp.jobs import pipelines
from webapp.jobs.models import Job, PipelineStatus
from webapp.jobs.pipeline_forms import PipelineForm


@require_GET
def pipeline_list(request: HttpRequest) -> HttpResponse:
    rows = pipelines.pipeline_list(user=request.user).select_related("base_artifact")
    return render(request, "jobs/pipeline_list.html", {"pipelines": rows})


@require_http_methods(["GET", "POST"])
def pipeline_new(request: HttpRequest) -> HttpResponse:
    form = PipelineForm(request.POST or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            pipeline = pipelines.pipeline_create(owner=request.user, **form.create_kwargs())
        except (ValidationFailed, Conflict) as error:
            form.add_service_error(error)
        else:
            messages.success(request, f"Pipeline “{pipeline.name}” created: its first stage is queued, "
                                      "the others wait for the stage before them.")
            return redirect("jobs:pipeline-detail", pk=pipeline.pk)
    return render(request, "jobs/pipeline_form.html", {"form": form})


def _progress_pct(job: Job) -> float:
    return round(100 * min(job.step / job.total_steps, 1.0), 1) if job.total_steps else 0


@require_GET
def pipeline_detail(request: HttpRequest, pk: int) -> HttpResponse:
    pipeline = pipelines.pipeline_get(user=request.user, pk=pk)
    jobs = sorted(pipeline.jobs.all(), key=lambda job: job.pipeline_index or 0)
    artifacts = {job.pk: job.output_artifact for job in Job.objects.filter(
        pk__in=[job.pk for job in jobs], output_artifact__isnull=False).select_related("output_artifact")}
    stages = [{"job": job, "number": index + 1, "pct": _progress_pct(job), "output": artifacts.get(job.pk)}
              for index, job in enumerate(jobs)]
    return render(request, "jobs/pipeline_detail.html", {
        "pipeline": pipeline, "stages": stages,
        "is_open": pipeline.status in (PipelineStatus.QUEUED, PipelineStatus.RUNNING),
    })
