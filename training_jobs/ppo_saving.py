"""What a PPO run writes: checkpoints it can resume from and the output
folder it serves from.

Checkpoints: checkpoints/step-N/{actor,critic}/ (DeepSpeed, one tag per
engine; a LoRA actor leaves out its frozen base, which is base_model) and
ema.pt, with the RNG state, so a resumed run samples the same responses.
checkpoints/latest names the newest complete one and is written last (by
the trainer, once every rank is done), so a crash mid-save leaves the
previous checkpoint in charge.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from training_jobs.config import ConfigError, JobConfig
from training_jobs.distributed import barrier, gathered
from training_jobs.job import write_job_files
from training_jobs.ppo_models import PpoModels, merged_state_dict
from training_jobs.rng import cuda_rng_state, rng_state, set_cuda_rng_state, set_rng_state


def save_checkpoint(models: PpoModels, folder: Path, step: int, rank: int) -> None:
    """Every rank writes its shards; returns once all have."""
    state = {"step": step, "rng": rng_state(), "cuda_rng": cuda_rng_state()}
    # With LoRA the frozen base is base_model itself: keep only the adapter.
    models.actor.save_checkpoint(str(folder), tag="actor", client_state=state, save_latest=False,
                                 exclude_frozen_parameters=models.lora)
    models.critic.save_checkpoint(str(folder), tag="critic", save_latest=False)
    if rank == 0 and models.ema is not None:
        torch.save([t.cpu() for t in models.ema], folder / "ema.pt")
    barrier()


def load_checkpoint(models: PpoModels, folder: Path) -> int:
    """Engines, EMA and RNG state from `folder`; returns its step."""
    path, state = models.actor.load_checkpoint(str(folder), tag="actor", load_module_strict=not models.lora)
    critic_path, _ = models.critic.load_checkpoint(str(folder), tag="critic")
    if path is None or critic_path is None:
        raise ConfigError(f"output_dir: cannot load the checkpoint in {folder}")
    if models.ema is not None:
        saved = folder / "ema.pt"
        if saved.exists():
            for average, value in zip(models.ema, torch.load(saved, map_location="cpu"), strict=True):
                average.copy_(value.to(average.device))
    set_rng_state(state["rng"])
    set_cuda_rng_state(state.get("cuda_rng"))
    return int(state["step"])


def save_output(
    models: PpoModels, config: JobConfig, tokenizer: Any, output_dir: Path, rank: int, metrics: dict[str, Any]
) -> None:
    """The actor, LoRA merged (adapter kept in adapter/), and the EMA
    actor in ema/, each a plain causal-LM folder with the tokenizer,
    job.json and metrics.json. (The critic is not kept: it only serves
    to continue this PPO run, which the checkpoints do.) Every rank calls it."""
    module = models.actor.module
    with gathered(list(module.parameters()), config.zero_stage):
        if rank == 0:
            output_dir.mkdir(parents=True, exist_ok=True)
            ema_state = None
            if models.ema is not None:
                # Swap the averages in, read the merged weights, swap back.
                current = [p.detach().clone() for p in models.trainable]
                with torch.no_grad():
                    for param, average in zip(models.trainable, models.ema):
                        param.copy_(average.to(param.device, param.dtype))
                    ema_state = merged_state_dict(module, models.lora)
                    for param, value in zip(models.trainable, current):
                        param.copy_(value)
            if models.lora:
                module.save_pretrained(output_dir / "adapter")
                module = module.merge_and_unload()
            # Serving wants the KV cache even when training checkpointed gradients.
            module.config.use_cache = True
            state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
            _save_folder(module, state, tokenizer, config, output_dir, metrics)
            if ema_state is not None:
                _save_folder(module, ema_state, tokenizer, config, output_dir / "ema", metrics)
    barrier()


def _save_folder(
    model: nn.Module, state: dict[str, Tensor], tokenizer: Any, config: JobConfig, folder: Path, metrics: dict[str, Any]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, state_dict=state, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    write_job_files(folder, config, metrics)
