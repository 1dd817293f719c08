"""REST /api/jobs/ without a worker: creation checks, scoping, cancel and
resume of queued jobs, events paging, the log."""
from __future__ import annotations

import pytest

from tests.jobs.conftest import TINY_SFT, api_error, create_body
from webapp.jobs.layout import job_config_path, job_log_path
from webapp.jobs.models import Job, JobEvent

pytestmark = pytest.mark.django_db


def test_create_stores_the_merged_config_and_queues(authed, alice, base, sft_data) -> None:
    response = authed.post(
        "/api/jobs/", create_body(base, sft_data, config={"max_steps": 3, "learning_rate": 1e-3}), format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["stage"], body["attempt"], body["owner"]) == ("queued", "sft", 0, "alice")
    assert body["resources"] == {"queue": "gpu", "num_gpus": 0, "hostfile": ""}
    job = Job.objects.get(pk=body["id"])
    # The SFT defaults of training_jobs (from its schema) under the overrides;
    # the paths are the runner's to fill in.
    assert job.config["learning_rate"] == 1e-3 and job.config["max_steps"] == 3
    assert job.config["max_length"] == 1024 and job.config["global_batch_size"] == 64 and job.config["epochs"] == 2
    assert job.config["prompt_template"] == "User: {prompt}\n\nBot: "
    assert not {"stage", "base_model", "train_data", "output_dir"} & set(job.config)
    assert list(job.events.values_list("seq", "kind")) == [(1, "status")]


@pytest.mark.parametrize(
    ("config", "param", "message"),
    [
        ({"learning_rate": 5}, "config.learning_rate", "learning_rate: Input should be less than 1"),
        ({"warmup": 0.1}, "config.warmup", "warmup: unknown field"),
        ({"lora": {"r": 0}}, "config.lora.r", "lora.r: Input should be greater than or equal to 1"),
        ({"global_batch_size": 10, "micro_batch_size": 4}, "config", "must be a multiple of micro_batch_size"),
        ({"output_dir": "/tmp/x"}, "config.output_dir", "output_dir is set by the job"),
        ({"train_data": "/etc/passwd"}, "config.train_data", "train_data is set from dataset"),
    ],
)
def test_a_bad_config_is_a_400_naming_the_field(authed, base, sft_data, config, param, message) -> None:
    error = api_error(authed.post("/api/jobs/", create_body(base, sft_data, config=config), format="json"))
    assert error["param"] == param and message in error["message"]
    assert not Job.objects.exists()


def test_data_must_fit_the_stage(authed, alice, base, sft_data, corpus, make_dataset) -> None:
    error = api_error(authed.post("/api/jobs/", create_body(base, corpus), format="json"))
    assert error["param"] == "dataset" and "stage sft trains on instruction data" in error["message"]
    error = api_error(authed.post("/api/jobs/", create_body(base, sft_data, stage="pt"), format="json"))
    assert error["param"] == "dataset" and "corpus" in error["message"]
    error = api_error(authed.post("/api/jobs/", create_body(base, sft_data, eval_dataset=corpus.pk), format="json"))
    assert error["param"] == "eval_dataset"
    # PPO reads prompts, or the prompts of preference rows; it needs a reward model.
    preference = make_dataset(alice, "preference", rows=[{"prompt": "Q", "chosen": "a", "rejected": "b"}], name="pref")
    error = api_error(authed.post("/api/jobs/", create_body(base, corpus, stage="ppo", config={}), format="json"))
    assert error["param"] == "dataset" and "prompts or preference" in error["message"]
    error = api_error(authed.post("/api/jobs/", create_body(base, preference, stage="ppo", config={}), format="json"))
    assert error["param"] == "reward_artifact" and "needs a reward model" in error["message"]
    body = {**create_body(base, preference, stage="ppo", config={}), "reward_artifact": base.pk}
    error = api_error(authed.post("/api/jobs/", body, format="json"))
    assert error["param"] == "reward_artifact" and "not a reward model" in error["message"]
    body = {**create_body(base, sft_data), "reward_artifact": base.pk}
    error = api_error(authed.post("/api/jobs/", body, format="json"))
    assert error["param"] == "reward_artifact" and "only stage ppo" in error["message"]
    assert not Job.objects.exists()


