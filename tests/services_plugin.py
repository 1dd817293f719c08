"""Loaded with `-p` (pyproject) so it runs before pytest-django imports the
settings: the test session gets its own embedded Redis when REDIS_URL is
unset, and the offline switches that every test relies on."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from webapp.lib.embedded_redis import free_port, start_embedded_redis

ROOT = Path(__file__).resolve().parent.parent

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
# One OpenMP thread per process: a test runs pytest, a worker, a web server
# and a training process side by side on few cores, and tiny models gain
# nothing from threads; oversubscribed, a tiny training step got ~8x slower
# (bench note in tests/training_jobs/test_ppo.py). Children inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Files written by the server and worker processes that tests start (uploads,
# models) go under VAR_DIR (default var/), never into a developer's own
# MEDIA_ROOT; two test sessions with their own VAR_DIR (and database) do not
# share job folders.
_VAR = Path(os.environ.get("VAR_DIR") or ROOT / "var")
os.environ.setdefault("MEDIA_ROOT", str(_VAR / "test-media"))
os.environ.setdefault("ARTIFACTS_ROOT", str(_VAR / "test-artifacts"))

_redis: subprocess.Popen[bytes] | None = None
if "REDIS_URL" not in os.environ:
    _port = free_port()
    _redis = start_embedded_redis(port=_port, workdir=ROOT / "var" / "test-redis")
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{_port}/0"


def pytest_unconfigure() -> None:
    if _redis is not None and _redis.poll() is None:
        _redis.terminate()
        _redis.wait(timeout=10)
