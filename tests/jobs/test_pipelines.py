"""Pipelines: linked jobs (pt → sft). Creation checks every stage up front;
advancing queues the next stage on the previous output, or stops the rest
with the reason; a real worker runs pt → sft to a model whose lineage is
base → pt → sft."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.jobs.conftest import TINY_SFT, api_error
from tests.support import celery_worker, wait_until
from webapp.jobs.models import Job, JobStatus, Pipeline
from webapp.jobs.pipelines import pipeline_advance
from webapp.jobs.services import job_cancel, job_resume
from webapp.registry.models import ModelArtifact
from webapp.registry.services import artifact_register


def _body(base, corpus, sft_data, *, pt: dict[str, Any] | None = None, sft: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "recipe", "base_artifact": base.pk,
        "stages": [
            {"stage": "pt", "dataset": corpus.pk, "config": dict(TINY_SFT, max_steps=3), **(pt or {})},
            {"stage": "sft", "dataset": sft_data.pk, "config": dict(TINY_SFT, max_steps=3), "output_name": "tiny-chat", **(sft or {})},
        ],
    }


def _statuses(pipeline_id: int) -> list[str]:
    return list(Job.objects.filter(pipeline_id=pipeline_id).order_by("pipeline_index").values_list("status", flat=True))


def _settle(job: Job, status: str, **fields: Any) -> None:
    """What the runner's _finish does to the row (without the hook)."""
    Job.objects.filter(pk=job.pk).update(status=status, attempt=1, **fields)


# --- API, no worker ---------------------------------------------------------------


@pytest.mark.django_db
def test_create_stores_the_first_stage_queued_and_the_rest_waiting(authed, alice, base, corpus, sft_data) -> None:
    response = authed.post("/api/pipelines/", _body(base, corpus, sft_data), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["status"], body["owner"], body["base_artifact"]) == ("recipe", "queued", "alice", base.pk)
    first, second = body["jobs"]
    assert (first["stage"], first["status"], first["base_artifact"], first["pipeline_index"]) == ("pt", "queued", base.pk, 0)
    assert (second["stage"], second["status"], second["base_artifact"], second["depends_on"]) == ("sft", "waiting", None, first["id"])
    assert second["output_name"] == "tiny-chat" and second["config"]["max_steps"] == 3
    assert authed.get(f"/api/pipelines/{body['id']}/").json()["jobs"] == body["jobs"]
    assert [p["id"] for p in authed.get("/api/pipelines/").json()["results"]] == [body["id"]]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("change", "param", "message"),
    [
        ({"sft": {"config": {"learning_rate": 5}}}, "stages[1].config.learning_rate", "Input should be less than 1"),
        ({"pt": {"config": {"warmup": 0.1}}}, "stages[0].config.warmup", "unknown field"),
        ({"sft": {"resources": {"queue": "nope"}}}, "stages[1].resources.queue", "queue must be one of"),
        ({"sft": {"dataset": 999999}}, "stages[1].dataset", "no dataset with id 999999"),
        ({"sft": {"colour": "red"}}, "stages[1].colour", "unknown field colour"),
        ({"pt": {"stage": "xx"}}, "stages[0].stage", "stage must be one of"),
    ],
)
def test_a_bad_stage_is_a_400_naming_stage_and_field(authed, base, corpus, sft_data, change, param, message) -> None:
    error = api_error(authed.post("/api/pipelines/", _body(base, corpus, sft_data, **change), format="json"))
    assert error["param"] == param and message in error["message"], error
    assert not Pipeline.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_wrong_data_for_a_later_stage_stores_nothing(authed, base, corpus, sft_data) -> None:
    error = api_error(authed.post("/api/pipelines/", _body(base, corpus, sft_data, sft={"dataset": corpus.pk}), format="json"))
    assert error["param"] == "stages[1].dataset" and "stage sft trains on instruction data" in error["message"]
    # A third stage is checked the same way: rm reads preference pairs.
    body = _body(base, corpus, sft_data)
    body["stages"].append({"stage": "rm", "dataset": sft_data.pk})
    error = api_error(authed.post("/api/pipelines/", body, format="json"))
    assert error["param"] == "stages[2].dataset" and "stage rm trains on preference data" in error["message"]
    assert api_error(authed.post("/api/pipelines/", dict(body, stages=[]), format="json"))["param"] == "stages"
    assert not Pipeline.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_other_users_pipelines_are_invisible(api_client, authed, bob, base, corpus, sft_data, make_base) -> None:
    bobs_base = make_base(bob, "bobs")
    error = api_error(authed.post("/api/pipelines/", _body(bobs_base, corpus, sft_data), format="json"))
    assert (error["param"], error["message"]) == ("base_artifact", f"no model with id {bobs_base.pk}")
    pipeline_id = authed.post("/api/pipelines/", _body(base, corpus, sft_data), format="json").json()["id"]
    api_client.force_authenticate(user=bob)
    assert api_client.get(f"/api/pipelines/{pipeline_id}/").status_code == 404
    assert api_client.post(f"/api/pipelines/{pipeline_id}/cancel").status_code == 404
    assert api_client.get("/api/pipelines/").json()["results"] == []
    assert _statuses(pipeline_id) == ["queued", "waiting"]