def test_resources_are_checked(authed, base, sft_data) -> None:
    error = api_error(authed.post("/api/jobs/", create_body(base, sft_data, resources={"queue": "nope"}), format="json"))
    assert error["param"] == "resources.queue"
    error = api_error(authed.post("/api/jobs/", create_body(base, sft_data, resources={"hostfile": "node1 gpus=8"}), format="json"))
    assert error["param"] == "resources.hostfile"
    # 8 sequences per step do not split into micro-batches of 4 over 3 ranks.
    error = api_error(authed.post("/api/jobs/", create_body(base, sft_data, resources={"num_gpus": 3}), format="json"))
    assert error["param"] == "config.global_batch_size" and "4 × 3" in error["message"]
    hostfile = "# two nodes\nnode1 slots=8\nnode2 slots=8\n"
    ok = authed.post("/api/jobs/", create_body(base, sft_data, resources={"num_gpus": 1, "hostfile": hostfile}), format="json")
    assert ok.status_code == 201, ok.content  # 2 ranks: --num_gpus caps each node's slots
    assert ok.json()["resources"] == {"queue": "gpu", "num_gpus": 1, "hostfile": hostfile}


def test_other_users_objects_are_invisible(api_client, authed, alice, bob, base, sft_data, make_base, make_dataset) -> None:
    bobs_base = make_base(bob, "bobs")
    bobs_data = make_dataset(bob, name="bobs")
    error = api_error(authed.post("/api/jobs/", create_body(bobs_base, sft_data), format="json"))
    assert (error["param"], error["message"]) == ("base_artifact", f"no model with id {bobs_base.pk}")
    error = api_error(authed.post("/api/jobs/", create_body(base, bobs_data), format="json"))
    assert (error["param"], error["message"]) == ("dataset", f"no dataset with id {bobs_data.pk}")

    job_id = authed.post("/api/jobs/", create_body(base, sft_data), format="json").json()["id"]
    api_client.force_authenticate(user=bob)
    for method, url in [
        ("get", f"/api/jobs/{job_id}/"), ("post", f"/api/jobs/{job_id}/cancel"), ("post", f"/api/jobs/{job_id}/resume"),
        ("get", f"/api/jobs/{job_id}/events"), ("get", f"/api/jobs/{job_id}/log"),
    ]:
        response = getattr(api_client, method)(url)
        assert response.status_code == 404, (url, response.content)
    assert api_client.get("/api/jobs/").json()["results"] == []
    assert Job.objects.get(pk=job_id).status == "queued"  # bob's cancel changed nothing


def test_list_filters_and_unauthenticated(api_client, authed, base, sft_data, corpus) -> None:
    first = authed.post("/api/jobs/", create_body(base, sft_data), format="json").json()["id"]
    second = authed.post("/api/jobs/", create_body(base, corpus, stage="pt", config=dict(TINY_SFT, max_steps=2)), format="json").json()["id"]
    Job.objects.filter(pk=first).update(status="failed")
    ids = lambda query: [j["id"] for j in authed.get(f"/api/jobs/{query}").json()["results"]]  # noqa: E731
    assert ids("") == [second, first]
    assert ids("?stage=pt") == [second] and ids("?status=failed") == [first] and ids("?status=failed&stage=pt") == []
    assert api_error(authed.get("/api/jobs/?status=done"))["param"] == "status"
    api_client.force_authenticate(user=None)
    assert api_client.get("/api/jobs/").status_code == 401


