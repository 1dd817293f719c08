"""Stage `ppo`: RLHF with PPO on DeepSpeed engines (DeepSpeed-Chat's step 3,
dschat/rlhf/ppo_trainer.py and rlhf_engine.py; formulas in ppo_math.py).

Models
- actor: the SFT policy (`base_model`), LoRA on attention by default (config
  `lora`, r=32), every weight when `lora` is null. A DeepSpeed engine.
- reference: the frozen SFT policy. With LoRA it is the actor's own base
  with the adapter switched off (`disable_adapter()`): the same weights, no
  second copy. Full fine-tuning loads a frozen copy.
- critic: `reward.build_reward_model(reward_model)` — the reward model's
  transformer and value head, trained (its own DeepSpeed engine, learning
  rate `ppo.critic_learning_rate`, ZeRO stage `ppo.critic_zero_stage`).
- reward: the frozen reward model (`reward.load_reward_model`).
  `ppo.offload_reference` keeps the reference copy and the reward model on
  the CPU.
- EMA: an exponential moving average of the actor's trainable weights (the
  LoRA weights with LoRA), saved merged into a full model in `ema/`.
Dropout is switched off in actor and reference (DeepSpeed-Chat's
--disable_actor_dropout): the policy that samples is the one that is
trained, so ρ is exactly 1 on the first pass over fresh experience.
Log-probs are those of softmax(logits / temperature), the distribution
sampled from; top-k/top-p truncation is not folded in (as in
DeepSpeed-Chat and TRL).

One step (one `metrics` event):
1. generation: this rank's share of `global_batch_size` prompts,
   left-padded, sampled with temperature/top_k/top_p for at most
   `response_length` tokens; a row stops at its EOS (no forced length);
2. experience: the prompt + response sequences are repacked right-padded
   (no position-id games for left padding); log-probs of the actions under
   actor and reference, critic values, and the reward model's score of
   `prompt + response + EOS` rendered by `pairs.sequence` and read at that
   EOS by `reward.score_batch` — the token rm training scores;
   per-token rewards with the KL penalty, GAE advantages and returns;
3. training: `ppo.ppo_epochs` passes over the experience in micro-batches
   (one optimizer step per pass per engine), actor loss (+ `ptx_coef` × the
   LM loss on a `ppo.ptx_data` block), critic loss; then the EMA update.
"""
from __future__ import annotations

import json
import logging
import math
import random
import shutil
import signal
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from training_jobs import ppo_math
from training_jobs.config import ConfigError, JobConfig, LORA_TARGETS
from training_jobs.data import EncodedData, collate, encode_corpus, plan_batches
from training_jobs.dsconfig import deepspeed_config
from training_jobs.pairs import encode_prompts, sequence
from training_jobs.progress import Progress
from training_jobs.reward import build_reward_model, load_reward_model, score_batch
from training_jobs.trainer import EXIT_CANCELLED, RunResult, ensure_distributed_env, make_optimizer, seed_everything

DROPOUT_FIELDS = ("dropout", "hidden_dropout", "attention_dropout", "activation_dropout", "attn_pdrop",
                  "resid_pdrop", "embd_pdrop", "hidden_dropout_prob", "attention_probs_dropout_prob")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# --- batches ------------------------------------------------------------------


@dataclass
class Rollout:
    """Prompt + response sequences, right-padded [B, W], and where the
    actions sit: the logits/values at `positions[i, j]` (= prompt_i − 1 + j)
    are those of the state in which `actions[i, j]` was chosen. Response
    space is [B, R]; `mask` marks each row's actions (a prefix)."""

    input_ids: Tensor
    attention_mask: Tensor
    positions: Tensor
    actions: Tensor
    mask: Tensor

    def rows(self, start: int, end: int) -> Rollout:
        return Rollout(*(getattr(self, f.name)[start:end] for f in fields(self)))

    def to(self, device: torch.device | str) -> Rollout:
        return Rollout(*(getattr(self, f.name).to(device) for f in fields(self)))