@pytest.mark.django_db
def test_advance_queues_the_next_stage_once_and_finishes_the_pipeline(authed, alice, base, corpus, sft_data, roots) -> None:
    pipeline = Pipeline.objects.get(pk=authed.post("/api/pipelines/", _body(base, corpus, sft_data), format="json").json()["id"])
    pt, sft = pipeline.jobs.order_by("pipeline_index")
    folder = roots.artifacts / "fake-pt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    output = artifact_register(owner=alice, name="tiny-pt", architecture="BloomForCausalLM", kind="policy", folder=folder, parent=base)
    _settle(pt, JobStatus.SUCCEEDED, output_artifact=output)
    pipeline_advance(job=pt)
    pipeline_advance(job=pt)  # a duplicate does nothing
    sft.refresh_from_db()
    assert (sft.status, sft.base_artifact) == ("queued", output)
    assert [e.payload["status"] for e in sft.events.filter(kind="status")] == ["waiting", "queued"]
    pipeline.refresh_from_db()
    assert pipeline.status == "running"

    _settle(sft, JobStatus.SUCCEEDED)
    pipeline_advance(job=sft)
    pipeline.refresh_from_db()
    assert pipeline.status == "succeeded" and pipeline.finished_at is not None
    finished = pipeline.finished_at
    pipeline_advance(job=sft)
    pipeline_advance(job=pt)
    pipeline.refresh_from_db()
    assert (pipeline.status, pipeline.finished_at) == ("succeeded", finished)
    assert sft.events.filter(kind="status").count() == 2


@pytest.mark.django_db
def test_a_failed_stage_stops_the_rest_and_resume_reopens(authed, base, corpus, sft_data) -> None:
    pipeline_id = authed.post("/api/pipelines/", _body(base, corpus, sft_data), format="json").json()["id"]
    pipeline = Pipeline.objects.get(pk=pipeline_id)
    pt, sft = pipeline.jobs.order_by("pipeline_index")
    _settle(pt, JobStatus.FAILED, error="training exited with code 1: boom")
    pipeline_advance(job=pt)
    pipeline_advance(job=pt)
    reason = "stopped: stage 1 (pt) failed: training exited with code 1: boom"
    sft.refresh_from_db()
    pipeline.refresh_from_db()
    assert (sft.status, sft.error) == ("cancelled", reason)
    assert (pipeline.status, pipeline.error) == ("failed", reason)
    assert sft.events.filter(kind="status").count() == 2  # waiting, cancelled: once
    # The stopped stage never started: nothing to resume there.
    assert authed.post(f"/api/jobs/{sft.pk}/resume").status_code == 409

    job_resume(job=pt)  # the failed stage again: the pipeline runs again
    sft.refresh_from_db()
    pipeline.refresh_from_db()
    assert (pipeline.status, pipeline.error, pipeline.finished_at) == ("running", "", None)
    assert (sft.status, sft.error, sft.base_artifact) == ("waiting", "", None)
    assert _statuses(pipeline_id) == ["queued", "waiting"]


