"""No Docker engine runs here: the compose file is checked by reading."""
from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_compose_runs_every_queue_and_the_gpu_worker_on_nvidia() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "gpu-worker", "triton"} <= set(services)
    consumed: set[str] = set()
    for name in ("worker", "gpu-worker"):
        command = services[name]["command"]
        consumed |= set(command[command.index("-Q") + 1].split(","))
    assert consumed == {"default", "gpu", "eval"}
    assert services["gpu-worker"]["build"]["target"] == "gpu"
    assert services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    targets = {line.split()[-1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")}
    assert targets == {"app", "gpu"}


def test_container_web_command_is_the_one_make_run_starts() -> None:
    """Dockerfile and compose spell out web_argv's flags: the same server
    (uvicorn, body streamed to disk) with the same backlog everywhere."""
    import json
    import shlex

    from webapp.lib.webserver import web_argv

    expected = web_argv("0.0.0.0", 8000, python="python")
    cmd_line = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    assert json.loads(cmd_line.removeprefix("CMD ")) == expected
    web = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]["command"]
    last = web.split("&&")[-1].strip().rstrip('"')
    assert shlex.split(last) == expected
