"""Per-user notification socket: later features (job progress, dataset
processing) broadcast to the group `user.<id>` and the page updates live."""
from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


class NotificationsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            # 4401: an application close code that tells the page "log in".
            await self.close(code=4401)
            return
        group = await self.group_for(user)
        if group is None:
            # 4404: the thing to watch is absent for this user (as a page's 404).
            await self.close(code=4404)
            return
        self.group = group
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def group_for(self, user: Any) -> str | None:
        """The group this socket joins; None refuses it. Subclasses watch
        other groups (a job's page) with the same protocol."""
        return user_group(user.pk)

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def notify(self, event: dict[str, Any]) -> None:
        """Group message {"type": "notify", "payload": {...}} -> the browser."""
        await self.send_json(event["payload"])
