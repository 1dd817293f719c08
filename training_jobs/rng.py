"""Seeding and the random-number state a checkpoint carries, so that a
resumed run draws the same numbers as an uninterrupted one."""
from __future__ import annotations

import random
from typing import Any

import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def cuda_rng_state() -> list[torch.Tensor] | None:
    """Every GPU's generator state; None without CUDA."""
    return torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None


def set_cuda_rng_state(state: list[torch.Tensor] | None) -> None:
    """Restores `cuda_rng_state()`; a state saved without CUDA (None), or
    one restored where there is no CUDA, is left alone."""
    if state is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state)
