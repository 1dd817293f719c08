"""Health checks behind /healthz: database, Redis, worker heartbeats."""
from __future__ import annotations

from typing import Any

from django.db import connection

from webapp.core.heartbeat import live_workers
from webapp.lib.redis import get_redis


def _check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _check_redis() -> dict[str, Any]:
    try:
        get_redis().ping()
        return {"ok": True}
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _check_workers(redis_ok: bool) -> dict[str, Any]:
    if not redis_ok:
        return {"ok": False, "error": "Redis is down: heartbeats cannot be read", "workers": []}
    try:
        workers = live_workers()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "workers": []}
    result: dict[str, Any] = {"ok": bool(workers), "workers": workers}
    if not workers:
        result["error"] = "no Celery worker has sent a heartbeat recently"
    return result


def system_health() -> dict[str, Any]:
    redis_check = _check_redis()
    checks = {
        "database": _check_database(),
        "redis": redis_check,
        "workers": _check_workers(redis_check["ok"]),
    }
    healthy = all(check["ok"] for check in checks.values())
    return {"status": "ok" if healthy else "degraded", "checks": checks}