def test_cancel_a_queued_job_then_resume_it(authed, base, sft_data) -> None:
    job_id = authed.post("/api/jobs/", create_body(base, sft_data), format="json").json()["id"]
    assert authed.post(f"/api/jobs/{job_id}/resume").status_code == 409  # queued: nothing to resume
    cancelled = authed.post(f"/api/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert authed.post(f"/api/jobs/{job_id}/cancel").json()["status"] == "cancelled"  # idempotent
    resumed = authed.post(f"/api/jobs/{job_id}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    Job.objects.filter(pk=job_id).update(status="succeeded")
    conflict = authed.post(f"/api/jobs/{job_id}/cancel")
    assert conflict.status_code == 409 and "already succeeded" in conflict.json()["error"]["message"]
    statuses = [e.payload["status"] for e in JobEvent.objects.filter(job_id=job_id, kind="status")]
    assert statuses == ["queued", "cancelled", "queued"]


def test_events_page_with_after_and_limit(authed, base, sft_data) -> None:
    job_id = authed.post("/api/jobs/", create_body(base, sft_data), format="json").json()["id"]
    job = Job.objects.get(pk=job_id)
    JobEvent.objects.bulk_create(
        JobEvent(job=job, seq=seq, attempt=1, kind="metrics", payload={"event": "metrics", "step": seq}) for seq in range(2, 12)
    )
    page = authed.get(f"/api/jobs/{job_id}/events?after=0&limit=4").json()
    assert [e["seq"] for e in page["data"]] == [1, 2, 3, 4] and page["has_more"] and page["last_seq"] == 4
    page = authed.get(f"/api/jobs/{job_id}/events?after=8&limit=100").json()
    assert [e["data"]["step"] for e in page["data"]] == [9, 10, 11] and not page["has_more"]
    assert authed.get(f"/api/jobs/{job_id}/events?after=11").json() == {"data": [], "has_more": False, "last_seq": 11}
    assert api_error(authed.get(f"/api/jobs/{job_id}/events?after=x"))["param"] == "after"


def test_log_tail_and_full(authed, base, sft_data) -> None:
    job_id = authed.post("/api/jobs/", create_body(base, sft_data), format="json").json()["id"]
    assert authed.get(f"/api/jobs/{job_id}/log").content == b""  # nothing ran yet
    path = job_log_path(job_id)
    path.parent.mkdir(parents=True)
    path.write_text("".join(f"line {i}\n" for i in range(500)), encoding="utf-8")
    tail = authed.get(f"/api/jobs/{job_id}/log")
    assert tail["Content-Type"].startswith("text/plain")
    assert tail.content.decode().splitlines() == [f"line {i}" for i in range(300, 500)]
    assert authed.get(f"/api/jobs/{job_id}/log?lines=2").content == b"line 498\nline 499\n"
    full = authed.get(f"/api/jobs/{job_id}/log?full=1")
    assert b"".join(full.streaming_content).decode().count("\n") == 500


def test_a_mixture_snapshot_is_training_data(authed, alice, base, sft_data, make_dataset) -> None:
    from webapp.datasets.mixtures import ComponentSpec, mixture_create, mixture_path
    from webapp.jobs.runner import launch_preview

    mixture = mixture_create(owner=alice, name="mix", seed=0, components=[ComponentSpec(dataset=sft_data, weight=2.0)])
    error = api_error(authed.post("/api/jobs/", create_body(base, sft_data, mixture=mixture.pk), format="json"))
    assert error["param"] == "dataset" and "one of them" in error["message"]
    response = authed.post("/api/jobs/", create_body(base, sft_data, dataset=None, mixture=mixture.pk), format="json")
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    preview = launch_preview(job)
    assert preview["config"]["train_data"] == str(mixture_path(mixture))
    assert preview["config"]["base_model"].endswith(base.folder)
    assert preview["argv"][-3:] == ["run", "--config", str(job_config_path(job.pk))]
    corpus_mix = mixture_create(
        owner=alice, name="corpus", seed=0, components=[ComponentSpec(dataset=make_dataset(alice, "corpus", name="c"), weight=1.0)]
    )
    error = api_error(authed.post("/api/jobs/", create_body(base, sft_data, dataset=None, mixture=corpus_mix.pk), format="json"))
    assert error["param"] == "mixture" and "corpus" in error["message"]
