"""Backends kept alive per deployment inside one serving process: a local
model loads once and its batching thread is shared by every request; an
edited deployment (different config) gets a fresh backend. A backend nobody
asked for during `idle_close_s` (a deleted deployment, a model out of use) is
closed, so the process does not keep its memory forever."""
from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass

from inference.base import Backend
from inference.config import BackendConfig, create_backend

IDLE_CLOSE_S = 3600.0
SWEEP_EVERY_S = 60.0


@dataclass
class _Entry:
    config: BackendConfig
    backend: Backend
    last_used: float


class BackendPool:
    def __init__(self, *, idle_close_s: float = IDLE_CLOSE_S, sweep_every_s: float = SWEEP_EVERY_S) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self.idle_close_s = idle_close_s
        self.sweep_every_s = sweep_every_s
        self._last_sweep = time.monotonic()

    def get(self, key: str, config: BackendConfig) -> Backend:
        now = time.monotonic()
        retired: list[Backend] = []
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.config == config:
                entry.last_used = now
                backend = entry.backend
            else:
                if entry is not None:
                    retired.append(entry.backend)
                backend = create_backend(config)
                self._entries[key] = _Entry(config, backend, now)
            if now - self._last_sweep >= self.sweep_every_s:
                self._last_sweep = now
                for name, idle in list(self._entries.items()):
                    if now - idle.last_used >= self.idle_close_s:
                        retired.append(self._entries.pop(name).backend)
        for old in retired:
            _close_later(old)
        return backend

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def discard(self, key: str) -> None:
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            _close_later(entry.backend)

    async def close_all(self) -> None:
        with self._lock:
            entries, self._entries = list(self._entries.values()), {}
        for entry in entries:
            await entry.backend.close()


def _close_later(backend: Backend) -> None:
    """Close a retired backend without blocking the request that retired it."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(backend.close())
        return
    loop.create_task(backend.close())


pool = BackendPool()
