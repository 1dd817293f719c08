"""How the web process is started: uvicorn serving webapp.asgi.

uvicorn rather than daphne because daphne holds a whole request body in
memory before the application sees it (django/daphne#483: a 420 MB model
upload took it to ~6 GB RSS), while uvicorn hands the body over in pieces
with back-pressure and Django spools it to disk past
FILE_UPLOAD_MAX_MEMORY_SIZE. Channels websockets run unchanged on it.
One argv for `make run`, the tests and the benchmarks; the Dockerfile and
docker-compose spell out the same flags.
"""
from __future__ import annotations

import sys

APPLICATION = "webapp.asgi:application"


def web_argv(host: str, port: int, *, backlog: int = 1024, access_log: bool = True, python: str | None = None) -> list[str]:
    argv = [
        python or sys.executable, "-m", "uvicorn", APPLICATION,
        "--host", host, "--port", str(port),
        # A burst of new /v1 connections beyond a short listen queue waits
        # for SYN retransmits (1 s, 3 s): bench/serve_load.py found it.
        "--backlog", str(backlog),
        # Channels' router has no lifespan handler; without this uvicorn
        # logs an error on every start.
        "--lifespan", "off",
        "--http", "httptools", "--loop", "uvloop", "--ws", "websockets",
    ]
    if not access_log:
        argv.append("--no-access-log")
    return argv
