"""The process group a training job runs in, and the few collectives its
loop needs. One process without a launcher is rank 0 of a world of 1 (gloo
on CPU), so the same code runs alone and under `deepspeed`."""
from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_distributed_env() -> None:
    """Without the deepspeed launcher, run as the single rank of a world of 1
    (otherwise init_distributed goes looking for MPI)."""
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "training_jobs" / "torch_extensions"))


def init_distributed() -> tuple[int, int]:
    """Join the process group (NCCL on GPU, gloo on CPU): (rank, world size)."""
    import deepspeed
    import torch.distributed as dist

    ensure_distributed_env()
    logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    return dist.get_rank(), dist.get_world_size()


def destroy_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def all_max(value: float) -> float:
    import torch.distributed as dist

    tensor = torch.tensor([value])
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def agree(flag: bool) -> bool:
    """True on every rank when it is True on any (e.g. SIGTERM reached one
    rank: all of them stop at the same step)."""
    return bool(all_max(1.0 if flag else 0.0))


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sums over the ranks (float64, so counts stay exact)."""
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def gathered(params: list[nn.Parameter], zero_stage: int) -> AbstractContextManager[Any]:
    """Full parameters inside the block under ZeRO-3 (every rank must enter;
    changes made inside are discarded on exit)."""
    if zero_stage != 3:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params)
