"""The Django project. Importing it loads the Celery app so that
`@shared_task` binds to it in every process (web, worker, beat)."""
from __future__ import annotations

from webapp.celery import app as celery_app

__all__ = ["celery_app"]
