from __future__ import annotations

import os
import socket
from typing import Any

from celery import shared_task
from django.db import connection


@shared_task(name="core.ping")
def ping(token: str) -> dict[str, Any]:
    """Round trip through broker, worker and database: used by tests and by
    operators checking a new worker (`celery call core.ping`)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"token": token, "host": socket.gethostname(), "pid": os.getpid(), "database": connection.vendor}
