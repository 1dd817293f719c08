"""The PPO formulas, as pure tensor functions (no models, no DeepSpeed).

Layout: every tensor here is in *response space*, [batch, R]: column j is the
j-th sampled token of a row (its j-th action). `logprobs[:, j]` is
log π(a_j | prompt, a_<j), `values[:, j]` the critic's value of the state in
which a_j was chosen, and `mask[:, j]` is 1 for the row's actions — the
response tokens up to and including the EOS that ended it (all sampled tokens
when it hit the length limit) — and 0 after. Every row's mask is a prefix.

Sources: DeepSpeed-Chat, dschat/rlhf/ppo_trainer.py (`compute_rewards`,
`get_advantages_and_returns`, `actor_loss_fn`, `critic_loss_fn`,
`moving_average`), with the fixes the issue lists: the episode ends at the
EOS inclusive (the seed's copy was off by one), rewards and values after the
end are 0, and a row with no action (or a batch of them) gives zeros instead
of a division by zero; GAE from Schulman et al. 2016 ("High-Dimensional
Continuous Control Using Generalized Advantage Estimation", eq. 16); the
clipped surrogate from Schulman et al. 2017 (PPO, eq. 7); the per-token KL
penalty and clipped value loss as in InstructGPT (Ouyang et al. 2022, eq. 2)
and OpenAI's baselines `ppo2`.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor


def response_mask(responses: Tensor, eos_id: int) -> Tensor:
    """[B, R] long: 1 on each row's tokens up to and including its first EOS
    (every token when it has none), 0 after — whatever fills the tail (pad,
    or EOS again when pad == eos)."""
    is_eos = (responses == eos_id).long()
    # Strictly after the first EOS: an EOS occurred before this column.
    before = is_eos.cumsum(-1) - is_eos
    return (before == 0).long()


def lengths(mask: Tensor) -> Tensor:
    """Actions per row (the mask is a prefix)."""
    return mask.long().sum(-1)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean over the masked entries; 0 when there are none (an all-empty
    batch must not become NaN)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def logprobs_of(logits: Tensor, tokens: Tensor, temperature: float = 1.0) -> Tensor:
    """log π(token) under softmax(logits / temperature): logits [B, R, V],
    tokens [B, R] → [B, R]. The sampling temperature is part of the policy
    that acted, so the ratio and the KL use it too."""
    if temperature != 1.0:
        logits = logits / temperature
    logp = torch.log_softmax(logits.float(), dim=-1)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def kl_rewards(
    logprobs: Tensor, ref_logprobs: Tensor, scores: Tensor, mask: Tensor, kl_coef: float, clip_reward: float
) -> Tensor:
    """Per-token rewards [B, R] (DeepSpeed-Chat `compute_rewards`; InstructGPT
    eq. 2): r_t = −kl_coef · (log π_t − log π_ref_t) on every action, plus
    clip(score, −clip_reward, clip_reward) on the row's last action (its EOS,
    or its last token when it hit the length limit); 0 after the end. A row
    without actions gets no score: there is no action to credit."""
    mask_f = mask.to(logprobs.dtype)
    rewards = -kl_coef * (logprobs - ref_logprobs) * mask_f
    count = lengths(mask)
    if rewards.shape[1] == 0:
        return rewards
    last = (count - 1).clamp(min=0).unsqueeze(1)
    bonus = scores.to(rewards.dtype).clamp(-clip_reward, clip_reward) * (count > 0).to(rewards.dtype)
    return rewards.scatter_add(1, last, bonus.unsqueeze(1))


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """(advantages, returns), both [B, R] (GAE paper eq. 16; DeepSpeed-Chat
    `get_advantages_and_returns`):
        δ_t = r_t + γ·V_{t+1} − V_t,   A_t = δ_t + γ·λ·A_{t+1},   R_t = A_t + V_t,
    with rewards and values zeroed after each row's end, so V after the last
    action is 0 (the episode ends at EOS or at the length limit) and A, R are 0
    there. Both are detached: they are targets."""
    mask_f = mask.to(values.dtype)
    rewards = rewards.detach() * mask_f
    values = values.detach() * mask_f
    width = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0]) if width else None
    for t in reversed(range(width)):
        next_value = values[:, t + 1] if t + 1 < width else torch.zeros_like(values[:, t])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages, advantages + values


def actor_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, mask: Tensor, clip_ratio: float
) -> tuple[Tensor, Tensor]:
    """(loss, clip fraction). PPO's clipped surrogate (PPO paper eq. 7;
    DeepSpeed-Chat `actor_loss_fn`), as a loss:
        ρ = exp(log π − log π_old),  loss = mean_t max(−A·ρ, −A·clip(ρ, 1 − c, 1 + c))
    over the actions. The clip fraction is the share of actions with
    |ρ − 1| > c (baselines' `clipfrac`)."""
    mask_f = mask.to(logprobs.dtype)
    ratio = torch.exp((logprobs - old_logprobs) * mask_f)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_ratio, 1.0 + clip_ratio)
    loss = masked_mean(torch.max(unclipped, clipped), mask_f)
    clip_fraction = masked_mean(((ratio - 1.0).abs() > clip_ratio).to(logprobs.dtype), mask_f)
    return loss, clip_fraction.detach()


def critic_loss(values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_value: float) -> Tensor:
    """Clipped value loss (DeepSpeed-Chat `critic_loss_fn`; baselines ppo2):
        loss = 0.5 · mean_t max((V − R)², (clip(V, V_old − c, V_old + c) − R)²)
    over the actions."""
    clipped = torch.max(torch.min(values, old_values + clip_value), old_values - clip_value)
    worst = torch.max((values - returns) ** 2, (clipped - returns) ** 2)
    return 0.5 * masked_mean(worst, mask)


@torch.no_grad()
def ema_update(ema: Iterable[Tensor], params: Iterable[Tensor], decay: float) -> None:
    """ema ← decay·ema + (1 − decay)·param, in place (DeepSpeed-Chat
    `moving_average`; the seed's decay is 0.992)."""
    for average, param in zip(ema, params, strict=True):
        average.mul_(decay).add_(param.detach().to(average.device, average.dtype), alpha=1.0 - decay)
