"""The models of a PPO run (see ppo.py's docstring): loading the policy
without dropout, building the actor and critic engines, the frozen reference
and reward model, the actor's EMA, and the merged weights the output saves."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from training_jobs.config import JobConfig
from training_jobs.distributed import gathered
from training_jobs.engine import make_engine
from training_jobs.reward import RewardModel, build_reward_model
from training_jobs.stages import lora_config

DROPOUT_FIELDS = ("dropout", "hidden_dropout", "attention_dropout", "activation_dropout", "attn_pdrop",
                  "resid_pdrop", "embd_pdrop", "hidden_dropout_prob", "attention_probs_dropout_prob")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def disable_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def load_policy(folder: str, dtype: torch.dtype, config: JobConfig | None) -> nn.Module:
    """A causal LM with dropout off; with `config.lora`, wrapped in a PEFT
    LoRA adapter (stages.py's recipe, without LoRA dropout)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_config = AutoConfig.from_pretrained(folder)
    for name in DROPOUT_FIELDS:  # read at construction by some models (BLOOM), so set before
        if isinstance(getattr(model_config, name, None), float):
            setattr(model_config, name, 0.0)
    model = AutoModelForCausalLM.from_pretrained(folder, config=model_config, dtype=dtype)
    disable_dropout(model)
    if config is None:
        return model
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.lora is not None:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(config, model.config.model_type, "CAUSAL_LM", dropout=0.0))
    return model


def merged_state_dict(module: nn.Module, lora: bool) -> dict[str, Tensor]:
    """The plain causal LM's state dict, LoRA deltas added (W + scale·B·A) —
    the keys `merge_and_unload()` would leave — without touching `module`."""
    if not lora:
        return {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
    from peft.tuners.lora import LoraLayer

    base = module.get_base_model()
    state = {
        name.replace(".base_layer.", "."): tensor.detach().clone().contiguous()
        for name, tensor in base.state_dict().items()
        if "lora_" not in name
    }
    for name, layer in base.named_modules():
        if isinstance(layer, LoraLayer):
            for adapter in layer.active_adapters:
                key = f"{name}.weight"
                state[key] = (state[key].float() + layer.get_delta_weight(adapter).float()).to(state[key].dtype)
    return state


def critic_job_config(config: JobConfig) -> JobConfig:
    """The job as the critic's engine sees it: its own learning rate and
    ZeRO stage (default the actor's), offload only where that stage allows."""
    ppo = config.ppo
    stage = ppo.critic_zero_stage if ppo.critic_zero_stage is not None else config.zero_stage
    return config.model_copy(update={
        "zero_stage": stage, "learning_rate": ppo.critic_learning_rate,
        "offload_params": config.offload_params and stage == 3,
        "offload_optimizer": config.offload_optimizer and stage > 0,
    })


@dataclass
class PpoModels:
    actor: Any  # DeepSpeed engine over the policy (a PEFT model with LoRA)
    actor_scheduler: Any
    critic: Any  # DeepSpeed engine over a RewardModel
    critic_scheduler: Any
    reference: nn.Module | None  # None with LoRA: the actor with its adapter disabled
    reward_model: RewardModel
    lora: bool
    trainable: list[nn.Parameter]  # the actor's trained weights (only the adapter's with LoRA)
    ema: list[Tensor] | None  # fp32 averages of `trainable`, with ppo.ema

    @property
    def device(self) -> torch.device:
        return self.actor.device


def build_models(config: JobConfig, world: int, updates: int, reward_model: RewardModel) -> PpoModels:
    """Actor and critic engines, each with its own optimizer and warm-up
    schedule over `updates` optimizer steps; the frozen reference and
    `reward_model` placed (on the CPU with ppo.offload_reference); the EMA
    started from the actor. The order of the loads is fixed: the LoRA and
    value-head initialisations draw from the seeded torch RNG."""
    ppo = config.ppo
    lora = config.lora is not None
    policy = load_policy(config.base_model, torch.float32, config)
    actor, actor_scheduler = make_engine(policy, config, world, updates)
    critic_model = build_reward_model(config.reward_model)
    disable_dropout(critic_model)
    if config.gradient_checkpointing:
        critic_model.transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    critic, critic_scheduler = make_engine(critic_model, critic_job_config(config), world, updates)
    frozen_device = torch.device("cpu") if ppo.offload_reference else actor.device
    reference: nn.Module | None = None
    if not lora:
        reference = load_policy(config.base_model, DTYPES[config.precision], None).to(frozen_device).eval()
        reference.requires_grad_(False)
    reward_model = reward_model.to(frozen_device).eval()
    reward_model.requires_grad_(False)

    trainable = [p for p in actor.module.parameters() if p.requires_grad]
    ema: list[Tensor] | None = None
    if ppo.ema:
        with gathered(trainable, config.zero_stage):
            ema = [p.detach().float().clone() for p in trainable]
    return PpoModels(actor, actor_scheduler, critic, critic_scheduler, reference, reward_model, lora, trainable, ema)
