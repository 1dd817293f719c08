"""Web-server memory during a large upload: daphne vs uvicorn, side by side.

Each server runs webapp.asgi on its own throwaway SQLite database. After a
small warm-up import (so transformers' tokenizer code is already loaded), one
model tarball of --mb megabytes (the tiny model plus an incompressible
padding file) is POSTed to /api/models/import/. Reported: the server
process's peak RSS (VmHWM) before and after, and the time the import took.

    .venv/bin/python bench/upload_memory.py --mb 400
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training_jobs.tiny import TinyModelSpec, make_tiny_model  # noqa: E402
from bench.webstack import CREATE_USER_AND_KEY, web_stack  # noqa: E402
from tests.support import padded_model_tarball, peak_rss_mb  # noqa: E402
from webapp.lib.webserver import web_argv  # noqa: E402

SERVERS = {
    "daphne": lambda port: [sys.executable, "-m", "daphne", "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=1024",
                            "webapp.asgi:application"],
    "uvicorn": lambda port: web_argv("127.0.0.1", port),
}


@contextmanager
def server(name: str, workdir: Path) -> Iterator[tuple[str, str, int]]:
    env = {"ARTIFACTS_ROOT": str(workdir / "artifacts"), "MEDIA_ROOT": str(workdir / "media"), "REGISTRY_MAX_IMPORT_MB": "4096"}
    with web_stack(workdir, setup=CREATE_USER_AND_KEY + "print(k.raw)", server=SERVERS[name], env=env) as stack:
        yield stack.base, stack.setup_output, stack.pid


def upload(base: str, key: str, path: Path, name: str) -> tuple[int, float]:
    started = time.monotonic()
    with path.open("rb") as handle:
        response = httpx.post(f"{base}/api/models/import/", headers={"Authorization": f"Bearer {key}"},
                              data={"name": name}, files={"file": (path.name, handle, "application/x-tar")}, timeout=600)
    if response.status_code != 201:
        raise RuntimeError(f"import answered {response.status_code}: {response.text[:300]}")
    return response.status_code, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=400, help="size of the uploaded tarball's padding")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="upload-memory-") as tmp:
        work = Path(tmp)
        model = work / "tiny"
        make_tiny_model(TinyModelSpec(arch="bloom", layers=2, hidden=64, heads=4), model)
        small = padded_model_tarball(model, work / "small.tar", 1)
        big = padded_model_tarball(model, work / "big.tar", args.mb)
        rows = []
        for name in SERVERS:
            with server(name, work / name) as (base, key, pid):
                upload(base, key, small, "warmup")
                before = peak_rss_mb(pid)
                _, seconds = upload(base, key, big, "big")
                after = peak_rss_mb(pid)
            rows.append((name, before, after, seconds))
    print(f"\nupload of a {args.mb} MB model tarball to /api/models/import/ (server peak RSS, VmHWM)")
    print(f"{'server':8} {'before MB':>10} {'after MB':>10} {'growth MB':>10} {'import s':>9}")
    for name, before, after, seconds in rows:
        print(f"{name:8} {before:10.0f} {after:10.0f} {after - before:10.0f} {seconds:9.1f}")
    growth = {name: after - before for name, before, after, _ in rows}
    print(f"growth ratio uvicorn/daphne: {growth['uvicorn'] / max(growth['daphne'], 1):.3f} (body {args.mb} MB)")


if __name__ == "__main__":
    main()
