"""Backends kept alive per deployment inside one serving process: a local
model loads once and its batching thread is shared by every request; an
edited deployment (different config) gets a fresh backend."""
from __future__ import annotations

import asyncio
import threading

from inference.base import Backend
from inference.config import BackendConfig, create_backend


class BackendPool:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[BackendConfig, Backend]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, config: BackendConfig) -> Backend:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] == config:
                return entry[1]
            backend = create_backend(config)
            self._entries[key] = (config, backend)
        if entry is not None:
            _close_later(entry[1])
        return backend

    def discard(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            _close_later(entry[1])

    async def close_all(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for _, backend in entries:
            await backend.close()


def _close_later(backend: Backend) -> None:
    """Close a replaced backend without blocking the request that replaced it
    (requests already running on it finish first: close() waits for them)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(backend.close())
        return
    loop.create_task(backend.close())


pool = BackendPool()
