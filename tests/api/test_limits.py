"""The per-key limiter against a real Redis: slots counted, released, and a
Redis that cannot be reached reported as such."""
from __future__ import annotations

import asyncio

import pytest

from webapp.accounts.models import ApiKey
from webapp.api import limits
from webapp.lib.embedded_redis import free_port

pytestmark = pytest.mark.django_db


def test_slots_are_counted_per_key_and_released(alice, settings) -> None:
    key = ApiKey(pk=987654, owner=alice, max_concurrent_requests=3)

    async def run() -> list[bool]:
        held = [await limits.acquire(key) for _ in range(3)]
        refused = await limits.acquire(key)
        await held[0].release()
        again = await limits.acquire(key)
        for slot in [*held[1:], again]:
            await slot.release()
        return [all(held), refused is None, again is not None]

    assert asyncio.run(run()) == [True, True, True]


def test_a_burst_beyond_the_redis_pool_waits_instead_of_failing(alice) -> None:
    key = ApiKey(pk=987655, owner=alice, max_concurrent_requests=1000)

    async def run() -> int:
        slots = await asyncio.gather(*(limits.acquire(key) for _ in range(limits.POOL_SIZE * 3)))
        await asyncio.gather(*(slot.release() for slot in slots))
        return sum(slot is not None for slot in slots)

    assert asyncio.run(run()) == limits.POOL_SIZE * 3


def test_unreachable_redis_is_reported(alice, settings) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    key = ApiKey(pk=987656, owner=alice)
    with pytest.raises(limits.LimiterUnavailable, match="unreachable"):
        asyncio.run(limits.acquire(key))