@pytest.mark.django_db
def test_cancel_stops_every_stage(authed, base, corpus, sft_data, django_capture_on_commit_callbacks) -> None:
    pipeline_id = authed.post("/api/pipelines/", _body(base, corpus, sft_data), format="json").json()["id"]
    with django_capture_on_commit_callbacks(execute=True):
        response = authed.post(f"/api/pipelines/{pipeline_id}/cancel")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["error"]) == ("cancelled", "cancelled at stage 1 (pt)")
    assert [j["status"] for j in body["jobs"]] == ["cancelled", "cancelled"]
    assert body["jobs"][1]["error"] == "stopped: pipeline cancelled at stage 1 (pt)"
    assert Pipeline.objects.get(pk=pipeline_id).error == "cancelled at stage 1 (pt)"  # the advance changed nothing
    assert authed.post(f"/api/pipelines/{pipeline_id}/cancel").status_code == 409


@pytest.mark.django_db
def test_cancelling_the_queued_stage_through_the_jobs_api_stops_the_pipeline(
    authed, base, corpus, sft_data, django_capture_on_commit_callbacks
) -> None:
    pipeline_id = authed.post("/api/pipelines/", _body(base, corpus, sft_data), format="json").json()["id"]
    pt = Job.objects.get(pipeline_id=pipeline_id, pipeline_index=0)
    with django_capture_on_commit_callbacks(execute=True):
        job_cancel(job=pt)
    pipeline = Pipeline.objects.get(pk=pipeline_id)
    assert (pipeline.status, pipeline.error) == ("cancelled", "stopped: stage 1 (pt) cancelled: cancelled before it started")
    assert _statuses(pipeline_id) == ["cancelled", "cancelled"]


# --- a real worker ------------------------------------------------------------------


def _wait_pipeline(pipeline_id: int, tmp_path: Path, timeout_s: float = 150) -> Pipeline:
    def settled() -> bool:
        done = Pipeline.objects.get(pk=pipeline_id).status in ("succeeded", "failed", "cancelled")
        return done and not Job.objects.filter(pipeline_id=pipeline_id, status__in=["waiting", "queued", "running"]).exists()

    try:
        wait_until(settled, timeout_s=timeout_s, what=f"pipeline {pipeline_id} to end")
    except AssertionError as exc:
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("test-*.log"))
        raise AssertionError(f"{exc}\n{_statuses(pipeline_id)}\n--- worker log ---\n{logs}") from None
    return Pipeline.objects.get(pk=pipeline_id)


@pytest.mark.django_db(transaction=True)
def test_pt_then_sft_runs_to_succeeded_in_a_worker(authed, alice, base, corpus, sft_data, tmp_path) -> None:
    with celery_worker(log_dir=tmp_path):
        response = authed.post("/api/pipelines/", _body(base, corpus, sft_data), format="json")
        assert response.status_code == 201, response.content
        pipeline = _wait_pipeline(response.json()["id"], tmp_path)
    pt, sft = pipeline.jobs.order_by("pipeline_index")
    assert (pipeline.status, pt.status, sft.status) == ("succeeded", "succeeded", "succeeded"), (pt.error, sft.error)
    assert sft.base_artifact == pt.output_artifact and pt.base_artifact == base
    final = ModelArtifact.objects.get(pk=sft.output_artifact_id)
    assert final.name == "tiny-chat" and pt.output_artifact.name == "tiny-pt"
    assert (final.parent, final.parent.parent, final.produced_by) == (pt.output_artifact, base, sft)
    body = authed.get(f"/api/pipelines/{pipeline.pk}/").json()
    assert body["output_artifact"] == final.pk and [j["step"] for j in body["jobs"]] == [3, 3]


@pytest.mark.django_db(transaction=True)
def test_a_failing_first_stage_stops_the_rest_in_a_worker(authed, base, corpus, sft_data, tmp_path) -> None:
    # The corpus stops being ready between the submit and the run (the
    # worker starts after both): the runner fails the pt job before
    # training; sft must not start.
    response = authed.post("/api/pipelines/", _body(base, corpus, sft_data), format="json")
    assert response.status_code == 201, response.content
    type(corpus).objects.filter(pk=corpus.pk).update(status="failed")
    with celery_worker(log_dir=tmp_path):
        pipeline = _wait_pipeline(response.json()["id"], tmp_path, timeout_s=60)
    pt, sft = pipeline.jobs.order_by("pipeline_index")
    reason = f"stopped: stage 1 (pt) failed: dataset {corpus} is failed, not ready"
    assert (pt.status, sft.status, pipeline.status) == ("failed", "cancelled", "failed")
    assert sft.error == reason and pipeline.error == reason and sft.attempt == 0
