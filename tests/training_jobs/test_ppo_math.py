"""The PPO formulas (training_jobs/ppo_math.py) against numbers worked out by
hand in the comments: masks, per-token rewards with the KL penalty, GAE,
the clipped actor and critic losses, the EMA update."""
from __future__ import annotations

import math

import pytest
import torch

from training_jobs import ppo_math

EOS = 2


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def test_mask_covers_the_response_up_to_and_including_its_first_eos() -> None:
    responses = torch.tensor([
        [5, 6, EOS, 3, 3],  # ended by EOS, then padding
        [EOS, 3, 3, 3, 3],  # empty answer: the EOS is its only action
        [5, 6, 7, 8, 9],  # hit the length limit: every token is an action
        [EOS, EOS, EOS, EOS, EOS],  # pad == eos: only the first EOS counts
        [7, EOS, 9, EOS, 4],  # tokens after the first EOS are not actions
    ])
    assert ppo_math.response_mask(responses, EOS).tolist() == [
        [1, 1, 1, 0, 0],
        [1, 0, 0, 0, 0],
        [1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
    ]


def test_logprobs_use_the_sampling_temperature() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)]]])
    tokens = torch.tensor([[1]])
    # softmax([0, ln 3]) = [1/4, 3/4]
    assert ppo_math.logprobs_of(logits, tokens).item() == pytest.approx(math.log(0.75))
    # At temperature 2 the logits are [0, ln 3 / 2]: p = √3 / (1 + √3)
    assert ppo_math.logprobs_of(logits, tokens, 2.0).item() == pytest.approx(math.log(math.sqrt(3) / (1 + math.sqrt(3))))


