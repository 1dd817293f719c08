from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from webapp.asgi import application
from webapp.core.consumers import user_group

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

ORIGIN = (b"origin", b"http://127.0.0.1")


@sync_to_async
def _session_cookie(username: str) -> tuple[int, bytes]:
    user = get_user_model().objects.create_user(username=username, password="pw-Secret-123")
    client = Client()
    client.force_login(user)
    return user.pk, f"sessionid={client.cookies['sessionid'].value}".encode()


async def test_authenticated_socket_receives_group_message_over_redis() -> None:
    user_id, cookie = await _session_cookie("dora")
    communicator = WebsocketCommunicator(application, "/ws/notifications/", headers=[ORIGIN, (b"cookie", cookie)])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    await layer.group_send(user_group(user_id), {"type": "notify", "payload": {"event": "job.progress", "step": 3}})
    assert await communicator.receive_json_from(timeout=10) == {"event": "job.progress", "step": 3}
    await communicator.disconnect()


async def test_other_users_group_messages_do_not_arrive() -> None:
    _, cookie = await _session_cookie("erin")
    other_id, _ = await _session_cookie("frank")
    communicator = WebsocketCommunicator(application, "/ws/notifications/", headers=[ORIGIN, (b"cookie", cookie)])
    assert (await communicator.connect(timeout=10))[0]
    await get_channel_layer().group_send(user_group(other_id), {"type": "notify", "payload": {"secret": True}})
    assert await communicator.receive_nothing(timeout=1)
    await communicator.disconnect()


async def test_anonymous_socket_is_refused() -> None:
    communicator = WebsocketCommunicator(application, "/ws/notifications/", headers=[ORIGIN])
    connected, code = await communicator.connect(timeout=10)
    assert not connected
    assert code == 4401
