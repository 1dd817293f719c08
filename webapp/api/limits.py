"""Per-key concurrency for /v1, in Redis so that every web process counts
together. Each request is a member of a sorted set scored by its start time;
members older than STALE_AFTER_S (a process killed mid-request) stop
counting, so a crash can never lock a key out."""
from __future__ import annotations

import asyncio
import time
import uuid
import weakref

import redis.asyncio as aioredis
from django.conf import settings

from webapp.accounts.models import ApiKey

STALE_AFTER_S = 900
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def _client() -> aioredis.Redis:
    # One client per event loop: redis.asyncio connections belong to a loop.
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        client = _clients[loop] = aioredis.from_url(settings.REDIS_URL)
    return client


def limit_for(api_key: ApiKey) -> int:
    return api_key.max_concurrent_requests or settings.V1_MAX_CONCURRENT_PER_KEY


class Slot:
    def __init__(self, key: str, member: str) -> None:
        self.key, self.member, self.released = key, member, False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            await _client().zrem(self.key, self.member)


async def acquire(api_key: ApiKey) -> Slot | None:
    """A slot, or None when the key already has its limit in flight."""
    key = f"workbench:v1:inflight:{api_key.pk}"
    member = uuid.uuid4().hex
    now = time.time()
    async with _client().pipeline(transaction=True) as pipe:
        pipe.zremrangebyscore(key, 0, now - STALE_AFTER_S)
        pipe.zadd(key, {member: now})
        pipe.zcard(key)
        pipe.expire(key, STALE_AFTER_S)
        _, _, count, _ = await pipe.execute()
    slot = Slot(key, member)
    if count > limit_for(api_key):
        await slot.release()
        return None
    return slot
