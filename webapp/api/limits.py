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
from redis.exceptions import RedisError
from django.conf import settings

from webapp.accounts.models import ApiKey

STALE_AFTER_S = 900
POOL_SIZE = 64
REDIS_TIMEOUT_S = 5.0
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis] = weakref.WeakKeyDictionary()


def _client() -> aioredis.Redis:
    # One client per event loop: redis.asyncio connections belong to a loop.
    # A blocking pool: a burst beyond its size waits for a connection instead
    # of failing with MaxConnectionsError (seen at 104 concurrent requests).
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL, max_connections=POOL_SIZE, timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        client = _clients[loop] = aioredis.Redis(connection_pool=pool)
    return client


def limit_for(api_key: ApiKey) -> int:
    return api_key.max_concurrent_requests or settings.V1_MAX_CONCURRENT_PER_KEY


class LimiterUnavailable(Exception):
    """Redis, which counts requests in flight, cannot be reached."""


class Slot:
    def __init__(self, key: str, member: str) -> None:
        self.key, self.member, self.released = key, member, False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            try:
                await _client().zrem(self.key, self.member)
            except RedisError:
                pass  # the member expires with STALE_AFTER_S


async def acquire(api_key: ApiKey) -> Slot | None:
    """A slot, or None when the key already has its limit in flight."""
    key = f"workbench:v1:inflight:{api_key.pk}"
    member = uuid.uuid4().hex
    now = time.time()
    try:
        async with _client().pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, 0, now - STALE_AFTER_S)
            pipe.zadd(key, {member: now})
            pipe.zcard(key)
            pipe.expire(key, STALE_AFTER_S)
            _, _, count, _ = await pipe.execute()
    except RedisError as error:
        raise LimiterUnavailable(f"Redis at {settings.REDIS_URL} is unreachable: {error}") from error
    slot = Slot(key, member)
    if count > limit_for(api_key):
        await slot.release()
        return None
    return slot
