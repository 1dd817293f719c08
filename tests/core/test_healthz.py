from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import forget_heartbeats
from tests.support import celery_worker, stop_process, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _health(client) -> tuple[int, dict]:
    response = client.get("/healthz")
    return response.status_code, response.json()


def test_healthz_is_green_with_a_worker_and_reports_a_stopped_one_as_down(client, tmp_path: Path) -> None:
    forget_heartbeats()  # a worker an earlier test killed would still look alive
    with celery_worker(log_dir=tmp_path) as (hostname, process):
        # This worker's own heartbeat (another test's worker may still look alive).
        wait_until(lambda: any(w["hostname"] == hostname for w in _health(client)[1]["checks"]["workers"].get("workers", [])),
                   timeout_s=60, what="the worker's first heartbeat")
        status, body = _health(client)
        assert body["status"] == "ok"
        assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]
        worker = next(w for w in body["checks"]["workers"]["workers"] if w["hostname"] == hostname)
        assert worker["queues"] == ["default", "eval", "gpu"]
        stop_process(process)
    status, body = _health(client)
    assert status == 503
    assert body["status"] == "degraded"
    assert body["checks"]["workers"]["ok"] is False
    assert "no Celery worker" in body["checks"]["workers"]["error"]
    assert body["checks"]["database"]["ok"] and body["checks"]["redis"]["ok"]


def test_healthz_needs_no_login(client) -> None:
    response = client.get("/healthz")
    assert response.status_code in (200, 503)
    assert response["Content-Type"] == "application/json"


def test_healthz_reports_redis_down(client, settings) -> None:
    from webapp.lib.redis import get_redis
    from webapp.lib.embedded_redis import free_port

    get_redis.cache_clear()
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    try:
        status, body = _health(client)
    finally:
        get_redis.cache_clear()
    assert status == 503
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["workers"]["ok"] is False
