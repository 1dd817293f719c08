"""DeepSpeed engines as every stage builds them: our AdamW, a linear warm-up
into the configured schedule, and the DeepSpeed config of the job."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from training_jobs.config import JobConfig
from training_jobs.dsconfig import deepspeed_config


def make_optimizer(model: Any, config: JobConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # No weight decay on biases and norms (the usual AdamW recipe).
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if torch.cuda.is_available():
        from deepspeed.ops.adam import FusedAdam

        return FusedAdam(groups, lr=config.learning_rate, adam_w_mode=True)
    # On CPU a client AdamW (DeepSpeed's CPUAdam would compile for a minute),
    # fused: one kernel over all parameters instead of a loop of small ones.
    return torch.optim.AdamW(groups, lr=config.learning_rate, fused=True)


def make_engine(model: nn.Module, config: JobConfig, world: int, training_steps: int) -> tuple[Any, Any]:
    """(engine, lr scheduler) for `model` trained with `config` (learning
    rate, ZeRO stage, precision, batch sizes) over `training_steps`
    optimizer steps, the first `warmup_ratio` of them warming up."""
    import deepspeed
    from transformers import get_scheduler

    warmup = int(config.warmup_ratio * training_steps)

    def scheduler_factory(optimizer: Any) -> Any:
        name = "constant_with_warmup" if config.lr_scheduler == "constant" else config.lr_scheduler
        return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=training_steps)

    engine, _, _, scheduler = deepspeed.initialize(
        model=model,
        optimizer=make_optimizer(model, config),
        lr_scheduler=scheduler_factory,
        config=deepspeed_config(config, world),
    )
    if world == 1 and config.zero_stage == 0:
        # Nothing to average across ranks, yet the engine would still run
        # a gloo/NCCL all-reduce over every gradient at each boundary
        # (~20% of a step for a 20M model on CPU, bench/train_throughput.py).
        # ZeRO 1-3 collect their gradients through that same path: keep it.
        engine.enable_backward_allreduce = False
    return engine, scheduler


def parameter_counts(module: nn.Module) -> tuple[int, int]:
    """(all, trainable) parameters. Under ZeRO-3 a parameter holds only its
    shard; ds_numel is its full size."""
    sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in module.parameters()]
    return sum(n for n, _ in sizes), sum(n for n, grad in sizes if grad)
