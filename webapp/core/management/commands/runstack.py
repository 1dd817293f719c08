"""`make run`: migrate, build the demo workspace, start Redis (embedded when
REDIS_URL is unset), a Celery worker on every queue, Celery beat and the
ASGI web server (uvicorn, webapp/lib/webserver.py); Ctrl-C stops everything it started."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from webapp.core.demo import DEMO_USERNAME, demo_workspace_ensure
from webapp.lib.config import EMBEDDED_REDIS_PORT
from webapp.lib.embedded_redis import port_is_free, start_embedded_redis
from webapp.lib.webserver import web_argv

STOP_GRACE_S = 15


class Command(BaseCommand):
    help = "Serve the whole stack for development (what `make run` calls)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        if not port_is_free(port, host):
            raise CommandError(f"port {port} on {host} is already in use (is another `make run` up? set PORT=…)")
        logs = Path(settings.VAR_DIR) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        stopping = False

        def stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            if settings.REDIS_IS_EMBEDDED:
                self.stdout.write(f"starting embedded Redis on 127.0.0.1:{EMBEDDED_REDIS_PORT}")
                children.append(("redis", start_embedded_redis(port=EMBEDDED_REDIS_PORT, workdir=Path(settings.VAR_DIR) / "redis")))
            call_command("migrate", interactive=False, verbosity=0)
            self.stdout.write("building the demo workspace")
            workspace = demo_workspace_ensure(password=os.environ.get("DEMO_PASSWORD"))
            python = sys.executable
            launch = [
                ("worker", [python, "-m", "celery", "-A", "webapp", "worker", "-Q", "default,gpu,eval",
                            "-n", "workbench@%h", "-l", "info"]),
                ("beat", [python, "-m", "celery", "-A", "webapp", "beat", "-l", "info",
                          "-s", settings.CELERY_BEAT_SCHEDULE_FILENAME]),
                ("web", web_argv(host, port, python=python)),
            ]
            for name, argv in launch:
                log = open(logs / f"{name}.log", "ab")
                # Own session: the terminal's Ctrl-C reaches only us, and we
                # stop the children in order.
                children.append((name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)))
            self._wait_for_port(host, port, children)
            self._print_banner(host, port, workspace, logs)
            while not stopping:
                for name, process in children:
                    if process.poll() is not None:
                        self.stderr.write(f"{name} exited with code {process.returncode}; see {logs / (name + '.log')}")
                        stopping = True
                time.sleep(0.5)
        finally:
            self._stop(children)
        if any(p.returncode not in (0, -signal.SIGTERM, None) for name, p in children if name != "redis"):
            raise CommandError("a process of the stack failed; see the logs above")

    def _wait_for_port(self, host: str, port: int, children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, process in children:
                if process.poll() is not None:
                    raise CommandError(f"{name} exited during start-up (code {process.returncode}); see var/logs/{name}.log")
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise CommandError(f"the web server did not listen on {host}:{port} within 60 s; see var/logs/web.log")

    def _print_banner(self, host: str, port: int, workspace: Any, logs: Path) -> None:
        user = workspace.user
        password = user.password or "(unchanged; set DEMO_PASSWORD to reset it)"
        key = workspace.api_key_raw or (
            "(created on an earlier run and shown once; make another with "
            f"`.venv/bin/python manage.py create_api_key --user {DEMO_USERNAME}`)"
        )
        lines = [
            "",
            f"  Workbench is up:   http://{host}:{port}/",
            f"  Health:            http://{host}:{port}/healthz",
            f"  User:              {user.username}",
            f"  Password:          {password}",
            f"  API key:           {key}",
            f"  Demo model:        {workspace.model} ({workspace.model.num_parameters:,} parameters) in the registry",
            f"  OpenAI API:        http://{host}:{port}/v1 (models: {', '.join(workspace.deployments)})",
            f"  Logs:              {logs}/",
            "  Ctrl-C stops the web server, the worker, beat and the embedded Redis.",
            "",
        ]
        self.stdout.write("\n".join(lines))

    def _stop(self, children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
        # Reverse order: web first (stop taking requests), Redis last.
        for _, process in reversed(children):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for name, process in reversed(children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in {STOP_GRACE_S} s; killing it")
                process.kill()
                process.wait()
        self.stdout.write("stopped.")
