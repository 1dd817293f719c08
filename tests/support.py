"""Helpers for tests that start real processes (Celery worker, ASGI server)
against the test database and the test Redis."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    """A DATABASE_URL naming the database this test session is using."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = quote(db.get("USER") or "")
    password = f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = db.get("HOST") or "localhost"
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{auth}{host}{port}/{db['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=test_database_url(),
        REDIS_URL=settings.REDIS_URL,
        DJANGO_SETTINGS_MODULE="webapp.settings",
        PYTHONPATH=str(ROOT),
    )
    env.update(extra)
    return env


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.1) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def stop_process(process: subprocess.Popen[bytes], *, timeout_s: float = 20) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def celery_worker(*, queues: str = "default,gpu,eval", log_dir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `celery worker` process; yields (hostname, process)."""
    hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / f"{hostname}.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "webapp", "worker", "-Q", queues, "-n", hostname,
         "-P", "threads", "-c", "2", "-l", "info", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        yield hostname, process
    finally:
        stop_process(process)
        log.close()


@contextmanager
def web_server(*, log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """The production web server (uvicorn, as `make run` starts it) serving
    webapp.asgi on a free port, on the test database; yields its base URL."""
    from webapp.lib.embedded_redis import free_port, port_is_free
    from webapp.lib.webserver import web_argv

    port = free_port()
    log = open(log_path, "wb")
    process = subprocess.Popen(
        web_argv("127.0.0.1", port), cwd=ROOT, env=child_env(**(env or {})), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: not port_is_free(port) or process.poll() is not None, timeout_s=60, what="the web server to listen")
        if process.poll() is not None:
            raise AssertionError(f"the web server exited: {Path(log_path).read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process)
        log.close()


def padded_model_tarball(model_dir: Path, out: Path, padding_mb: int) -> Path:
    """A model import tarball (`model/…`) of about `padding_mb` MB more than
    the model: an incompressible padding file, so the size on the wire is the
    same whatever the compression (the large-upload test and
    bench/upload_memory.py)."""
    with tarfile.open(out, "w") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=f"model/{path.name}")
        info = tarfile.TarInfo("model/padding.bin")
        info.size = padding_mb * 1024 * 1024
        tar.addfile(info, io.BytesIO(os.urandom(1024 * 1024) * padding_mb))
    return out


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident memory (VmHWM) so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for process {pid}")


def ready_dataset(owner: Any, *, kind: str, rows: list[dict[str, Any]], name: str) -> Any:
    """A dataset uploaded as JSONL rows and processed to `ready` (jobs and
    evaluations tests)."""
    import json

    from django.core.files.uploadedfile import SimpleUploadedFile

    from webapp.datasets.models import Dataset
    from webapp.datasets.services import dataset_create_from_upload, dataset_process

    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    dataset = dataset_create_from_upload(owner=owner, name=name, kind=kind, upload=SimpleUploadedFile(f"{name}.jsonl", data))
    # In transactional tests a running worker may take the processing task
    # first; then wait for it.
    if dataset_process(dataset_id=dataset.pk) is None:
        wait_until(lambda: Dataset.objects.get(pk=dataset.pk).is_terminal, timeout_s=60, what="dataset processing")
    dataset.refresh_from_db()
    assert dataset.status == "ready", dataset.error
    return dataset
