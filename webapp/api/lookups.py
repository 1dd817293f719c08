"""Per-process, short-lived caches for the two lookups every /v1 call makes
(API key, deployment). Under ASGI each uncached ORM call costs a thread
hand-off and a fresh database connection; with V1_LOOKUP_CACHE_S = 2 a busy
gateway does them about once per key and model every 2 seconds instead of on
every request. The price, documented in the README: a revoked key or an
edited deployment takes effect on /v1 within that many seconds. Misses are
never cached, so a new key or deployment works at once."""
from __future__ import annotations

import hashlib
import time
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings

from webapp.accounts.models import ApiKey
from webapp.accounts.services import api_key_authenticate
from webapp.deployments.models import Deployment
from webapp.deployments.selectors import servable_deployment

V = TypeVar("V")
MAX_ENTRIES = 10_000


class TtlCache(Generic[V]):
    """Used from the event loop's thread only: no locking needed."""

    def __init__(self) -> None:
        self.entries: dict[object, tuple[float, V]] = {}

    def get(self, key: object) -> V | None:
        entry = self.entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: object, value: V) -> None:
        if len(self.entries) >= MAX_ENTRIES:
            self.entries.clear()
        self.entries[key] = (time.monotonic() + settings.V1_LOOKUP_CACHE_S, value)


_keys: TtlCache[ApiKey] = TtlCache()
_deployments: TtlCache[Deployment] = TtlCache()


async def api_key_for(token: str) -> ApiKey | None:
    digest = hashlib.sha256(token.encode()).digest()  # raw keys are not kept in memory
    api_key = _keys.get(digest)
    if api_key is None:
        api_key = await sync_to_async(api_key_authenticate)(token)
        if api_key is not None:
            _keys.put(digest, api_key)
    return api_key


async def deployment_for(api_key: ApiKey, name: str) -> Deployment | None:
    key = (api_key.owner_id, name)
    deployment = _deployments.get(key)
    if deployment is None:
        deployment = await sync_to_async(servable_deployment)(user=api_key.owner, name=name)
        if deployment is not None:
            _deployments.put(key, deployment)
    return deployment
