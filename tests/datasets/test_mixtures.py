from __future__ import annotations

import json
from collections import Counter

import pytest

from tests.datasets.conftest import jsonl_bytes, upload
from webapp.datasets.mixtures import mixture_path
from webapp.datasets.models import Mixture
from webapp.datasets.services import dataset_create_from_upload, dataset_process

pytestmark = pytest.mark.django_db


def _ready(owner, name: str, rows: int, kind: str = "instruction"):
    data = jsonl_bytes([{"input": f"{name}-{i}", "output": "ok"} for i in range(rows)])
    dataset = dataset_create_from_upload(owner=owner, name=name, kind=kind, upload=upload(f"{name}.jsonl", data))
    return dataset_process(dataset_id=dataset.pk)


def _sources(mixture: Mixture) -> Counter[str]:
    lines = mixture_path(mixture).read_text(encoding="utf-8").splitlines()
    return Counter(json.loads(line)["messages"][0]["content"].split("-")[0] for line in lines)


def _create(api_client, key: str, body: dict):
    return api_client.post("/api/mixtures/", body, format="json", HTTP_AUTHORIZATION=f"Bearer {key}")


def test_weights_and_counts_are_honoured_and_sampling_is_deterministic(api_client, alice, alice_key, media_root) -> None:
    domain, general = _ready(alice, "domain", 100), _ready(alice, "general", 300)
    body = {"name": "mix", "seed": 7, "components": [{"dataset": domain.pk, "weight": 2.5}, {"dataset": general.pk, "rows": 50}]}
    preview = api_client.post("/api/mixtures/preview/", body, format="json", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert preview.status_code == 200
    assert [p["rows"] for p in preview.json()["per_source"]] == [250, 50] and not Mixture.objects.exists()

    first = _create(api_client, alice_key, body)
    assert first.status_code == 201, first.content
    mixture = Mixture.objects.get(pk=first.json()["id"])
    assert mixture.rows == 300 and _sources(mixture) == {"domain": 250, "general": 50}
    content = Counter(mixture_path(mixture).read_text().splitlines())
    # 2.5× upsampling: every domain row twice, half of them a third time.
    assert sorted({n for line, n in content.items() if "domain" in line}) == [2, 3]

    second = Mixture.objects.get(pk=_create(api_client, alice_key, body).json()["id"])
    assert mixture_path(second).read_text() == mixture_path(mixture).read_text()
    other_seed = Mixture.objects.get(pk=_create(api_client, alice_key, {**body, "seed": 8}).json()["id"])
    assert mixture_path(other_seed).read_text() != mixture_path(mixture).read_text()


@pytest.mark.parametrize(
    ("component", "message"),
    [({"weight": 1, "rows": 5}, "give a weight or a row count, not both"), ({"weight": 0}, "weight must be positive"), ({}, "give a weight or a row count")],
)
def test_bad_components_are_400(api_client, alice, alice_key, media_root, component, message) -> None:
    dataset = _ready(alice, "d", 10)
    response = _create(api_client, alice_key, {"name": "m", "components": [{"dataset": dataset.pk, **component}]})
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert not Mixture.objects.exists()


def test_kinds_cannot_be_mixed(api_client, alice, alice_key, media_root) -> None:
    sft = _ready(alice, "sft", 5)
    corpus = dataset_process(dataset_id=dataset_create_from_upload(owner=alice, name="c", kind="corpus", upload=upload("c.txt", "文本".encode())).pk)
    response = _create(api_client, alice_key, {"name": "m", "components": [{"dataset": sft.pk, "weight": 1}, {"dataset": corpus.pk, "weight": 1}]})
    assert response.status_code == 400 and "one kind" in response.json()["error"]["message"]


def test_another_users_dataset_cannot_be_mixed_and_their_mixture_is_404(api_client, alice, bob, alice_key, media_root) -> None:
    theirs = _ready(bob, "bobs", 5)
    response = _create(api_client, alice_key, {"name": "m", "components": [{"dataset": theirs.pk, "weight": 1}]})
    assert response.status_code == 404 and not Mixture.objects.exists()
    from webapp.datasets.mixtures import ComponentSpec, mixture_create

    mixture = mixture_create(owner=bob, name="bm", seed=0, components=[ComponentSpec(dataset=theirs, weight=1.0)])
    assert api_client.get(f"/api/mixtures/{mixture.pk}/", HTTP_AUTHORIZATION=f"Bearer {alice_key}").status_code == 404
    assert api_client.get("/api/mixtures/", HTTP_AUTHORIZATION=f"Bearer {alice_key}").json()["results"] == []


def test_a_dataset_in_a_mixture_cannot_be_deleted(api_client, alice, alice_key, media_root) -> None:
    dataset = _ready(alice, "d", 5)
    assert _create(api_client, alice_key, {"name": "m", "components": [{"dataset": dataset.pk, "weight": 1}]}).status_code == 201
    response = api_client.delete(f"/api/datasets/{dataset.pk}/", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 409 and "mixture uses this dataset" in response.json()["error"]["message"]
