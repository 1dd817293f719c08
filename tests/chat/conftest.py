"""Fixtures for the chat console: deployments (the tiny local BLOOM, an
OpenAI-compatible one on a closed port) and a logged-in websocket."""
from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from webapp.asgi import application
from webapp.deployments.models import Deployment
from webapp.lib.embedded_redis import free_port

ORIGIN = (b"origin", b"http://127.0.0.1")


def local_deployment(owner: Any, name: str, model_dir: Path, **fields: Any) -> Deployment:
    return Deployment.objects.create(owner=owner, name=name, kind="local", model_path=str(model_dir), **fields)


def down_deployment(owner: Any, name: str = "down") -> Deployment:
    """An OpenAI-compatible deployment whose server is not there."""
    return Deployment.objects.create(owner=owner, name=name, kind="openai", server_model="x",
                                     endpoint_url=f"http://127.0.0.1:{free_port()}/v1")


@sync_to_async
def make_user(username: str) -> tuple[Any, bytes]:
    """A user and the session cookie of a logged-in browser."""
    user = get_user_model().objects.create_user(username=username, password="pw-Secret-123")
    client = Client()
    client.force_login(user)
    return user, f"sessionid={client.cookies['sessionid'].value}".encode()


def _committed(frame: dict[str, Any]) -> bool:
    """After this frame a request always ends with `done`: a chat turn's
    `stored`, an arena battle's `start` (stored before it is sent)."""
    return frame["type"] == "stored" or (frame["type"] == "start" and "battle" in frame)


def split_turn(frames: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """A streamed chat turn's frames as (start, stored, deltas, done), after
    checking their order: `start` first, `done` last, `stored` in between
    (deltas may come before and after it)."""
    types = [f["type"] for f in frames]
    assert types[0] == "start" and types[-1] == "done" and types.count("stored") == 1, types
    assert types.index("stored") < len(types) - 1, types
    stored = frames[types.index("stored")]
    return frames[0], stored, [f for f in frames if f["type"] == "delta"], frames[-1]


class ChatSocket:
    """A connected /ws/chat/ with helpers to read one request's frames while
    frames of other requests (or none) interleave."""

    def __init__(self, communicator: WebsocketCommunicator) -> None:
        self.communicator = communicator
        self.backlog: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.communicator.send_json_to(frame)

    async def receive(self, request: Any = ..., timeout: float = 60) -> dict[str, Any]:
        """The next frame (of `request` when given)."""
        for index, frame in enumerate(self.backlog):
            if request is ... or frame.get("request") == request:
                return self.backlog.pop(index)
        while True:
            frame = await self.communicator.receive_json_from(timeout=timeout)
            if request is ... or frame.get("request") == request:
                return frame
            self.backlog.append(frame)

    async def frames(self, request: Any, *, dones: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        """`request`'s frames up to its last `done`, or up to its error when
        it is refused before it starts."""
        frames: list[dict[str, Any]] = []
        seen = 0
        while True:
            frame = await self.receive(request, timeout)
            frames.append(frame)
            if frame["type"] == "done":
                seen += 1
                if seen == dones:
                    return frames
            if frame["type"] == "error" and not any(_committed(f) for f in frames):
                return frames

    async def request(self, frame: dict[str, Any], *, dones: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        await self.send(frame)
        return await self.frames(frame["request"], dones=dones, timeout=timeout)

    async def close(self) -> None:
        await self.communicator.disconnect()


@pytest_asyncio.fixture
async def connect() -> AsyncIterator[Callable[[bytes], Any]]:
    opened: list[ChatSocket] = []

    async def open_socket(cookie: bytes) -> ChatSocket:
        communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN, (b"cookie", cookie)])
        connected, code = await communicator.connect(timeout=10)
        assert connected, code
        socket = ChatSocket(communicator)
        opened.append(socket)
        return socket

    yield open_socket
    for socket in opened:
        try:
            await socket.close()
        except Exception:  # noqa: BLE001 - already closed by the test
            pass


@pytest.fixture(autouse=True)
def _fresh_model_lookups() -> None:
    """The socket caches model lookups per (user id, name) for 2 s; ids come
    back after a test's tables are emptied, so each test starts with none."""
    from webapp.chat import consumers

    consumers._models.entries.clear()
