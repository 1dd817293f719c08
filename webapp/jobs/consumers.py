"""The socket of one job's page, /ws/jobs/<id>/: the `job.<id>` group's
pushes (events.notify_job), for a user who may see the job."""
from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from webapp.jobs.events import job_group
from webapp.jobs.models import Job
from webapp.lib.ownership import visible_to


@database_sync_to_async
def _may_see(user: Any, job_id: int) -> bool:
    return visible_to(Job.objects.filter(pk=job_id), user).exists()


class JobConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # "log in", as the notifications socket
            return
        job_id = int(self.scope["url_route"]["kwargs"]["pk"])
        if not await _may_see(user, job_id):
            # Another user's job is absent, as on every page.
            await self.close(code=4404)
            return
        self.group = job_group(job_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def notify(self, event: dict[str, Any]) -> None:
        """Group message {"type": "notify", "payload": {...}} -> the browser."""
        await self.send_json(event["payload"])