def test_rewards_are_the_kl_penalty_plus_the_clipped_score_on_the_last_action() -> None:
    logprobs = t([[-1.0, -2.0, -0.5, -3.0], [-1.0, -4.0, -4.0, -4.0], [-1.0, -1.0, -1.0, -1.0]])
    ref = t([[-1.5, -2.0, -1.0, -0.1], [-1.2, -9.0, -9.0, -9.0], [-3.0, -3.0, -3.0, -3.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    scores = torch.tensor([7.0, -2.0, 3.0], dtype=torch.float64)
    rewards = ppo_math.kl_rewards(logprobs, ref, scores, mask, kl_coef=0.1, clip_reward=5.0)
    # Row 0: −0.1·(0.5, 0, 0.5) on its three actions; the score 7 is clipped
    # to 5 and lands on the third (its last action); the fourth is past the end.
    # Row 1: one action: −0.1·0.2 − 2 = −2.02.  Row 2: no action, no reward.
    expected = t([[-0.05, 0.0, -0.05 + 5.0, 0.0], [-2.02, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(rewards, expected)


def test_gae_over_the_response_with_zeros_after_the_end() -> None:
    rewards = t([[0.1, -0.2, 1.0, 9.0], [2.0, 5.0, 5.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
    values = t([[0.5, 0.4, 0.3, 7.0], [0.5, 1.0, 1.0, 1.0], [3.0, 3.0, 3.0, 3.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    advantages, returns = ppo_math.gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # Row 0 (the values and rewards past the end are ignored: V_3 = 0):
    #   t=2: δ = 1.0 + 0 − 0.3 = 0.7;           A = 0.7
    #   t=1: δ = −0.2 + 0.3 − 0.4 = −0.3;       A = −0.3 + 0.95·0.7 = 0.365
    #   t=0: δ = 0.1 + 0.4 − 0.5 = 0.0;         A = 0.95·0.365 = 0.34675
    # Row 1: one action: A = 2.0 − 0.5 = 1.5.  Row 2: nothing.
    torch.testing.assert_close(advantages, t([[0.34675, 0.365, 0.7, 0.0], [1.5, 0.0, 0.0, 0.0], [0.0] * 4]))
    # R = A + V on the actions, 0 after.
    torch.testing.assert_close(returns, t([[0.84675, 0.765, 1.0, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0] * 4]))


def test_gae_discounts_with_gamma_and_lambda() -> None:
    rewards, values = t([[1.0, 2.0]]), t([[1.0, 1.0]])
    advantages, returns = ppo_math.gae(rewards, values, torch.ones(1, 2), gamma=0.5, lam=0.5)
    # t=1: δ = 2 − 1 = 1, A = 1;  t=0: δ = 1 + 0.5·1 − 1 = 0.5, A = 0.5 + 0.25·1 = 0.75
    torch.testing.assert_close(advantages, t([[0.75, 1.0]]))
    torch.testing.assert_close(returns, t([[1.75, 2.0]]))


def test_actor_loss_takes_the_pessimistic_clipped_term() -> None:
    ratios = t([[1.5, 0.5, 1.1, 0.7]])
    old = t([[-1.0, -2.0, -0.5, -1.0]])
    logprobs = old + ratios.log()
    advantages = t([[1.0, 1.0, -2.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, clip_fraction = ppo_math.actor_loss(logprobs, old, advantages, mask, clip_ratio=0.2)
    # ρ=1.5, A=1:  max(−1.5, −1.2) = −1.2  (clipped)
    # ρ=0.5, A=1:  max(−0.5, −0.8) = −0.5
    # ρ=1.1, A=−2: max(2.2, 2.2)   = 2.2
    # the fourth token is past the end.  mean = (−1.2 − 0.5 + 2.2) / 3
    assert loss.item() == pytest.approx(0.5 / 3)
    # |ρ − 1| > 0.2 on the first two of three actions
    assert clip_fraction.item() == pytest.approx(2 / 3)


def test_actor_loss_gradient_vanishes_where_the_ratio_is_clipped() -> None:
    old = t([[0.0, 0.0]])
    logprobs = (old + t([[1.5, 1.1]]).log()).requires_grad_(True)
    loss, _ = ppo_math.actor_loss(logprobs, old, t([[1.0, 1.0]]), torch.ones(1, 2), clip_ratio=0.2)
    loss.backward()
    # d/dlogπ of −A·ρ/2 is −ρ/2 inside the clip range (1.1), 0 outside (1.5)
    torch.testing.assert_close(logprobs.grad, t([[0.0, -0.55]]))


def test_critic_loss_clips_values_around_the_old_ones() -> None:
    values = t([[1.0, 2.0, 0.0, 9.0]])
    old = t([[0.5, 2.1, 0.5, 9.0]])
    returns = t([[1.2, 1.0, 1.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss = ppo_math.critic_loss(values, old, returns, mask, clip_value=0.2)
    # t0: V=1.0 clipped to 0.7: max((1−1.2)², (0.7−1.2)²) = max(0.04, 0.25) = 0.25
    # t1: V=2.0 within [1.9, 2.3]: (2 − 1)² = 1
    # t2: V=0.0 clipped to 0.3: max((0−1)², (0.3−1)²) = max(1, 0.49) = 1
    # 0.5 · mean = 0.5 · 2.25 / 3
    assert loss.item() == pytest.approx(0.375)


def test_losses_of_a_batch_without_actions_are_zero_not_nan() -> None:
    zeros = torch.zeros(3, 1, requires_grad=True)
    mask = torch.zeros(3, 1, dtype=torch.long)
    loss, clip_fraction = ppo_math.actor_loss(zeros, zeros.detach(), zeros.detach(), mask, 0.2)
    value_loss = ppo_math.critic_loss(zeros, zeros.detach(), zeros.detach(), mask, 0.2)
    (loss + value_loss).backward()  # a graph that gives zero gradients, not an error
    assert loss.item() == 0.0 and clip_fraction.item() == 0.0 and value_loss.item() == 0.0
    assert zeros.grad is not None and not zeros.grad.any()
    rewards = ppo_math.kl_rewards(zeros.detach(), zeros.detach(), torch.tensor([1.0, 2.0, 3.0]), mask, 0.1, 5.0)
    advantages, returns = ppo_math.gae(rewards, zeros.detach(), mask, 1.0, 0.95)
    assert not rewards.any() and not advantages.any() and not returns.any()
    empty = torch.zeros(2, 0)  # zero-width responses
    assert ppo_math.gae(empty, empty, empty.long(), 1.0, 0.95)[0].shape == (2, 0)
    assert ppo_math.kl_rewards(empty, empty, torch.ones(2), empty.long(), 0.1, 5.0).shape == (2, 0)


def test_ema_update_is_exact() -> None:
    ema = [torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([[0.0]], dtype=torch.float64)]
    params = [torch.tensor([3.0, -2.0], dtype=torch.float64), torch.tensor([[10.0]], dtype=torch.float64)]
    ppo_math.ema_update(ema, params, decay=0.992)
    # 0.992·1 + 0.008·3 = 1.016;  0.992·2 + 0.008·(−2) = 1.968;  0.008·10 = 0.08
    torch.testing.assert_close(ema[0], torch.tensor([1.016, 1.968], dtype=torch.float64), rtol=0, atol=1e-15)
    torch.testing.assert_close(ema[1], torch.tensor([[0.08]], dtype=torch.float64), rtol=0, atol=1e-15)
    ppo_math.ema_update(ema, params, decay=0.992)
    # 0.992·1.016 + 0.024 = 1.031872;  0.992·1.968 − 0.016 = 1.936256
    torch.testing.assert_close(ema[0], torch.tensor([1.031872, 1.936256], dtype=torch.float64), rtol=0, atol=1e-15)
    # A float32 average of bf16 parameters is updated in its own precision.
    low = [torch.zeros(2)]
    ppo_math.ema_update(low, [torch.tensor([1.0, 2.0], dtype=torch.bfloat16)], decay=0.75)
    assert low[0].dtype == torch.float32 and low[0].tolist() == [0.25, 0.5]
