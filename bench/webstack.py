"""A throwaway web stack for the benchmarks: a fresh SQLite database
(migrated), Redis (REDIS_URL, or an embedded one), a setup snippet run in
`manage.py shell` (its last printed line is handed back, e.g. an API key)
and a web server process on a free port."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from webapp.lib.embedded_redis import free_port, port_is_free, start_embedded_redis  # noqa: E402
from webapp.lib.webserver import web_argv  # noqa: E402

CREATE_USER_AND_KEY = (
    "from django.contrib.auth import get_user_model;from webapp.accounts.services import api_key_create;"
    "u = get_user_model().objects.create_user('bench');k = api_key_create(owner=u, name='bench');"
    "k.api_key.max_concurrent_requests = 100000; k.api_key.save();"
)


@dataclass
class Stack:
    base: str  # http://127.0.0.1:PORT
    setup_output: str  # the setup snippet's last printed line
    pid: int  # the web server process
    log: Path


@contextmanager
def web_stack(
    workdir: Path, *, setup: str, server: Callable[[int], list[str]] | None = None, env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """`setup` runs after the migrations (CREATE_USER_AND_KEY defines `u`
    and `k`); `server(port)` is the server's argv (default: web_argv, as
    `make run` starts it); `env` is added to (and may override) the server's
    environment, DATABASE_URL and REDIS_URL included."""
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ, DATABASE_URL=f"sqlite:///{workdir}/db.sqlite3", VAR_DIR=str(workdir), DEBUG="0",
                    DJANGO_SETTINGS_MODULE="webapp.settings", PYTHONPATH=str(ROOT))
    full_env.update(env or {})  # e.g. another DATABASE_URL
    redis = None
    if "REDIS_URL" not in full_env:
        redis_port = free_port()
        redis = start_embedded_redis(port=redis_port, workdir=workdir / "redis")
        full_env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
    log_path = workdir / "web.log"
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=full_env, check=True)
        printed = subprocess.run([sys.executable, "manage.py", "shell", "-c", setup], cwd=ROOT, env=full_env, check=True,
                                 capture_output=True, text=True).stdout.strip().splitlines()
        port = free_port()
        argv = server(port) if server else web_argv("127.0.0.1", port)
        with log_path.open("wb") as log:
            web = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while port_is_free(port):
                if web.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the web server did not start; see {log_path}")
                time.sleep(0.1)
            yield Stack(f"http://127.0.0.1:{port}", printed[-1] if printed else "", web.pid, log_path)
        finally:
            web.terminate()
            try:
                web.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # uvicorn's graceful stop can wait on a consumer left in the
                # channel layer's receive after its socket closed (chat_ws saw it).
                print(f"the web server did not stop within 30 s of SIGTERM: killed (see {log_path})", file=sys.stderr)
                web.kill()
                web.wait()
    finally:
        if redis is not None:
            redis.terminate()
