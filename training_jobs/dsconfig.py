"""The DeepSpeed config generated from a job config."""
from __future__ import annotations

from typing import Any

from training_jobs.config import JobConfig


def deepspeed_config(config: JobConfig, world_size: int) -> dict[str, Any]:
    zero: dict[str, Any] = {"stage": config.zero_stage}
    if config.offload_optimizer:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    if config.offload_params:
        zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    if config.zero_stage == 3:
        # Gather full weights for save_16bit_model-style consolidation.
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    ds: dict[str, Any] = {
        "train_batch_size": config.global_batch_size,
        "train_micro_batch_size_per_gpu": config.micro_batch_size,
        "gradient_accumulation_steps": config.gradient_accumulation(world_size),
        "zero_optimization": zero,
        "bf16": {"enabled": config.precision == "bf16"},
        "fp16": {"enabled": config.precision == "fp16", "loss_scale": 0, "initial_scale_power": 16},
        # Our optimizer is a client torch.optim.AdamW on CPU (no op build) or
        # FusedAdam on GPU; both are fine under ZeRO and offload.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,  # progress goes through our protocol
        "wall_clock_breakdown": False,
    }
    if config.grad_clip > 0:
        ds["gradient_clipping"] = config.grad_clip
    return ds
