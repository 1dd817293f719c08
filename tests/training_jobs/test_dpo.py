"""Stage dpo: the sigmoid loss and the response log-probs on hand-worked
tensors, the pair batch layout, and DPO through the CLI on the synthetic
preference set (full fine-tuning with a reference copy, and LoRA with the
adapter disabled as the reference)."""
from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.training_jobs.conftest import MARKER, PreferenceSet, base_config, run_job, write_config
from training_jobs.data import IGNORE_INDEX
from training_jobs.dpo import dpo_loss, sequence_logps
from training_jobs.pairs import Pair
from training_jobs.stages import collate_pairs

M = IGNORE_INDEX


def log_sigmoid(x: float) -> float:
    return -math.log(1 + math.exp(-x))


def test_dpo_loss_matches_the_hand_computed_value() -> None:
    # Pair 1: policy prefers chosen more than the reference does by 2 nats, x = (−4 − −5) − (−9 − −8) = 2.
    # Pair 2: it prefers rejected, x = (−6 − −6) − (−3 − −4) = −1.
    policy_chosen, policy_rejected = torch.tensor([-4.0, -6.0]), torch.tensor([-9.0, -3.0])
    reference_chosen, reference_rejected = torch.tensor([-5.0, -6.0]), torch.tensor([-8.0, -4.0])
    beta = 0.1

    loss, chosen_rewards, rejected_rewards = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta)
    assert float(loss) == pytest.approx(-(log_sigmoid(0.2) + log_sigmoid(-0.1)) / 2, rel=1e-6)
    assert chosen_rewards.tolist() == pytest.approx([0.1, 0.0])
    assert rejected_rewards.tolist() == pytest.approx([-0.1, 0.1])

    smoothed, _, _ = dpo_loss(policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta, 0.25)
    expected = [-0.75 * log_sigmoid(x) - 0.25 * log_sigmoid(-x) for x in (0.2, -0.1)]
    assert float(smoothed) == pytest.approx(sum(expected) / 2, rel=1e-6)


def test_sequence_logps_sums_only_labelled_tokens() -> None:
    vocab = 4
    logits = torch.zeros(2, 4, vocab)  # uniform: every token has log-prob −log 4 ...
    logits[1, 2] = torch.tensor([math.log(3.0), 0.0, 0.0, 0.0])  # ... except after row 1's third token: p(0) = 1/2
    labels = torch.tensor([[M, 1, 2, M], [M, M, 3, 0]])
    logps = sequence_logps(logits, labels)
    # Row 0: tokens 1 and 2 (predicted from positions 0 and 1). Row 1: token 3 (uniform), then token 0 at p = 3/6.
    assert logps.tolist() == pytest.approx([2 * -math.log(4), -math.log(4) + math.log(0.5)])


def test_pairs_batch_as_chosen_then_rejected_with_labels_on_the_response() -> None:
    pairs = [Pair(chosen=[7, 8, 9, 2], rejected=[7, 8, 2], prompt_length=2, rejected_prompt_length=2),
             Pair(chosen=[5, 2], rejected=[5, 6, 6, 6, 2], prompt_length=1, rejected_prompt_length=1)]
    batch = collate_pairs(pairs, pad_id=3)
    assert batch["input_ids"].tolist() == [[7, 8, 9, 2, 3], [5, 2, 3, 3, 3], [7, 8, 2, 3, 3], [5, 6, 6, 6, 2]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    # Prompt and padding masked; the response and its EOS counted.
    assert batch["labels"].tolist() == [[M, M, 9, 2, M], [M, 2, M, M, M], [M, M, 2, M, M], [M, 6, 6, 6, 2]]


def marker_first_probability(folder: Path) -> float:
    """P(the answer starts with MARKER) — chosen answers often do, rejected never."""
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
    prompt = tokenizer("User: 冰箱怎么样?\n\nBot: ", return_tensors="pt")
    (marker,) = tokenizer(MARKER, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(**prompt).logits[0, -1]
    return float(logits.softmax(-1)[marker])


def test_dpo_raises_reward_accuracy_and_writes_a_servable_model(
    tmp_path: Path, preference_set: PreferenceSet, sft_policy: Path
) -> None:
    from inference.base import GenerationRequest, SamplingParams
    from inference.config import BackendConfig, create_backend

    out = tmp_path / "out"
    config = base_config(
        sft_policy, preference_set.train, out, stage="dpo", eval_data=str(preference_set.eval),
        learning_rate=1e-3, global_batch_size=16, micro_batch_size=8, epochs=1, log_every=1, zero_stage=3,
    )
    run = run_job(write_config(tmp_path, config))
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = run.of("metrics")
    assert {"loss", "reward_margin", "reward_accuracy", "chosen_reward", "rejected_reward", "chosen_logps",
            "rejected_logps", "tokens_per_s"} <= set(metrics[0])
    # Step 1 runs the untouched policy: it equals the reference, every margin is 0.
    assert metrics[0]["reward_accuracy"] == 0 and metrics[0]["loss"] == pytest.approx(math.log(2), rel=1e-4)
    evaluation = run.of("eval")[-1]
    assert evaluation["reward_accuracy"] >= 0.9 and evaluation["reward_margin"] > 0, evaluation
    assert evaluation["eval_loss"] < math.log(2)
    done = json.loads((out / "metrics.json").read_text())
    assert done["stage"] == "dpo" and done["reward_accuracy"] == evaluation["reward_accuracy"]

    # The policy now starts answers with the marker more often than the SFT model did.
    assert marker_first_probability(out) > marker_first_probability(sft_policy)
    # A plain causal-LM folder: the local inference backend chats with it.
    backend = create_backend(BackendConfig(kind="local", model_path=str(out)))
    try:
        request = GenerationRequest(
            SamplingParams(max_new_tokens=8, decoder="greedy"), messages=({"role": "user", "content": "冰箱怎么样?"},)
        )
        completion = asyncio.run(backend.generate(request))
    finally:
        asyncio.run(backend.close())
    assert completion.completion_tokens > 0 and completion.text.strip()


def test_dpo_with_lora_uses_the_policy_without_its_adapter_as_reference(
    tmp_path: Path, preference_set: PreferenceSet, sft_policy: Path
) -> None:
    out = tmp_path / "out"
    config = base_config(
        sft_policy, preference_set.train, out, stage="dpo", learning_rate=1e-2, global_batch_size=16,
        micro_batch_size=8, max_steps=8, log_every=1, lora={"r": 8, "alpha": 16, "dropout": 0.0},
    )
    run = run_job(write_config(tmp_path, config))
    assert run.returncode == 0, run.stderr[-3000:]
    start = run.of("start")[0]
    assert 0 < start["trainable_params"] < start["params"] / 10
    metrics = run.of("metrics")
    # LoRA's B starts at zero, so at step 1 policy and adapter-free reference agree exactly.
    assert metrics[0]["reward_margin"] == 0 and metrics[0]["reward_accuracy"] == 0
    assert metrics[-1]["reward_margin"] > 0 and metrics[-1]["reward_accuracy"] > 0.5, metrics[-1]
    assert (out / "adapter" / "adapter_config.json").exists()
    assert AutoModelForCausalLM.from_pretrained(out, local_files_only=True).config.model_type == "bloom"
