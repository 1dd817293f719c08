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

This module is the loop; the batches are ppo_rollout.py's, the models
ppo_models.py's, checkpoints and the output folder ppo_saving.py's, and the
process-level parts (SIGTERM, checkpoint rotation) job.py's, shared with
trainer.py.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from training_jobs import ppo_math
from training_jobs.config import ConfigError
from training_jobs.data import EncodedData, collate, encode_corpus, plan_batches
from training_jobs.distributed import agree, all_max, all_sum, gathered
from training_jobs.engine import parameter_counts
from training_jobs.job import RunResult, TrainingJob, periodic
from training_jobs.pairs import encode_prompts
from training_jobs.ppo_models import DTYPES, PpoModels, build_models
from training_jobs.ppo_rollout import (
    Experience, action_logprobs, critic_values, cut_at_eos, pack, reward_sequence, step_prompts,
)
from training_jobs.ppo_saving import load_checkpoint, save_checkpoint, save_output
from training_jobs.reward import load_reward_model, score_batch
from training_jobs.rng import cuda_rng_state, rng_state, seed_everything, set_cuda_rng_state, set_rng_state
from training_jobs.stages import load_tokenizer


class PpoTrainer(TrainingJob):
    """The ppo stage's loop (`python -m training_jobs run` with stage ppo)."""

    models: PpoModels

    # -- set-up ------------------------------------------------------------------

    def _setup(self) -> None:
        from transformers import GenerationConfig

        config, ppo = self.config, self.config.ppo
        tokenizer = load_tokenizer(config.base_model)
        self.tokenizer = tokenizer
        self.eos_id, self.pad_id = int(tokenizer.eos_token_id), int(tokenizer.pad_token_id)

        reward_model, reward_tokenizer, reward_meta = load_reward_model(config.reward_model, DTYPES[config.precision])
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
        self.models = build_models(config, self.world, updates, reward_model)
        self.device = self.models.device

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
        lora = self.models.lora
        params, trainable_params = parameter_counts(self.models.actor.module)
        critic_params, _ = parameter_counts(self.models.critic.module)
        progress.emit(
            "start", total_steps=self.total_steps, world_size=self.world,
            params=params, trainable_params=trainable_params,
            critic_params=critic_params, stage="ppo", examples=len(self.prompts), dropped_rows=self.dropped,
            gradient_accumulation=self.grad_accum, resumed_from_step=start_step if resume else None,
            reference="actor base, adapter disabled" if lora else "frozen copy of base_model",
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
            stop = agree(self.stop_requested)
            if step % config.log_every == 0 or step == self.total_steps or stop:
                last = self._metrics(window, step, started, start_step)
                progress.emit("metrics", **last)
                window = {}
            if self.eval_prompts and periodic(config.eval_every, step, self.total_steps):
                last_eval = self._evaluate(step)
            cancelled = self._checkpoint_after(step, self.total_steps, stop)
            if cancelled is not None:
                return cancelled
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
            "ema": bool(self.models.ema is not None),
        }
        save_output(self.models, config, self.tokenizer, self.output_dir, self.rank, metrics)
        progress.emit("done", output_dir=str(self.output_dir), metrics=metrics)
        return RunResult(0, metrics)

    def _step(self, step: int) -> dict[str, float]:
        """One PPO iteration; returns this window's sums (all ranks)."""
        config, models = self.config, self.models
        began = time.monotonic()
        chosen = step_prompts(len(self.prompts), config.seed, step, config.global_batch_size)
        prompts = [self.prompts[i] for i in chosen[self.rank :: self.world]]
        responses = self.generate(prompts)
        generated = time.monotonic()
        experience = self.make_experience(prompts, responses)
        scored = time.monotonic()
        stats = self.train_on(experience)
        if models.ema is not None:
            with gathered(models.trainable, config.zero_stage):
                ppo_math.ema_update(models.ema, models.trainable, config.ppo.ema_decay)
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
        return dict(zip(keys, all_sum([local[k] for k in keys])))

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
            "loss": window["actor_loss"] / micro, "lr": self.models.actor_scheduler.get_last_lr()[0],
            "critic_lr": self.models.critic_scheduler.get_last_lr()[0],
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
        module = self.models.actor.module
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
        ppo, models = self.config.ppo, self.models
        actor, critic, reference = models.actor, models.critic, models.reference
        rollout = pack(prompts, responses, self.pad_id)
        parts: dict[str, list[Tensor]] = {"logprobs": [], "ref_logprobs": [], "values": []}
        actor.eval()
        critic.eval()
        for start in range(0, len(prompts), self.config.micro_batch_size):
            batch = rollout.rows(start, start + self.config.micro_batch_size).to(self.device)
            parts["logprobs"].append(action_logprobs(actor, batch, ppo.temperature))
            if reference is None:
                with actor.module.disable_adapter():
                    parts["ref_logprobs"].append(action_logprobs(actor, batch, ppo.temperature))
            else:
                on_ref = batch.to(next(reference.parameters()).device)
                parts["ref_logprobs"].append(action_logprobs(reference, on_ref, ppo.temperature).to(self.device))
            parts["values"].append(critic_values(critic, batch))
        actor.train()
        critic.train()
        sequences = [reward_sequence(p, r, self.eos_id, self.config.max_length) for p, r in zip(prompts, responses)]
        scores = torch.tensor(score_batch(models.reward_model, sequences, self.pad_id), dtype=torch.float32, device=self.device)
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
        actor, critic = self.models.actor, self.models.critic
        sums = {"actor_loss": 0.0, "critic_loss": 0.0, "ptx_loss": 0.0, "clip_fraction": 0.0, "micro_batches": 0.0}
        rows = experience.rollout.input_ids.shape[0]
        for _ in range(ppo.ppo_epochs):
            for index, start in enumerate(range(0, rows, size)):
                part = experience.rows(start, start + size)
                batch = part.rollout
                logprobs = action_logprobs(actor, batch, ppo.temperature)
                actor_loss, clip_fraction = ppo_math.actor_loss(
                    logprobs, part.logprobs, part.advantages, batch.mask, ppo.clip_ratio
                )
                loss = actor_loss
                if self.ptx is not None:
                    ptx_loss = self._ptx_loss(index)
                    loss = loss + ppo.ptx_coef * ptx_loss
                    sums["ptx_loss"] += float(ptx_loss.detach())
                actor.backward(loss)
                actor.step()
                values = critic_values(critic, batch)
                critic_loss = ppo_math.critic_loss(values, part.values, part.returns, batch.mask, ppo.clip_value)
                critic.backward(critic_loss)
                critic.step()
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
        micro = self.models.actor.global_steps * self.grad_accum + index  # this rank's micro-batches so far
        ptx_epoch, offset = divmod(micro * self.world + self.rank, self.ptx_batches)
        if self._ptx_plan[0] != ptx_epoch:
            lengths = [len(e.input_ids) for e in self.ptx.examples]
            self._ptx_plan = (ptx_epoch, plan_batches(lengths, self.config.micro_batch_size, self.config.seed, ptx_epoch, False))
        batch = collate([self.ptx.examples[i] for i in self._ptx_plan[1][offset]], self.pad_id)
        return self.models.actor(**{k: v.to(self.device) for k, v in batch.items()}).loss

    # -- evaluation --------------------------------------------------------------

    @torch.no_grad()
    def _evaluate(self, step: int) -> dict[str, Any]:
        """Mean reward of sampled responses to the eval prompts. Ranks take
        every world-th prompt and run the same number of batches (ZeRO-3
        collectives); the training RNG is put back afterwards so evaluating
        does not change the training run."""
        saved, cuda_state = rng_state(), cuda_rng_state()
        mine = self.eval_prompts[self.rank :: self.world]
        size = self.share
        batches = int(all_max(float(math.ceil(len(mine) / size))))
        total, square, count, length = 0.0, 0.0, 0.0, 0.0
        for index in range(batches):
            prompts = mine[index * size : (index + 1) * size]
            real = len(prompts)
            if not prompts:  # keep in step with the other ranks; results unused
                prompts = [self.eval_prompts[0]]
            responses = self.generate(prompts)
            sequences = [reward_sequence(p, r, self.eos_id, self.config.max_length) for p, r in zip(prompts, responses)]
            scores = score_batch(self.models.reward_model, sequences, self.pad_id)[:real]
            total += sum(scores)
            square += sum(s * s for s in scores)
            count += real
            length += sum(len(r) - (1 if r and r[-1] == self.eos_id else 0) for r in responses[:real])
        set_rng_state(saved)
        set_cuda_rng_state(cuda_state)
        total, square, count, length = all_sum([total, square, count, length])
        mean = total / max(count, 1.0)
        result = {
            "step": step, "reward_mean": mean, "reward_std": math.sqrt(max(square / max(count, 1.0) - mean * mean, 0.0)),
            "response_length": length / max(count, 1.0), "examples": int(count),
        }
        self._emit("eval", **result)
        return result

    # -- checkpoints (ppo_saving.py) -------------------------------------------------

    def _save_checkpoint(self, step: int) -> None:
        folder = self.checkpoint_dir / f"step-{step}"
        save_checkpoint(self.models, folder, step, self.rank)
        if self.rank == 0:
            (self.checkpoint_dir / "latest").write_text(folder.name)
        self._checkpoint_saved(step, folder)

    def _load_checkpoint(self) -> int:
        if not self._has_checkpoint():
            return 0
        return load_checkpoint(self.models, self.checkpoint_dir / (self.checkpoint_dir / "latest").read_text().strip())
