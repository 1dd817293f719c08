"""The per-process backend pool: one backend per deployment, a new one when
the config changes, idle ones closed."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from inference.config import BackendConfig
from inference.embeddings import EmbeddingBackend
from inference.pool import BackendPool


def test_reuse_replace_and_idle_close(tiny_bloom: Path) -> None:
    async def run() -> None:
        pool = BackendPool(idle_close_s=0.2, sweep_every_s=0.0)
        config = BackendConfig(kind="local", model_path=str(tiny_bloom))
        first = pool.get("deployment:1", config)
        assert pool.get("deployment:1", config) is first
        edited = BackendConfig(kind="local", model_path=str(tiny_bloom), options={"max_batch_size": 4})
        second = pool.get("deployment:1", edited)
        assert second is not first
        other = pool.get("deployment:2", BackendConfig(kind="embedding"))
        assert isinstance(other, EmbeddingBackend)
        assert (await second.health()).ok
        time.sleep(0.3)
        pool.get("deployment:2", BackendConfig(kind="embedding"))  # used again: kept; deployment:1 idle: closed
        assert "deployment:1" not in pool and "deployment:2" in pool
        await asyncio.sleep(0)  # let the scheduled close run
        await pool.close_all()

    asyncio.run(run())