def pack(prompts: list[list[int]], responses: list[list[int]], pad_id: int) -> Rollout:
    """Right-padded `prompt + response` rows. Every prompt has ≥ 1 token; a
    response may be empty (no actions: its mask row is all 0). R ≥ 1 so that
    an all-empty batch still has well-formed tensors."""
    batch = len(prompts)
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    actions_width = max(1, max(len(r) for r in responses))
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((batch, width), dtype=torch.long)
    positions = torch.zeros((batch, actions_width), dtype=torch.long)
    actions = torch.full((batch, actions_width), pad_id, dtype=torch.long)
    mask = torch.zeros((batch, actions_width), dtype=torch.long)
    for row, (prompt, response) in enumerate(zip(prompts, responses)):
        if not prompt:
            raise ValueError(f"prompt {row} is empty")
        size, count = len(prompt) + len(response), len(response)
        input_ids[row, :size] = torch.tensor(prompt + response, dtype=torch.long)
        attention_mask[row, :size] = 1
        if count:
            positions[row, :count] = torch.arange(len(prompt) - 1, len(prompt) - 1 + count)
            actions[row, :count] = torch.tensor(response, dtype=torch.long)
            mask[row, :count] = 1
    return Rollout(input_ids, attention_mask, positions, actions, mask)


def cut_at_eos(generated: list[int], eos_id: int) -> list[int]:
    """The response's actions: tokens up to and including the first EOS, or
    all of them when it hit the length limit (what follows is padding)."""
    return generated[: generated.index(eos_id) + 1] if eos_id in generated else generated


def reward_sequence(prompt: list[int], response: list[int], eos_id: int, max_length: int) -> list[int]:
    """`prompt + response (without its EOS) + EOS`, as `pairs.sequence`
    renders rm training rows, so the reward model reads the score at the
    token it was trained to score (the seed's copy read it elsewhere)."""
    text = response[:-1] if response and response[-1] == eos_id else response
    rendered = sequence(prompt, text, eos_id, max_length)
    assert rendered is not None  # a prompt has ≥ 1 token and max_length ≥ 8
    return rendered[0]


def step_prompts(count: int, seed: int, step: int, global_batch: int) -> list[int]:
    """Prompt indices of optimizer step `step` (0-based): the prompts in an
    order reshuffled each epoch, taken `global_batch` at a time across epoch
    boundaries — a pure function of (seed, step), so a resume replays them."""
    indices = []
    for position in range(step * global_batch, (step + 1) * global_batch):
        epoch, offset = divmod(position, count)
        indices.append(_epoch_order(count, seed, epoch)[offset])
    return indices


@lru_cache(maxsize=2)  # a step spans at most two epochs
def _epoch_order(count: int, seed: int, epoch: int) -> tuple[int, ...]:
    order = list(range(count))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return tuple(order)


def action_logprobs(forward: Any, batch: Rollout, temperature: float) -> Tensor:
    """log π(a_j | state_j) [B, R] from one forward of a causal LM (or its
    engine) over the packed rows: the logits at `positions` are gathered
    before the softmax, so only [B, R, V] is normalised."""
    logits = forward(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
    picked = logits.gather(1, batch.positions.unsqueeze(-1).expand(-1, -1, logits.shape[-1]))
    return ppo_math.logprobs_of(picked, batch.actions, temperature)


def critic_values(forward: Any, batch: Rollout) -> Tensor:
    """V(state_j) [B, R] from the critic's per-token values."""
    return forward(batch.input_ids, batch.attention_mask).gather(1, batch.positions).float()


@dataclass
class Experience:
    rollout: Rollout
    logprobs: Tensor  # [B, R] of the actor that sampled (π_old)
    ref_logprobs: Tensor
    values: Tensor  # critic values before training (V_old), 0 past the end
    scores: Tensor  # [B] reward model scores (unclipped)
    rewards: Tensor
    advantages: Tensor
    returns: Tensor

    def rows(self, start: int, end: int) -> Experience:
        return Experience(
            self.rollout.rows(start, end),
            *(getattr(self, f.name)[start:end] for f in fields(self) if f.name != "rollout"),
        )


# --- models ------------------------------------------------------------------


def disable_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def load_policy(folder: str, dtype: torch.dtype, config: JobConfig | None) -> nn.Module:
    """A causal LM with dropout off; with `config.lora`, wrapped in a PEFT
    LoRA adapter (trainer.py's recipe)."""
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
        from peft import LoraConfig as PeftLoraConfig
        from peft import get_peft_model

        targets = config.lora.target_modules or LORA_TARGETS.get(model.config.model_type)
        if not targets:
            raise ConfigError(f"lora.target_modules: no default for model type {model.config.model_type!r}; list the modules")
        model = get_peft_model(model, PeftLoraConfig(
            r=config.lora.r, lora_alpha=config.lora.alpha, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM",
        ))
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


def gathered(params: list[nn.Parameter], zero_stage: int) -> AbstractContextManager[Any]:
    """Full parameters inside the block under ZeRO-3 (every rank must enter;
    changes made inside are discarded on exit)."""
    if zero_stage != 3:
        return nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params)


