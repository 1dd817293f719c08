"""The socket of one job's page, /ws/jobs/<id>/: the `job.<id>` group's
pushes (events.notify_job), for a user who may see the job."""
from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from webapp.core.consumers import NotificationsConsumer
from webapp.jobs.events import job_group
from webapp.jobs.models import Job
from webapp.lib.ownership import visible_to


@database_sync_to_async
def _may_see(user: Any, job_id: int) -> bool:
    return visible_to(Job.objects.filter(pk=job_id), user).exists()


class JobConsumer(NotificationsConsumer):
    async def group_for(self, user: Any) -> str | None:
        job_id = int(self.scope["url_route"]["kwargs"]["pk"])
        # Another user's job is absent, as on every page.
        return job_group(job_id) if await _may_see(user, job_id) else None
