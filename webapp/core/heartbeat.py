"""Worker heartbeats in Redis.

Each Celery worker writes `workbench:worker:<hostname>` every
WORKER_HEARTBEAT_INTERVAL_S seconds with a time-to-live of
WORKER_HEARTBEAT_TTL_S, and deletes it on a clean shutdown. A worker that dies
without shutting down disappears when the key expires. Reading the keys is
cheap, unlike `celery inspect ping`, which waits for a broadcast timeout.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from celery import bootsteps

KEY_PREFIX = "workbench:worker:"
log = logging.getLogger(__name__)


def heartbeat_key(hostname: str) -> str:
    return f"{KEY_PREFIX}{hostname}"


class HeartbeatStep(bootsteps.StartStopStep):
    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.tref: Any = None

    def start(self, worker: Any) -> None:
        from django.conf import settings

        self.beat(worker)
        self.tref = worker.timer.call_repeatedly(settings.WORKER_HEARTBEAT_INTERVAL_S, self.beat, (worker,), priority=10)

    def stop(self, worker: Any) -> None:
        from webapp.lib.redis import get_redis

        if self.tref is not None:
            self.tref.cancel()
            self.tref = None
        try:
            get_redis().delete(heartbeat_key(worker.hostname))
        except Exception:  # shutting down: the TTL cleans up if Redis is gone
            log.warning("could not remove heartbeat of %s", worker.hostname)

    def beat(self, worker: Any) -> None:
        from django.conf import settings

        from webapp.lib.redis import get_redis

        queues = sorted(q.name for q in worker.app.amqp.queues.consume_from.values()) if worker.app.amqp.queues.consume_from else []
        payload = {"hostname": worker.hostname, "pid": os.getpid(), "queues": queues, "ts": time.time()}
        try:
            get_redis().set(heartbeat_key(worker.hostname), json.dumps(payload), ex=settings.WORKER_HEARTBEAT_TTL_S)
        except Exception:  # a Redis blip must not kill the worker; health shows it
            log.warning("heartbeat of %s not written", worker.hostname, exc_info=True)


def live_workers() -> list[dict[str, Any]]:
    """Workers whose heartbeat has not expired, newest first."""
    from webapp.lib.redis import get_redis

    client = get_redis()
    keys = list(client.scan_iter(match=f"{KEY_PREFIX}*", count=100))
    if not keys:
        return []
    now = time.time()
    workers = []
    for raw in client.mget(keys):
        if raw is None:  # expired between SCAN and MGET
            continue
        info = json.loads(raw)
        info["age_s"] = round(now - info["ts"], 1)
        workers.append(info)
    return sorted(workers, key=lambda w: w["age_s"])
