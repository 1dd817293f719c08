from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Roots
from tests.support import ready_dataset
from webapp.datasets.models import Dataset
from webapp.registry.models import ModelArtifact
from webapp.registry.services import artifact_register

ITEMS = ["空气炸锅", "洗衣机", "冰箱", "耳机", "口红", "羽绒服", "扫地机器人", "牙刷"]

# A tiny SFT run: 2-layer BLOOM, 8 sequences of ≤ 64 tokens per step (~8 ms
# a step on one CPU core); tests pick max_steps.
TINY_SFT = {
    "max_length": 64, "global_batch_size": 8, "micro_batch_size": 4, "learning_rate": 3e-3, "warmup_ratio": 0.0,
    "precision": "fp32", "zero_stage": 0, "log_every": 5, "seed": 7,
}


def sft_rows(count: int = 48) -> list[dict[str, Any]]:
    """Alpaca rows whose answer is a fixed function of the item."""
    rng = random.Random(0)
    prices = {item: (i + 1) * 100 for i, item in enumerate(ITEMS)}
    rows = []
    for _ in range(count):
        item = rng.choice(ITEMS)
        rows.append({"instruction": f"{item}多少钱?", "input": "", "output": f"{item}的价格是{prices[item]}元。"})
    return rows


def corpus_rows(count: int = 24) -> list[dict[str, Any]]:
    return [{"text": f"品类结构:家用电器,{ITEMS[i % len(ITEMS)]}。售后服务:七天无理由退换。"} for i in range(count)]


@pytest.fixture
def make_base(roots: Roots, tiny_bloom: Path) -> Callable[..., ModelArtifact]:
    def make(owner, name: str = "tiny") -> ModelArtifact:
        folder = roots.artifacts / "models" / f"{owner.username}-{name}"
        shutil.copytree(tiny_bloom, folder)
        return artifact_register(owner=owner, name=name, architecture="BloomForCausalLM", kind="base", folder=folder)

    return make


@pytest.fixture
def make_dataset(roots: Roots) -> Callable[..., Dataset]:
    def make(owner, kind: str = "instruction", rows: list[dict[str, Any]] | None = None, name: str = "data") -> Dataset:
        rows = rows if rows is not None else (sft_rows() if kind == "instruction" else corpus_rows())
        return ready_dataset(owner, kind=kind, rows=rows, name=name)

    return make


@pytest.fixture
def base(alice, make_base) -> ModelArtifact:
    """alice's tiny base model in the registry."""
    return make_base(alice)


@pytest.fixture
def sft_data(alice, make_dataset) -> Dataset:
    """alice's ready instruction dataset (`sft_rows`)."""
    return make_dataset(alice, "instruction")


@pytest.fixture
def corpus(alice, make_dataset) -> Dataset:
    """alice's ready corpus dataset (`corpus_rows`)."""
    return make_dataset(alice, "corpus", name="corpus")


@pytest.fixture
def authed(api_client, alice):
    api_client.force_authenticate(user=alice)
    return api_client


@pytest.fixture
def web(client, alice):
    """The Django test client, logged in as alice (the pages)."""
    client.force_login(alice)
    return client


def api_error(response) -> dict[str, Any]:
    """The error object of a 400 from the REST API."""
    assert response.status_code == 400, response.content
    return response.json()["error"]


def create_body(base: ModelArtifact, data: Dataset, **overrides: Any) -> dict[str, Any]:
    """A POST /api/jobs/ body: a 4-step tiny SFT run unless overridden."""
    body: dict[str, Any] = {"stage": "sft", "base_artifact": base.pk, "dataset": data.pk, "config": dict(TINY_SFT, max_steps=4)}
    body.update(overrides)
    return body
