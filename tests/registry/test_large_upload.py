"""A large model upload through the real web server (uvicorn, as `make run`
starts it): the body reaches Django in pieces and is spooled to disk, so the
server's memory does not grow with the upload (daphne held whole bodies in
memory: +3.9 GB for a 300 MB tarball, bench/upload_memory.py)."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from django.contrib.auth import get_user_model

from tests.support import padded_model_tarball, peak_rss_mb, web_server
from webapp.accounts.services import api_key_create
from webapp.registry.models import ModelArtifact

PADDING_MB = 96


def _server_pid(log_dir: Path) -> int:
    # web_server runs `python -m uvicorn …` directly: the listening process.
    import psutil

    for process in psutil.process_iter(["cmdline", "environ"]):
        cmdline = process.info["cmdline"] or []
        if "uvicorn" in cmdline and str(log_dir) in (process.info["environ"] or {}).get("ARTIFACTS_ROOT", ""):
            return process.pid
    raise AssertionError("no uvicorn process found")


@pytest.mark.django_db(transaction=True)
def test_a_large_upload_is_spooled_not_held_in_memory(tiny_bloom: Path, tmp_path: Path) -> None:
    owner = get_user_model().objects.create_user("uploader")
    key = api_key_create(owner=owner, name="upload").raw
    artifacts = tmp_path / "artifacts"
    small = padded_model_tarball(tiny_bloom, tmp_path / "small.tar", 1)
    big = padded_model_tarball(tiny_bloom, tmp_path / "big.tar", PADDING_MB)
    env = {"ARTIFACTS_ROOT": str(artifacts), "MEDIA_ROOT": str(tmp_path / "media"), "REGISTRY_MAX_IMPORT_MB": "512"}
    with web_server(log_path=tmp_path / "web.log", env=env) as base:
        pid = _server_pid(artifacts)
        headers = {"Authorization": f"Bearer {key}"}

        def upload(path: Path, name: str) -> httpx.Response:
            with path.open("rb") as handle:
                return httpx.post(f"{base}/api/models/import/", headers=headers, data={"name": name},
                                  files={"file": (path.name, handle, "application/x-tar")}, timeout=120)

        assert upload(small, "warm-up").status_code == 201  # loads the tokenizer code once
        before = peak_rss_mb(pid)
        response = upload(big, "big")
        growth = peak_rss_mb(pid) - before
    assert response.status_code == 201, response.text
    artifact = ModelArtifact.objects.get(owner=owner, name="big")
    assert (artifacts / artifact.folder / "padding.bin").stat().st_size == PADDING_MB * 1024 * 1024
    # Held in memory, the body alone would add PADDING_MB (daphne: ~13× that).
    assert growth < PADDING_MB / 3, f"the server grew by {growth:.0f} MB during a {PADDING_MB} MB upload"
