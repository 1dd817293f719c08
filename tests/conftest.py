from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from rest_framework.test import APIClient

from tests.triton_support import TritonServer, start_triton
from training_jobs.tiny import TinyModelSpec, make_tiny_model
from webapp.accounts.services import api_key_create
from webapp.core.heartbeat import KEY_PREFIX
from webapp.lib.redis import get_redis


def forget_heartbeats() -> None:
    """A killed worker leaves a heartbeat for up to its TTL (15 s)."""
    client = get_redis()
    for key in client.scan_iter(match=f"{KEY_PREFIX}*"):
        client.delete(key)


@pytest.fixture(scope="session", autouse=True)
def _forget_stale_heartbeats() -> None:
    forget_heartbeats()  # from an earlier run


@pytest.fixture
def make_user(db: None):
    def make(username: str, *, staff: bool = False, password: str = "pw-Secret-123") -> AbstractBaseUser:
        return get_user_model().objects.create_user(username=username, password=password, is_staff=staff)

    return make


@pytest.fixture
def alice(make_user) -> AbstractBaseUser:
    return make_user("alice")


@pytest.fixture
def bob(make_user) -> AbstractBaseUser:
    return make_user("bob")


@pytest.fixture
def alice_key(alice) -> str:
    return api_key_create(owner=alice, name="tests").raw


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def media_root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def artifacts_root(settings, tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "artifacts"
    root.mkdir()
    settings.ARTIFACTS_ROOT = root
    yield root


@dataclass
class Roots:
    media: Path
    artifacts: Path


@pytest.fixture
def roots(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Roots:
    """MEDIA_ROOT and ARTIFACTS_ROOT under tmp_path, for this process and the
    worker and server processes it starts (they inherit the environment)."""
    result = Roots(media=tmp_path / "media", artifacts=tmp_path / "artifacts")
    for path in (result.media, result.artifacts):
        path.mkdir()
    settings.MEDIA_ROOT, settings.ARTIFACTS_ROOT = result.media, result.artifacts
    monkeypatch.setenv("MEDIA_ROOT", str(result.media))
    monkeypatch.setenv("ARTIFACTS_ROOT", str(result.artifacts))
    return result


# Tiny models (BPE tokenizer + 2-layer model from config), built once per session.
@pytest.fixture(scope="session")
def tiny_bloom(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "bloom"
    make_tiny_model(TinyModelSpec(arch="bloom", seed=0), out)
    return out


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("models") / "llama"
    make_tiny_model(TinyModelSpec(arch="llama", seed=0), out)
    return out


@pytest.fixture(scope="session")
def triton_server(tiny_bloom: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A real Triton (pytriton's tritonserver, CPU) serving the tiny BLOOM
    under FasterTransformer and TensorRT-LLM names; see tests.triton_support."""
    log = tmp_path_factory.mktemp("triton") / "triton.log"
    with start_triton(tiny_bloom, log) as server:
        yield server