# --- the trainer ----------------------------------------------------------------


class PpoTrainer:
    def __init__(self, config: JobConfig, progress: Progress | None = None) -> None:
        self.config = config
        self.output_dir = Path(config.output_dir)
        self.checkpoint_dir = self.output_dir / "checkpoints"
        self.stop_requested = False
        self.progress = progress

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def run(self, resume: bool = False) -> RunResult:
        import deepspeed
        import torch.distributed as dist

        ensure_distributed_env()
        logging.getLogger("DeepSpeed").setLevel(logging.WARNING)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        deepspeed.init_distributed(dist_backend=backend, verbose=False)
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        if self.progress is None:
            self.progress = Progress(self.output_dir, enabled=self.rank == 0)
        try:
            return self._run(resume)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()

    # -- set-up ------------------------------------------------------------------

    def _setup(self) -> None:
        import deepspeed
        from transformers import AutoTokenizer, GenerationConfig, get_scheduler

        config, ppo = self.config, self.config.ppo
        self.dtype = DTYPES[config.precision]
        tokenizer = AutoTokenizer.from_pretrained(config.base_model)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.eos_id, self.pad_id = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)

        reward_model, reward_tokenizer, reward_meta = load_reward_model(config.reward_model, self.dtype)
        if reward_tokenizer.get_vocab() != tokenizer.get_vocab() or reward_tokenizer.eos_token_id != self.eos_id:
            raise ConfigError(
                f"reward_model: {config.reward_model} has a different tokenizer from base_model "
                "(train the reward model on the SFT model's tokenizer)"
            )
        self.reward_notes = []
        if reward_meta.get("prompt_template") not in (None, config.prompt_template):
            self.reward_notes.append(
                "the reward model was trained with prompt_template "
                f"{reward_meta['prompt_template']!r}, this job renders prompts with {config.prompt_template!r}"
            )

        self.prompts, rows = encode_prompts(config.train_data, tokenizer, config.prompt_template, ppo.prompt_length)
        if not self.prompts:
            raise ConfigError("train_data: no usable prompts")
        self.dropped = rows - len(self.prompts)
        self.eval_prompts: list[list[int]] = []
        if config.eval_data:
            self.eval_prompts, _ = encode_prompts(
                config.eval_data, tokenizer, config.prompt_template, ppo.prompt_length, "eval_data"
            )
        self.ptx: EncodedData | None = None
        if ppo.ptx_coef > 0 and ppo.ptx_data:
            self.ptx = encode_corpus(ppo.ptx_data, tokenizer, config.max_length, "ppo.ptx_data")
            if not self.ptx.examples:
                raise ConfigError("ppo.ptx_data: no usable text")
            lengths = [len(e.input_ids) for e in self.ptx.examples]
            self.ptx_batches = len(plan_batches(lengths, config.micro_batch_size, config.seed, 0, False))
            self._ptx_plan: tuple[int, list[list[int]]] = (-1, [])

        self.grad_accum = config.gradient_accumulation(self.world)
        self.share = config.global_batch_size // self.world
        self.total_steps = config.max_steps or max(1, math.ceil(config.epochs * len(self.prompts) / config.global_batch_size))
        updates = self.total_steps * ppo.ppo_epochs  # optimizer steps per engine
        warmup = int(config.warmup_ratio * updates)

        def scheduler_factory(optimizer: Any) -> Any:
            name = "constant_with_warmup" if config.lr_scheduler == "constant" else config.lr_scheduler
            return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=updates)

        actor = load_policy(config.base_model, torch.float32, config)
        self.lora = config.lora is not None
        self.actor, _, _, self.actor_scheduler = deepspeed.initialize(
            model=actor, optimizer=make_optimizer(actor, config), lr_scheduler=scheduler_factory,
            config=deepspeed_config(config, self.world),
        )
        critic_stage = ppo.critic_zero_stage if ppo.critic_zero_stage is not None else config.zero_stage
        critic_config = config.model_copy(update={
            "zero_stage": critic_stage, "learning_rate": ppo.critic_learning_rate,
            "offload_params": config.offload_params and critic_stage == 3,
            "offload_optimizer": config.offload_optimizer and critic_stage > 0,
        })
        critic = build_reward_model(config.reward_model)
        disable_dropout(critic)
        if config.gradient_checkpointing:
            critic.transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.critic, _, _, self.critic_scheduler = deepspeed.initialize(
            model=critic, optimizer=make_optimizer(critic, critic_config), lr_scheduler=scheduler_factory,
            config=deepspeed_config(critic_config, self.world),
        )
        for engine, stage in ((self.actor, config.zero_stage), (self.critic, critic_stage)):
            if self.world == 1 and stage == 0:
                engine.enable_backward_allreduce = False  # nothing to average (see trainer.py)
        self.device = self.actor.device
        frozen_device = torch.device("cpu") if ppo.offload_reference else self.device
        self.reference: nn.Module | None = None
        if not self.lora:
            self.reference = load_policy(config.base_model, self.dtype, None).to(frozen_device).eval()
            self.reference.requires_grad_(False)
        self.reward_model = reward_model.to(frozen_device).eval()
        self.reward_model.requires_grad_(False)

        self.trainable = [p for p in self.actor.module.parameters() if p.requires_grad]
        self.ema: list[Tensor] | None = None
        if ppo.ema:
            with gathered(self.trainable, config.zero_stage):
                self.ema = [p.detach().float().clone() for p in self.trainable]

        # Every sampling setting explicit: the model folder's generation_config
        # (or transformers' defaults, e.g. top_k 50) must not change the policy.
        self.generation_config = GenerationConfig(
            do_sample=True, temperature=ppo.temperature, top_k=ppo.top_k, top_p=ppo.top_p,
            max_new_tokens=ppo.response_length, min_new_tokens=0, eos_token_id=self.eos_id,
            pad_token_id=self.pad_id, use_cache=True, num_beams=1, repetition_penalty=1.0,
        )

    # -- the loop ----------------------------------------------------------------

    def _run(self, resume: bool) -> RunResult:
        config, progress = self.config, self.progress
        assert progress is not None
        started = time.monotonic()
        seed_everything(config.seed)
        self._setup()
        start_step = self._load_checkpoint() if resume else 0
        actor_sizes = [(getattr(p, "ds_numel", p.numel()), p.requires_grad) for p in self.actor.module.parameters()]
        critic_params = sum(getattr(p, "ds_numel", p.numel()) for p in self.critic.module.parameters())
        progress.emit(
            "start", total_steps=self.total_steps, world_size=self.world,
            params=sum(n for n, _ in actor_sizes), trainable_params=sum(n for n, grad in actor_sizes if grad),
            critic_params=critic_params, stage="ppo", examples=len(self.prompts), dropped_rows=self.dropped,
            gradient_accumulation=self.grad_accum, resumed_from_step=start_step if resume else None,
            reference="actor base, adapter disabled" if self.lora else "frozen copy of base_model",
        )
        for note in self.reward_notes:
            progress.emit("note", message=note)

        window: dict[str, float] = {}
        step = start_step
        last: dict[str, Any] = {}
        last_eval: dict[str, Any] | None = None
        loop_start = time.monotonic()
        while step < self.total_steps:
            sums = self._step(step)
            step += 1
            for key, value in sums.items():
                window[key] = window.get(key, 0.0) + value
            stop = self._agree(self.stop_requested)
            if step % config.log_every == 0 or step == self.total_steps or stop:
                last = self._metrics(window, step, started, start_step)
                progress.emit("metrics", **last)
                window = {}
            if self.eval_prompts and config.eval_every and step % config.eval_every == 0 and step < self.total_steps:
                last_eval = self._evaluate(step)
            if stop:
                self._save_checkpoint(step)
                progress.emit("cancelled", step=step, message="stopped by SIGTERM; resume with --resume")
                return RunResult(EXIT_CANCELLED, {"step": step})
            if config.save_every and step % config.save_every == 0 and step < self.total_steps:
                self._save_checkpoint(step)
        loop_s = time.monotonic() - loop_start
        if self.eval_prompts:
            last_eval = self._evaluate(step)
        metrics = {
            "stage": "ppo", "steps": step,
            **{k: last.get(k) for k in ("reward_mean", "reward_std", "kl", "actor_loss", "critic_loss", "response_length")},
            "train_loss": last.get("actor_loss"),
            "eval_reward_mean": last_eval["reward_mean"] if last_eval else None,
            "examples": len(self.prompts), "dropped_rows": self.dropped,
            "train_runtime_s": round(loop_s, 3), "elapsed_s": round(time.monotonic() - started, 3),
            "ema": bool(self.ema is not None),
        }
        self._save_output(metrics)
        progress.emit("done", output_dir=str(self.output_dir), metrics=metrics)
        return RunResult(0, metrics)

    def _step(self, step: int) -> dict[str, float]:
        """One PPO iteration; returns this window's sums (all ranks)."""
        config = self.config
        began = time.monotonic()
        chosen = step_prompts(len(self.prompts), config.seed, step, config.global_batch_size)
        prompts = [self.prompts[i] for i in chosen[self.rank :: self.world]]
        responses = self.generate(prompts)
        generated = time.monotonic()
        experience = self.make_experience(prompts, responses)
        scored = time.monotonic()
        stats = self.train_on(experience)
        if self.ema is not None:
            with gathered(self.trainable, config.zero_stage):
                ppo_math.ema_update(self.ema, self.trainable, config.ppo.ema_decay)
        ended = time.monotonic()

        mask = experience.rollout.mask
        # An EOS can only be a row's last action: the other actions are its text.
        text_tokens = mask * (experience.rollout.actions != self.eos_id)
        log_ratio = (experience.logprobs - experience.ref_logprobs) * mask
        scores = experience.scores.double()
        local = {
            "rows": float(len(prompts)), "score_sum": float(scores.sum()), "score_sq": float((scores**2).sum()),
            "kl_sum": float(log_ratio.sum()), "actions": float(mask.sum()),
            "response_tokens": float(text_tokens.sum()),
            "tokens": float(experience.rollout.attention_mask.sum()),
            **stats,
            "generation_s": generated - began, "experience_s": scored - generated, "train_s": ended - scored,
            "step_s": ended - began, "steps": 1.0,
        }
        keys = sorted(local)
        return dict(zip(keys, self._sum([local[k] for k in keys])))

    def _metrics(self, window: dict[str, float], step: int, started: float, start_step: int) -> dict[str, Any]:
        ranks = float(self.world)
        rows = max(window["rows"], 1.0)
        mean = window["score_sum"] / rows
        # Timings are summed over ranks too: divide by the rank count.
        step_s = window["step_s"] / ranks
        elapsed = time.monotonic() - started
        done = (step - start_step) / max(self.total_steps - start_step, 1)
        micro = max(window["micro_batches"], 1.0)
        return {
            "step": step, "epoch": round(step * self.config.global_batch_size / len(self.prompts), 4),
            "loss": window["actor_loss"] / micro, "lr": self.actor_scheduler.get_last_lr()[0],
            "critic_lr": self.critic_scheduler.get_last_lr()[0],
            "reward_mean": mean, "reward_std": math.sqrt(max(window["score_sq"] / rows - mean * mean, 0.0)),
            "kl": window["kl_sum"] / max(window["actions"], 1.0),
            "actor_loss": window["actor_loss"] / micro, "critic_loss": window["critic_loss"] / micro,
            "ptx_loss": window["ptx_loss"] / micro if self.ptx is not None else None,
            "clip_fraction": window["clip_fraction"] / micro,
            "response_length": window["response_tokens"] / rows,
            "generation_share": window["generation_s"] / window["step_s"] if window["step_s"] > 0 else None,
            # Seconds per step and rank (both sums run over ranks and steps).
            "generation_s": round(window["generation_s"] / window["steps"], 4),
            "experience_s": round(window["experience_s"] / window["steps"], 4),
            "train_s": round(window["train_s"] / window["steps"], 4),
            "tokens_per_s": window["tokens"] / step_s if step_s > 0 else None,
            "elapsed_s": round(elapsed, 3), "eta_s": round(elapsed / done * (1 - done), 3) if done else None,
        }

    # -- experience ----------------------------------------------------------------

    @torch.no_grad()
    def generate(self, prompts: list[list[int]]) -> list[list[int]]:
        """Sampled responses (tokens up to and including EOS). Prompts are
        left-padded so every row continues from its last prompt token;
        generation stops when every row has emitted EOS or at
        `response_length` — rows that finish early are padded, never
        forced on."""
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, prompt in enumerate(prompts):
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[row, width - len(prompt) :] = 1
        module = self.actor.module
        module.eval()  # transformers turns the KV cache off under gradient checkpointing in train mode
        try:
            output = module.generate(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device),
                generation_config=self.generation_config,
                # ZeRO-3 forwards are collective: ranks whose rows all ended keep stepping with the others.
                synced_gpus=self.config.zero_stage == 3 and self.world > 1,
            )
        finally:
            module.train()
        return [cut_at_eos(row, self.eos_id) for row in output[:, width:].tolist()]

    @torch.no_grad()
    def make_experience(self, prompts: list[list[int]], responses: list[list[int]]) -> Experience:
        """Log-probs, reference log-probs, values, scores, rewards and GAE for
        one batch of responses (any of which may be empty)."""
        ppo = self.config.ppo
        rollout = pack(prompts, responses, self.pad_id)
        parts: dict[str, list[Tensor]] = {"logprobs": [], "ref_logprobs": [], "values": []}
        self.actor.eval()
        self.critic.eval()
        for start in range(0, len(prompts), self.config.micro_batch_size):
            batch = rollout.rows(start, start + self.config.micro_batch_size).to(self.device)
            parts["logprobs"].append(action_logprobs(self.actor, batch, ppo.temperature))
            if self.reference is None:
                with self.actor.module.disable_adapter():
                    parts["ref_logprobs"].append(action_logprobs(self.actor, batch, ppo.temperature))
            else:
                on_ref = batch.to(next(self.reference.parameters()).device)
                parts["ref_logprobs"].append(action_logprobs(self.reference, on_ref, ppo.temperature).to(self.device))
            parts["values"].append(critic_values(self.critic, batch))
        self.actor.train()
        self.critic.train()
        sequences = [reward_sequence(p, r, self.eos_id, self.config.max_length) for p, r in zip(prompts, responses)]
        scores = torch.tensor(score_batch(self.reward_model, sequences, self.pad_id), dtype=torch.float32, device=self.device)
        mask = rollout.mask.to(self.device)
        logprobs, ref_logprobs = torch.cat(parts["logprobs"]), torch.cat(parts["ref_logprobs"])
        values = torch.cat(parts["values"]) * mask
        rewards = ppo_math.kl_rewards(logprobs, ref_logprobs, scores, mask, ppo.kl_coef, ppo.clip_reward)
        advantages, returns = ppo_math.gae(rewards, values, mask, ppo.gamma, ppo.lam)
        return Experience(rollout.to(self.device), logprobs, ref_logprobs, values, scores, rewards, advantages, returns)

    # -- training ------------------------------------------------------------------

    def train_on(self, experience: Experience) -> dict[str, float]:
        """`ppo_epochs` passes over the experience in micro-batches; each pass
        is one optimizer step of each engine (the micro-batches of a rank's
        share are exactly one gradient-accumulation window)."""
        ppo, size = self.config.ppo, self.config.micro_batch_size
        sums = {"actor_loss": 0.0, "critic_loss": 0.0, "ptx_loss": 0.0, "clip_fraction": 0.0, "micro_batches": 0.0}
        rows = experience.rollout.input_ids.shape[0]
        for _ in range(ppo.ppo_epochs):
            for index, start in enumerate(range(0, rows, size)):
                part = experience.rows(start, start + size)
                batch = part.rollout
                logprobs = action_logprobs(self.actor, batch, ppo.temperature)
                actor_loss, clip_fraction = ppo_math.actor_loss(
                    logprobs, part.logprobs, part.advantages, batch.mask, ppo.clip_ratio
                )
                loss = actor_loss
                if self.ptx is not None:
                    ptx_loss = self._ptx_loss(index)
                    loss = loss + ppo.ptx_coef * ptx_loss
                    sums["ptx_loss"] += float(ptx_loss.detach())
                self.actor.backward(loss)
                self.actor.step()
                values = critic_values(self.critic, batch)
                critic_loss = ppo_math.critic_loss(values, part.values, part.returns, batch.mask, ppo.clip_value)
                self.critic.backward(critic_loss)
                self.critic.step()
                sums["actor_loss"] += float(actor_loss.detach())
                sums["critic_loss"] += float(critic_loss.detach())
                sums["clip_fraction"] += float(clip_fraction)
                sums["micro_batches"] += 1.0
        return sums

    def _ptx_loss(self, index: int) -> Tensor:
        """LM loss on the next pre-training micro-batch (InstructGPT's
        PPO-ptx, eq. 2's γ term). Blocks come in a seeded order per pass over
        the corpus, and which micro-batch is next is a pure function of the
        optimizer steps taken, so a resume continues the same sequence."""
        assert self.ptx is not None
        micro = self.actor.global_steps * self.grad_accum + index  # this rank's micro-batches so far
        ptx_epoch, offset = divmod(micro * self.world + self.rank, self.ptx_batches)
        if self._ptx_plan[0] != ptx_epoch:
            lengths = [len(e.input_ids) for e in self.ptx.examples]
            self._ptx_plan = (ptx_epoch, plan_batches(lengths, self.config.micro_batch_size, self.config.seed, ptx_epoch, False))
        batch = collate([self.ptx.examples[i] for i in self._ptx_plan[1][offset]], self.pad_id)
        return self.actor(**{k: v.to(self.device) for k, v in batch.items()}).loss

    # -- evaluation --------------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, step: int) -> dict[str, Any]:
        """Mean reward of sampled responses to the eval prompts. Ranks take
        every world-th prompt and run the same number of batches (ZeRO-3
        collectives); the training RNG is put back afterwards so evaluating
        does not change the training run."""
        import torch.distributed as dist

        from training_jobs.trainer import rng_state, set_rng_state

        saved = rng_state()
        cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        mine = self.eval_prompts[self.rank :: self.world]
        size = self.share
        batches = torch.tensor([float(math.ceil(len(mine) / size))])
        dist.all_reduce(batches, op=dist.ReduceOp.MAX)
        total, square, count, length = 0.0, 0.0, 0.0, 0.0
        for index in range(int(batches.item())):
            prompts = mine[index * size : (index + 1) * size]
            real = len(prompts)
            if not prompts:  # keep in step with the other ranks; results unused
                prompts = [self.eval_prompts[0]]
            responses = self.generate(prompts)
            sequences = [reward_sequence(p, r, self.eos_id, self.config.max_length) for p, r in zip(prompts, responses)]
            scores = score_batch(self.reward_model, sequences, self.pad_id)[:real]
            total += sum(scores)
            square += sum(s * s for s in scores)
            count += real
            length += sum(len(r) - (1 if r and r[-1] == self.eos_id else 0) for r in responses[:real])
        set_rng_state(saved)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)
        total, square, count, length = self._sum([total, square, count, length])
        mean = total / max(count, 1.0)
        result = {
            "step": step, "reward_mean": mean, "reward_std": math.sqrt(max(square / max(count, 1.0) - mean * mean, 0.0)),
            "response_length": length / max(count, 1.0), "examples": int(count),
        }
        assert self.progress is not None
        self.progress.emit("eval", **result)
        return result

    # -- collectives ---------------------------------------------------------------

    def _agree(self, flag: bool) -> bool:
        import torch.distributed as dist

        tensor = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def _sum(self, values: list[float]) -> list[float]:
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    # -- checkpoints ---------------------------------------------------------------
    # checkpoints/step-N/{actor,critic}/ (DeepSpeed, one tag per engine) and
    # ema.pt; checkpoints/latest names the newest complete one and is written
    # last, so a crash mid-save leaves the previous checkpoint in charge.

    def _save_checkpoint(self, step: int) -> None:
        import torch.distributed as dist

        from training_jobs.trainer import rng_state

        tag = f"step-{step}"
        folder = self.checkpoint_dir / tag
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        state = {"step": step, "rng": rng_state(), "cuda_rng": cuda_rng}
        # With LoRA the frozen base is base_model itself: keep only the adapter.
        self.actor.save_checkpoint(str(folder), tag="actor", client_state=state, save_latest=False,
                                   exclude_frozen_parameters=self.lora)
        self.critic.save_checkpoint(str(folder), tag="critic", save_latest=False)
        if self.rank == 0 and self.ema is not None:
            torch.save([t.cpu() for t in self.ema], folder / "ema.pt")
        dist.barrier()
        if self.rank == 0:
            (self.checkpoint_dir / "latest").write_text(tag)
            tags = sorted(
                (p for p in self.checkpoint_dir.glob("step-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1])
            )
            for old in tags[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
            assert self.progress is not None
            self.progress.emit("checkpoint", step=step, path=str(folder))

    def _load_checkpoint(self) -> int:
        from training_jobs.trainer import set_rng_state

        latest = self.checkpoint_dir / "latest"
        if not latest.exists():
            assert self.progress is not None
            self.progress.emit("note", message="--resume: no checkpoint yet, starting from step 0")
            return 0
        folder = self.checkpoint_dir / latest.read_text().strip()
        path, state = self.actor.load_checkpoint(str(folder), tag="actor", load_module_strict=not self.lora)
        critic_path, _ = self.critic.load_checkpoint(str(folder), tag="critic")
        if path is None or critic_path is None:
            raise ConfigError(f"output_dir: cannot load the checkpoint in {folder}")
        if self.ema is not None:
            saved = folder / "ema.pt"
            if saved.exists():
                for average, value in zip(self.ema, torch.load(saved, map_location="cpu"), strict=True):
                    average.copy_(value.to(average.device))
        set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        return int(state["step"])

    # -- output --------------------------------------------------------------------

    def _save_output(self, metrics: dict[str, Any]) -> None:
        """The actor, LoRA merged (adapter kept in adapter/), and the EMA
        actor in ema/, each a plain causal-LM folder with the tokenizer,
        job.json and metrics.json. (The critic is not kept: it only serves
        to continue this PPO run, which the checkpoints do.)"""
        import torch.distributed as dist

        module = self.actor.module
        with gathered(list(module.parameters()), self.config.zero_stage):
            if self.rank == 0:
                self.output_dir.mkdir(parents=True, exist_ok=True)
                ema_state = None
                if self.ema is not None:
                    # Swap the averages in, read the merged weights, swap back.
                    current = [p.detach().clone() for p in self.trainable]
                    with torch.no_grad():
                        for param, average in zip(self.trainable, self.ema):
                            param.copy_(average.to(param.device, param.dtype))
                        ema_state = merged_state_dict(module, self.lora)
                        for param, value in zip(self.trainable, current):
                            param.copy_(value)
                if self.lora:
                    module.save_pretrained(self.output_dir / "adapter")
                    module = module.merge_and_unload()
                # Serving wants the KV cache even when training checkpointed gradients.
                module.config.use_cache = True
                state = {k: v.detach().clone().contiguous() for k, v in module.state_dict().items()}
                self._save_folder(module, state, self.output_dir, metrics)
                if ema_state is not None:
                    self._save_folder(module, ema_state, self.output_dir / "ema", metrics)
        dist.barrier()

    def _save_folder(self, model: nn.Module, state: dict[str, Tensor], folder: Path, metrics: dict[str, Any]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(folder, state_dict=state, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        (folder / "job.json").write_text(json.dumps(self.config.model_dump(), indent=2))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
