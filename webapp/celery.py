"""Celery app: queues `default`, `gpu` (training) and `eval`, configured from
the CELERY_* names in webapp.settings."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")

app = Celery("webapp")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Workers announce themselves in Redis so /healthz can tell a live worker from
# a dead one without a broadcast round trip (see webapp.core.heartbeat).
from webapp.core.heartbeat import HeartbeatStep  # noqa: E402

app.steps["worker"].add(HeartbeatStep)
