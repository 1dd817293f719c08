"""PPO's batches: which prompts a step takes, how prompt + response rows
are packed, which tokens are actions, and the log-probs and values read at
those actions (used by ppo.py; the formulas on them are in ppo_math.py)."""
from __future__ import annotations

import random
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor

from training_jobs import ppo_math
from training_jobs.pairs import sequence


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
    """A rollout with what PPO trains on, per action [B, R] unless noted."""

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
