"""The pipeline pages (form, pipeline page, list) with the Django test
client; no worker runs, so the first stage stays queued and the next waits."""
from __future__ import annotations

import pytest

from webapp.jobs.models import Job, Pipeline

pytestmark = pytest.mark.django_db

TINY = {"max_steps": 3, "max_length": 64, "micro_batch_size": 4, "learning_rate": 3e-3}


def _post_data(base, corpus, sft_data, **overrides):
    body = {"name": "recipe", "base_artifact": base.pk, "output_name": "tiny-chat", "queue": "gpu", "num_gpus": 0,
            "pt_include": "on", "pt_dataset": corpus.pk, "sft_include": "on", "sft_dataset": sft_data.pk}
    for stage in ("pt", "sft"):
        for key, value in TINY.items():
            body[f"{stage}_config_{key}"] = value
    body.update(overrides)
    return body


def _create(web, base, corpus, sft_data, **overrides):
    return web.post("/jobs/pipelines/new/", _post_data(base, corpus, sft_data, **overrides))


def test_form_renders_the_stages_with_their_defaults(web, base, corpus, sft_data) -> None:
    html = web.get("/jobs/pipelines/new/").content.decode()
    assert 'name="pt_include"' in html and 'name="sft_include"' in html
    assert 'name="pt_config_learning_rate"' in html and 'value="1e-05"' in html  # pt default
    assert 'name="sft_config_learning_rate"' in html and 'value="2e-05"' in html  # sft default
    assert 'name="sft_config_max_length"' in html and 'value="1024"' in html
    assert 'name="pt_config_max_steps"' in html and 'name="pt_config_epochs"' in html
    # Each dataset menu offers the kind its stage trains on.
    pt_menu = html.split('name="pt_dataset"', 1)[1].split("</select>", 1)[0]
    sft_menu = html.split('name="sft_dataset"', 1)[1].split("</select>", 1)[0]
    assert f'value="{corpus.pk}"' in pt_menu and f'value="{sft_data.pk}"' not in pt_menu
    assert f'value="{sft_data.pk}"' in sft_menu and f'value="{corpus.pk}"' not in sft_menu
    # The RLHF stages: rm and ppo ticked, dpo offered in place of ppo; ppo
    # may take a registry reward model when rm is left out.
    for stage in ("rm", "ppo", "dpo"):
        assert f'data-stage="{stage}" disabled' not in html and f'name="{stage}_include"' in html
    for stage in ("pt", "sft", "rm", "ppo"):
        assert f'name="{stage}_include" id="id_{stage}_include" checked>' in html
    assert 'name="dpo_include" id="id_dpo_include">' in html
    assert 'name="ppo_reward_artifact"' in html


def test_valid_post_creates_the_pipeline_and_redirects(web, alice, base, corpus, sft_data) -> None:
    response = _create(web, base, corpus, sft_data)
    assert response.status_code == 302, response.content.decode()[:2000]
    pipeline = Pipeline.objects.get(owner=alice)
    assert response["Location"] == f"/jobs/pipelines/{pipeline.pk}/"
    jobs = list(pipeline.jobs.order_by("pipeline_index"))
    assert [(j.stage, j.status) for j in jobs] == [("pt", "queued"), ("sft", "waiting")]
    assert jobs[0].dataset == corpus and jobs[1].dataset == sft_data and jobs[1].depends_on == jobs[0]
    assert jobs[0].config["learning_rate"] == 3e-3 and jobs[0].config["max_steps"] == 3
    assert jobs[1].output_name == "tiny-chat" and jobs[0].output_name == ""


def test_invalid_learning_rate_of_stage_two_shows_on_that_input(web, base, corpus, sft_data) -> None:
    response = _create(web, base, corpus, sft_data, sft_config_learning_rate="5")
    assert response.status_code == 200
    form = response.context["form"]
    assert form.errors.get("sft_config_learning_rate"), form.errors
    assert "pt_config_learning_rate" not in form.errors
    assert 'id="id_sft_config_learning_rate_error">' in response.content.decode()
    assert not Pipeline.objects.exists() and not Job.objects.exists()


def test_corpus_picked_for_sft_shows_on_the_sft_dataset(web, base, corpus, sft_data) -> None:
    response = _create(web, base, corpus, sft_data, sft_dataset=corpus.pk)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "instruction" in " ".join(errors.get("sft_dataset", [])), errors
    assert not Pipeline.objects.exists() and not Job.objects.exists()


def test_no_stage_included_is_an_error(web, base, corpus, sft_data) -> None:
    body = _post_data(base, corpus, sft_data)
    del body["pt_include"], body["sft_include"]
    response = web.post("/jobs/pipelines/new/", body)
    assert response.status_code == 200 and "Include at least one stage" in response.content.decode()
    assert not Pipeline.objects.exists()


def test_pipeline_page_shows_the_chain_and_is_owner_scoped(web, client, alice, bob, base, corpus, sft_data) -> None:
    _create(web, base, corpus, sft_data)
    pipeline = Pipeline.objects.get(owner=alice)
    pt, sft = pipeline.jobs.order_by("pipeline_index")
    html = web.get(f"/jobs/pipelines/{pipeline.pk}/").content.decode()
    assert html.index(f'data-job="{pt.pk}"') < html.index(f'data-job="{sft.pk}"')
    assert ">Queued</span>" in html and ">Waiting</span>" in html
    assert f'href="/jobs/{pt.pk}/"' in html and f"/api/pipelines/{pipeline.pk}/cancel" in html
    assert "pipeline_detail.js" in html
    # The job page links back to its pipeline.
    assert f'href="/jobs/pipelines/{pipeline.pk}/"' in web.get(f"/jobs/{sft.pk}/").content.decode()
    client.force_login(bob)
    assert client.get(f"/jobs/pipelines/{pipeline.pk}/").status_code == 404


def test_list_shows_only_the_owners_pipelines(
    web, alice, bob, base, corpus, sft_data, make_base, make_dataset
) -> None:
    from webapp.jobs.pipelines import pipeline_create

    _create(web, base, corpus, sft_data)
    mine = Pipeline.objects.get(owner=alice)
    theirs = pipeline_create(owner=bob, name="bobs", base_artifact=make_base(bob), stages=[
        {"stage": "sft", "dataset": make_dataset(bob, "instruction", name="b"), "config": dict(TINY)}])
    html = web.get("/jobs/pipelines/").content.decode()
    assert f'data-pipeline="{mine.pk}"' in html and f'data-pipeline="{theirs.pk}"' not in html
    assert "pt → sft" in html
    assert "/jobs/pipelines/new/" in web.get("/jobs/").content.decode()
