"""The job pages (list, form generated from the CLI's schema, job page)
with the Django test client; no worker runs, so created jobs stay queued."""
from __future__ import annotations

import pytest

from tests.jobs.conftest import TINY_SFT
from webapp.jobs import training_cli
from webapp.jobs.models import Job
from webapp.jobs.pipelines import pipeline_create
from webapp.jobs.services import JobSpec, job_create

pytestmark = pytest.mark.django_db


def _post_data(base, data, **overrides):
    body = {"stage": "sft", "base_artifact": base.pk, "dataset": data.pk, "queue": "gpu", "num_gpus": 0, "hostfile": ""}
    # What the browser submits: the stage defaults, with a tiny run's values.
    for key, value in {**training_cli.stage_defaults("sft"), **TINY_SFT, "max_steps": 4}.items():
        if value is not None and value is not False:
            body[f"config_{key}"] = value
    body.update(overrides)
    return body


def test_list_is_scoped_to_the_owner_and_filters(web, alice, bob, base, sft_data, make_base, make_dataset) -> None:
    mine = job_create(owner=alice, spec=JobSpec(stage="sft", base_artifact=base, dataset=sft_data, config=dict(TINY_SFT, max_steps=4)))
    theirs = job_create(owner=bob, spec=JobSpec(stage="sft", base_artifact=make_base(bob), dataset=make_dataset(bob),
                                               config=dict(TINY_SFT, max_steps=4)))
    html = web.get("/jobs/").content.decode()
    assert f'data-job="{mine.pk}"' in html and f'data-job="{theirs.pk}"' not in html
    assert f'data-job="{mine.pk}"' in web.get("/jobs/?stage=sft&status=queued").content.decode()
    assert f'data-job="{mine.pk}"' not in web.get("/jobs/?status=running").content.decode()
    assert f'data-job="{mine.pk}"' not in web.get("/jobs/?stage=pt").content.decode()
    assert web.get("/jobs/?status=bogus").status_code == 200


def test_form_renders_the_schema_fields_with_the_stage_defaults(web, base, sft_data) -> None:
    html = web.get("/jobs/new/?stage=sft").content.decode()
    assert 'name="config_learning_rate"' in html and 'value="2e-05"' in html
    assert 'name="config_max_length"' in html and 'value="1024"' in html
    assert 'name="config_lr_scheduler"' in html and 'name="config_gradient_checkpointing"' in html
    assert "max gradient norm; 0 disables clipping" in html  # the schema's description as help
    for path_field in ("base_model", "train_data", "output_dir", "eval_data"):
        assert f'name="config_{path_field}"' not in html
    assert sft_data.name in html and 'name="num_gpus"' in html and 'name="hostfile"' in html
    pt = web.get("/jobs/new/?stage=pt").content.decode()
    assert 'value="512"' in pt and 'value="1e-05"' in pt


def test_a_valid_post_creates_a_queued_job(web, alice, base, sft_data) -> None:
    response = web.post("/jobs/new/", _post_data(base, sft_data))
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert (job.owner, job.status, job.config["max_steps"], job.config["learning_rate"]) == (alice, "queued", 4, 3e-3)
    page = web.get(f"/jobs/{job.pk}/").content.decode()
    assert "Queued" in page and f"/api/jobs/{job.pk}/events" in page and "Full log" in page


def test_an_invalid_config_value_is_shown_on_its_input(web, base, sft_data) -> None:
    response = web.post("/jobs/new/", _post_data(base, sft_data, config_learning_rate="5"))
    assert response.status_code == 200 and not Job.objects.exists()
    form = response.context["form"]
    assert form.errors["config_learning_rate"] and 'id="id_config_learning_rate_error"' in response.content.decode()


def test_wrong_data_kind_is_an_error_on_the_dataset(web, base, corpus) -> None:
    response = web.post("/jobs/new/", _post_data(base, corpus))
    assert response.status_code == 200 and not Job.objects.exists()
    assert "trains on instruction data" in " ".join(response.context["form"].errors["dataset"])


def test_preview_shows_the_command_and_config(web, base, sft_data) -> None:
    body = web.post("/jobs/preview/", _post_data(base, sft_data)).json()
    assert body["ok"] and "training_jobs run --config" in body["command"] and "<id>" in body["command"]
    assert body["config"]["max_steps"] == 4 and body["config"]["stage"] == "sft" and not Job.objects.exists()
    bad = web.post("/jobs/preview/", _post_data(base, sft_data, config_learning_rate="5"))
    assert bad.status_code == 400 and "config_learning_rate" in bad.json()["errors"]


def test_another_users_job_page_is_404_and_clone_prefills(web, alice, bob, base, sft_data, make_base, make_dataset) -> None:
    theirs = job_create(owner=bob, spec=JobSpec(stage="sft", base_artifact=make_base(bob), dataset=make_dataset(bob),
                                               config=dict(TINY_SFT, max_steps=4)))
    assert web.get(f"/jobs/{theirs.pk}/").status_code == 404
    assert web.get(f"/jobs/new/?clone={theirs.pk}").status_code == 404
    mine = job_create(owner=alice, spec=JobSpec(stage="sft", base_artifact=base, dataset=sft_data,
                                                config=dict(TINY_SFT, max_steps=7, learning_rate=4e-4), output_name="cloned-out"))
    form = web.get(f"/jobs/new/?clone={mine.pk}").context["form"]
    assert form["config_max_steps"].value() == 7 and form["config_learning_rate"].value() == 4e-4
    assert form["dataset"].value() == sft_data.pk and form["output_name"].value() == "cloned-out"


def test_a_waiting_pipeline_stage_renders_on_the_list_and_its_page(web, alice, base, corpus, sft_data) -> None:
    pipeline = pipeline_create(owner=alice, name="recipe", base_artifact=base, stages=[
        {"stage": "pt", "dataset": corpus, "config": dict(TINY_SFT, max_steps=2)},
        {"stage": "sft", "dataset": sft_data, "config": dict(TINY_SFT, max_steps=2)},
    ])
    waiting = Job.objects.get(pipeline=pipeline, pipeline_index=1)
    assert waiting.status == "waiting" and waiting.base_artifact_id is None
    listed = web.get("/jobs/")
    assert listed.status_code == 200 and "output of stage 1" in listed.content.decode()
    page = web.get(f"/jobs/{waiting.pk}/")
    assert page.status_code == 200 and "(waiting)" in page.content.decode()
