"""The only way the web app talks to `training_jobs`: its CLI, in a
subprocess (webapp never imports the library, which runs on GPU workers
without Django). See training_jobs/README.md for the contract."""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Any

from django.conf import settings

# Set by the web app from the job's base artifact and data; a user's config
# may not name them.
PATH_FIELDS = ("stage", "base_model", "reward_model", "train_data", "eval_data", "output_dir")
# Environment the training process must not see: it needs no database,
# broker or signing secret, and the launcher sets the rank variables.
_PRIVATE_ENV = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")
_RANK_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def cli_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "training_jobs", *args]


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _PRIVATE_ENV and name not in _RANK_ENV and not name.startswith(("DJANGO_", "CELERY_"))
    }
    path = [str(settings.BASE_DIR), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(PYTHONPATH=os.pathsep.join(dict.fromkeys(path)), PYTHONUNBUFFERED="1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.update(extra)
    return env


def _run(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cli_argv(*args), cwd=settings.BASE_DIR, env=cli_env(), input=stdin, capture_output=True, text=True,
        timeout=timeout, check=False,
    )


@functools.lru_cache(maxsize=1)
def config_schema() -> dict[str, Any]:
    """`python -m training_jobs schema`, once per process."""
    result = _run("schema")
    if result.returncode != 0:
        raise RuntimeError(f"python -m training_jobs schema failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout)


def stage_defaults(stage: str) -> dict[str, Any]:
    """Every settable field's default for `stage` (field defaults, then the
    stage's own from `x-stage-defaults`), without the path fields."""
    schema = config_schema()
    defaults = {name: spec["default"] for name, spec in schema.get("properties", {}).items() if "default" in spec}
    defaults.update(schema.get("x-stage-defaults", {}).get(stage, {}))
    return {name: value for name, value in defaults.items() if name not in PATH_FIELDS}


def validate_config(config: dict[str, Any], *, world_size: int, pending: tuple[str, ...] = ()) -> list[str]:
    """[] when `python -m training_jobs validate` accepts the config, else its
    `<field>: <problem>` lines. Fast (no torch): pydantic and a few stats.
    `pending` model fields are produced by an earlier pipeline stage."""
    flags = [arg for field in pending for arg in ("--pending", field)]
    result = _run("validate", "--config", "-", "--world-size", str(world_size), *flags, stdin=json.dumps(config))
    if result.returncode == 0:
        return []
    problems = [line.removeprefix("config error: ") for line in result.stderr.splitlines() if line.startswith("config error: ")]
    if result.returncode != 2 or not problems:
        raise RuntimeError(f"python -m training_jobs validate failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return problems
