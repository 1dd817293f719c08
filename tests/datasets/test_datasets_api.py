from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.datasets.conftest import jsonl_bytes, upload
from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_create_from_upload, dataset_process
from webapp.registry.services import artifact_register

pytestmark = pytest.mark.django_db

INSTRUCTIONS = [{"instruction": f"问题{i}", "input": "", "output": f"回答{i}" * (i % 7 + 1)} for i in range(2500)]


def _post(api_client, key: str, filename: str, data: bytes, **fields):
    return api_client.post(
        "/api/datasets/", {"file": upload(filename, data), **fields}, format="multipart", HTTP_AUTHORIZATION=f"Bearer {key}"
    )


def test_upload_process_and_read_rows(api_client, alice, alice_key, media_root, artifacts_root, tiny_model_dir) -> None:
    shutil.copytree(tiny_model_dir, artifacts_root / "tiny")
    model = artifact_register(owner=alice, name="tiny", architecture="BloomForCausalLM", kind="base", folder="tiny")
    rows = INSTRUCTIONS + [{"instruction": "坏行"}]
    response = _post(api_client, alice_key, "ecom.jsonl", jsonl_bytes(rows), kind="instruction", name="ecom", stats_model=model.pk)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["status"], body["name"], body["version"], body["original_name"]) == ("pending", "ecom", 1, "ecom.jsonl")

    dataset = dataset_process(dataset_id=body["id"])
    assert dataset.status == "ready" and dataset.format == "alpaca"
    assert (dataset.rows, dataset.source_rows, dataset.error_count) == (2500, 2501, 1)
    assert dataset.errors == [{"line": 2501, "reason": "missing field(s) output of format alpaca"}]
    stats = dataset.stats
    assert stats["rows"] == 2500 and stats["duplicates"] == 0 and len(stats["sample"]) == 20
    assert stats["token_length"]["max"] >= stats["token_length"]["p50"] > 0
    assert sum(b["count"] for b in stats["token_length"]["histogram"]) == 2500
    assert stats["field_coverage"]["instruction"] == 1.0 and "input" not in stats["field_coverage"]  # always empty

    page = api_client.get(f"/api/datasets/{dataset.pk}/rows?offset=1995&limit=10", HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert page["total"] == 2500
    assert [r["messages"][0]["content"] for r in page["rows"]] == [f"问题{i}" for i in range(1995, 2005)]
    errors = api_client.get(f"/api/datasets/{dataset.pk}/errors", HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()
    assert errors["error_count"] == 1

    again = dataset_process(dataset_id=dataset.pk)  # a second delivery of the task
    assert again is None


def test_preview_detects_and_stores_nothing(api_client, alice_key, media_root) -> None:
    response = api_client.post(
        "/api/datasets/preview/", {"file": upload("p.jsonl", jsonl_bytes([{"prompt": "Q", "chosen": "a", "reject": "b"}])), "kind": "preference"},
        format="multipart", HTTP_AUTHORIZATION=f"Bearer {alice_key}",
    )
    assert response.status_code == 200
    assert response.json()["format"] == "prompt_chosen_reject"
    assert response.json()["rows"] == [{"prompt": "Q", "chosen": "a", "rejected": "b"}]
    assert not Dataset.objects.exists() and not any(media_root.iterdir())


def test_eval_classes_are_normalised_and_mapped(alice, media_root) -> None:
    rows = [{"question": "1+1?", "class": "math", "std_answer": "2"}, {"question": "写个函数", "class": "Code", "std_answer": ""},
            {"question": "北京在哪", "class": "closed\u00a0qa", "std_answer": "中国"}]
    data = json.dumps(rows, ensure_ascii=False).encode()  # a JSON array named .json
    dataset = dataset_create_from_upload(owner=alice, name="belle", kind="eval", upload=upload("belle_eval.json", data))
    dataset = dataset_process(dataset_id=dataset.pk)
    assert dataset.status == "ready", dataset.error
    assert dataset.stats["categories"] == {"math": 1, "coding": 1, "general": 1}
    canonical = [json.loads(l) for l in (media_root / dataset.folder / "canonical.jsonl").read_text().splitlines()]
    assert canonical[2] == {"id": None, "question": "北京在哪", "category": "general", "reference": "中国", "class": "closed qa"}


def test_new_upload_with_the_same_name_is_a_new_version(alice, media_root) -> None:
    first = dataset_create_from_upload(owner=alice, name="c", kind="corpus", upload=upload("a.txt", "一\n\n二".encode()))
    second = dataset_create_from_upload(owner=alice, name="c", kind="corpus", upload=upload("a.txt", "三".encode()))
    assert (first.version, second.version) == (1, 2) and first.folder != second.folder


def test_another_users_dataset_is_404_everywhere(api_client, client, alice, bob, alice_key, media_root) -> None:
    theirs = dataset_create_from_upload(owner=bob, name="secret", kind="corpus", upload=upload("s.txt", "机密".encode()))
    dataset_process(dataset_id=theirs.pk)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {alice_key}"}
    for url in (f"/api/datasets/{theirs.pk}/", f"/api/datasets/{theirs.pk}/rows", f"/api/datasets/{theirs.pk}/errors"):
        assert api_client.get(url, **auth).status_code == 404, url
    assert api_client.delete(f"/api/datasets/{theirs.pk}/", **auth).status_code == 404
    assert Dataset.objects.filter(pk=theirs.pk).exists()
    assert api_client.get("/api/datasets/", **auth).json()["results"] == []
    client.force_login(alice)
    assert client.get(f"/datasets/{theirs.pk}/").status_code == 404


def test_delete_removes_row_and_files(api_client, alice, alice_key, media_root, django_capture_on_commit_callbacks) -> None:
    dataset = dataset_create_from_upload(owner=alice, name="c", kind="corpus", upload=upload("a.txt", "一".encode()))
    folder = media_root / dataset.folder
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.delete(f"/api/datasets/{dataset.pk}/", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 204 and not Dataset.objects.exists() and not folder.exists()


def test_pages_list_detail_and_upload(client, alice, media_root) -> None:
    dataset = dataset_create_from_upload(owner=alice, name="corpus", kind="corpus", upload=upload("a.txt", "一\n\n二\n\n二".encode()))
    client.force_login(alice)
    assert "Upload a dataset" in client.get("/datasets/").content.decode()
    pending = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "Processing" in pending
    dataset_process(dataset_id=dataset.pk)
    ready = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert "exact duplicates" in ready and "Length histogram" in ready
    assert client.get("/datasets/upload/").status_code == 200


def test_category_map_from_the_upload_form(api_client, alice_key, media_root) -> None:
    data = jsonl_bytes([{"question": "写诗", "class": "Generation", "std_answer": ""}, {"question": "1+1", "class": "math", "std_answer": "2"}])
    response = _post(api_client, alice_key, "e.jsonl", data, kind="eval", category_map='{"generation": "writing"}')
    assert response.status_code == 201, response.content
    dataset = dataset_process(dataset_id=response.json()["id"])
    assert dataset.stats["categories"] == {"writing": 1, "general": 1}  # math unmapped here → general
    bad = _post(api_client, alice_key, "e.jsonl", data, kind="eval", category_map='["not", "a", "map"]')
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "category_map"


def test_a_dataset_whose_worker_died_is_queued_again(alice, media_root, django_capture_on_commit_callbacks) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from webapp.datasets.services import dataset_requeue_stale
    from webapp.lib.redis import get_redis

    dead = dataset_create_from_upload(owner=alice, name="dead", kind="corpus", upload=upload("a.txt", "一\n\n二".encode()))
    alive = dataset_create_from_upload(owner=alice, name="alive", kind="corpus", upload=upload("b.txt", "三".encode()))
    Dataset.objects.filter(pk=dead.pk).update(status="processing", heartbeat_at=timezone.now() - timedelta(minutes=30))
    Dataset.objects.filter(pk=alive.pk).update(status="processing", heartbeat_at=timezone.now())
    queued_before = get_redis().llen("default")  # kombu's Redis transport: one list per queue
    with django_capture_on_commit_callbacks(execute=True):
        assert dataset_requeue_stale(silent_for=timedelta(minutes=10)) == [dead.pk]
    assert get_redis().llen("default") == queued_before + 1  # sent through the real broker
    assert Dataset.objects.get(pk=alive.pk).status == "processing"
    assert dataset_process(dataset_id=dead.pk).status == "ready"  # the re-queued task does the work
