"""The seed's whole recipe as a pipeline: pt → sft → rm → ppo (or dpo).
rm and ppo train from the SFT policy, ppo scores with the rm stage's reward
model (Job.inputs); a real worker runs the chain on the tiny model to a
registered PPO actor (and its EMA) with lineage base → pt → sft → ppo."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.jobs.conftest import ITEMS, TINY_SFT, api_error
from tests.support import celery_worker, wait_until
from webapp.jobs.models import Job, JobStatus, Pipeline
from webapp.jobs.pipelines import pipeline_advance
from webapp.registry.models import ModelArtifact
from webapp.registry.services import artifact_register

TINY_PPO = {**TINY_SFT, "max_steps": 2, "ppo": {"prompt_length": 24, "response_length": 12, "ema": True}}


def preference_rows() -> list[dict[str, Any]]:
    return [
        {"prompt": f"{item}怎么样?", "chosen": f"{item}很好,推荐购买。", "rejected": f"{item}一般。"}
        for item in ITEMS * 3
    ]


@pytest.fixture
def preference(alice, make_dataset):
    return make_dataset(alice, "preference", rows=preference_rows(), name="pref")


def _recipe(base, corpus, sft_data, preference, *, last: str = "ppo", **last_fields: Any) -> dict[str, Any]:
    short = dict(TINY_SFT, max_steps=2)
    return {
        "name": "recipe", "base_artifact": base.pk,
        "stages": [
            {"stage": "pt", "dataset": corpus.pk, "config": short},
            {"stage": "sft", "dataset": sft_data.pk, "config": short},
            {"stage": "rm", "dataset": preference.pk, "config": short},
            {"stage": last, "dataset": preference.pk, "config": TINY_PPO if last == "ppo" else short,
             "output_name": "tiny-aligned", **last_fields},
        ],
    }


def _fake_output(owner, roots, name: str, kind: str, parent) -> ModelArtifact:
    folder = roots.artifacts / f"fake-{name}"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    return artifact_register(owner=owner, name=name, architecture="BloomForCausalLM", kind=kind, folder=folder, parent=parent)


@pytest.mark.django_db
def test_rm_and_ppo_take_their_models_from_the_sft_and_rm_stages(authed, alice, base, corpus, sft_data, preference, roots) -> None:
    response = authed.post("/api/pipelines/", _recipe(base, corpus, sft_data, preference), format="json")
    assert response.status_code == 201, response.content
    pipeline = Pipeline.objects.get(pk=response.json()["id"])
    pt, sft, rm, ppo = pipeline.jobs.order_by("pipeline_index")
    assert [j.inputs for j in (pt, sft, rm, ppo)] == [{}, {"base_model": 0}, {"base_model": 1}, {"base_model": 1, "reward_model": 2}]
    assert (ppo.base_artifact, ppo.reward_artifact, ppo.status) == (None, None, "waiting")

    outputs = {}
    for job, kind in ((pt, "policy"), (sft, "policy"), (rm, "reward")):
        job.refresh_from_db()
        outputs[job.stage] = _fake_output(alice, roots, f"tiny-{job.stage}", kind, job.base_artifact)
        Job.objects.filter(pk=job.pk).update(status=JobStatus.SUCCEEDED, attempt=1, output_artifact=outputs[job.stage])
        pipeline_advance(job=job)
    rm.refresh_from_db()
    ppo.refresh_from_db()
    assert rm.base_artifact == outputs["sft"]  # the policy, not the stage before by position alone
    assert (ppo.status, ppo.base_artifact, ppo.reward_artifact) == ("queued", outputs["sft"], outputs["rm"])
    queued = ppo.events.filter(kind="status").last().payload["message"]
    assert "trains from tiny-sft" in queued and "reward model tiny-rm" in queued


@pytest.mark.django_db
def test_stage_inputs_are_checked(authed, alice, base, corpus, sft_data, preference) -> None:
    body = _recipe(base, corpus, sft_data, preference, inputs={"reward_model": 1})
    error = api_error(authed.post("/api/pipelines/", body, format="json"))
    assert error["param"] == "stages[3].inputs.reward_model" and "makes a policy" in error["message"]
    body = _recipe(base, corpus, sft_data, preference, inputs={"base_model": 3})
    error = api_error(authed.post("/api/pipelines/", body, format="json"))
    assert error["param"] == "stages[3].inputs.base_model" and "earlier stage" in error["message"]
    # ppo without an rm stage needs a registry reward model.
    body = _recipe(base, corpus, sft_data, preference)
    del body["stages"][2]
    error = api_error(authed.post("/api/pipelines/", body, format="json"))
    assert error["param"] == "stages[2].reward_artifact" and "needs a reward model" in error["message"]
    body["stages"][2]["reward_artifact"] = base.pk
    error = api_error(authed.post("/api/pipelines/", body, format="json"))
    assert error["param"] == "stages[2].reward_artifact" and "not a reward model" in error["message"]
    assert not Pipeline.objects.exists() and not Job.objects.exists()


@pytest.mark.django_db
def test_dpo_in_place_of_ppo_trains_from_the_sft_policy(authed, base, corpus, sft_data, preference) -> None:
    response = authed.post("/api/pipelines/", _recipe(base, corpus, sft_data, preference, last="dpo"), format="json")
    assert response.status_code == 201, response.content
    dpo = Pipeline.objects.get(pk=response.json()["id"]).jobs.get(pipeline_index=3)
    assert (dpo.stage, dpo.inputs) == ("dpo", {"base_model": 1})


def _wait_pipeline(pipeline_id: int, tmp_path: Path, timeout_s: float) -> Pipeline:
    def settled() -> bool:
        return not Job.objects.filter(pipeline_id=pipeline_id, status__in=["waiting", "queued", "running"]).exists()

    try:
        wait_until(settled, timeout_s=timeout_s, what=f"pipeline {pipeline_id} to end", interval_s=0.5)
    except AssertionError as exc:
        logs = "\n".join(p.read_text(errors="replace")[-3000:] for p in tmp_path.glob("test-*.log"))
        raise AssertionError(f"{exc}\n--- worker log ---\n{logs}") from None
    return Pipeline.objects.get(pk=pipeline_id)


@pytest.mark.django_db(transaction=True)
def test_the_whole_recipe_runs_to_a_registered_ppo_actor_in_a_worker(
    authed, alice, base, corpus, sft_data, preference, tmp_path
) -> None:
    with celery_worker(log_dir=tmp_path):
        response = authed.post("/api/pipelines/", _recipe(base, corpus, sft_data, preference), format="json")
        assert response.status_code == 201, response.content
        pipeline = _wait_pipeline(response.json()["id"], tmp_path, timeout_s=280)
    pt, sft, rm, ppo = pipeline.jobs.order_by("pipeline_index")
    statuses = [(j.stage, j.status, j.error[:300]) for j in (pt, sft, rm, ppo)]
    assert pipeline.status == "succeeded", statuses
    reward = rm.output_artifact
    assert (reward.kind, reward.parent, rm.base_artifact) == ("reward", sft.output_artifact, sft.output_artifact)
    assert (ppo.base_artifact, ppo.reward_artifact) == (sft.output_artifact, reward)
    actor = ModelArtifact.objects.get(pk=ppo.output_artifact_id)
    assert (actor.name, actor.kind, actor.produced_by) == ("tiny-aligned", "policy", ppo)
    assert [actor.parent, actor.parent.parent, actor.parent.parent.parent] == [sft.output_artifact, pt.output_artifact, base]
    ema = ModelArtifact.objects.get(name="tiny-aligned-ema")
    assert (ema.kind, ema.produced_by, ema.parent) == ("policy", ppo, sft.output_artifact)
    # PPO's own metrics reached the job row.
    assert {"reward_mean", "kl", "actor_loss", "critic_loss"} <= set(ppo.metrics), ppo.metrics
