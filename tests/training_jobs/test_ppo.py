"""Stage ppo: the pieces that decide which tokens are actions and where the
reward is read (in-process, tiny models), and real PPO runs on DeepSpeed
through the CLI (CPU, gloo): the reward rises with KL bounded, an all-empty
batch trains, SIGTERM checkpoints and --resume finishes, and the outputs
chat through the local inference backend."""
from __future__ import annotations

import asyncio
import copy
import json
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.training_jobs.conftest import ITEMS, JobRun, base_config, run_job, run_until_sigterm, write_config, write_jsonl
from training_jobs import ppo_math
from training_jobs.config import DEFAULT_PROMPT_TEMPLATE
from training_jobs.pairs import prompt_ids, response_ids
from training_jobs.ppo_models import merged_state_dict
from training_jobs.ppo_rollout import action_logprobs, cut_at_eos, pack, reward_sequence, step_prompts
from training_jobs.progress import read_events
from training_jobs.reward import load_reward_model, score, score_batch

# The policy is SFT-trained to give one of two answers, half and half; the
# reward model prefers GOOD. PPO can raise the reward by shifting
# probability to an answer the policy already gives.
GOOD, BAD = "推荐购买。", "不推荐。"


@dataclass(frozen=True)
class Rlhf:
    policy: Path
    reward: Path
    prompts: Path
    eval_prompts: Path


def _pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    return ids, mask


@pytest.fixture(scope="module")
def rlhf(tmp_path_factory: pytest.TempPathFactory) -> Rlhf:
    """A tiny BLOOM SFT-trained on GOOD and BAD answers alike, and a reward
    model (from that policy) trained on GOOD ≻ BAD with the pairwise loss —
    a few seconds in-process. (The shared `trained_reward_model` fixture's
    marker task is too subtle for a tiny policy to climb in a few PPO steps.)"""
    from training_jobs.data import collate, encode_instructions
    from training_jobs.pairs import encode_preferences
    from training_jobs.reward import build_reward_model, pairwise_loss, save_reward_model
    from training_jobs.tiny import TinyModelSpec, make_tiny_model

    folder = tmp_path_factory.mktemp("rlhf")
    make_tiny_model(TinyModelSpec(arch="bloom", seed=0), folder / "base")
    tokenizer = AutoTokenizer.from_pretrained(folder / "base")
    prompts = [f"{item}怎么样?" for item in ITEMS]
    sft = write_jsonl(folder / "sft.jsonl", [{"prompt": p, "response": a} for p in prompts for a in (GOOD, BAD)])
    pairs = write_jsonl(folder / "pairs.jsonl", [{"prompt": p, "chosen": GOOD, "rejected": BAD} for p in prompts])

    threads = torch.get_num_threads()
    # One thread: a tiny model gains nothing from two, and on a busy 2-core
    # machine OpenMP's spinning threads make each step ~8x slower.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(folder / "base")
    examples = encode_instructions(sft, tokenizer, DEFAULT_PROMPT_TEMPLATE, 64).examples
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    for step in range(60):
        loss = policy(**collate(random.Random(step).sample(examples, 8), tokenizer.pad_token_id)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    policy.save_pretrained(folder / "policy")
    tokenizer.save_pretrained(folder / "policy")

    reward = build_reward_model(folder / "policy")
    encoded = encode_preferences(pairs, tokenizer, DEFAULT_PROMPT_TEMPLATE, 64).pairs
    optimizer = torch.optim.AdamW(reward.parameters(), lr=1e-3)
    chosen, chosen_mask = _pad([p.chosen for p in encoded], tokenizer.pad_token_id)
    rejected, rejected_mask = _pad([p.rejected for p in encoded], tokenizer.pad_token_id)
    for _ in range(30):
        loss, _, _ = pairwise_loss(
            reward(chosen, chosen_mask), reward(rejected, rejected_mask), chosen, rejected, chosen_mask, rejected_mask
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    save_reward_model(reward, tokenizer, folder / "reward", prompt_template=DEFAULT_PROMPT_TEMPLATE, max_length=64)
    torch.set_num_threads(threads)
    return Rlhf(
        folder / "policy", folder / "reward",
        write_jsonl(folder / "prompts.jsonl", [{"prompt": p} for p in prompts]),
        write_jsonl(folder / "eval.jsonl", [{"prompt": p} for p in prompts[:4]]),
    )


def ppo_config(rlhf: Rlhf, out: Path, policy: Path | None = None, **overrides: Any) -> dict[str, Any]:
    # Four passes over each batch (the seed uses one): ρ moves away from 1
    # after the first optimizer step, so the clipping is exercised too.
    ppo = {"prompt_length": 16, "response_length": 12, "critic_learning_rate": 2e-3, "ppo_epochs": 4, **overrides.pop("ppo", {})}
    settings = {
        "stage": "ppo", "reward_model": str(rlhf.reward), "max_length": 32, "global_batch_size": 16, "micro_batch_size": 8,
        "learning_rate": 1e-2, "lr_scheduler": "constant", "max_steps": 10, "ppo": ppo, **overrides,
    }
    return base_config(policy or rlhf.policy, rlhf.prompts, out, **settings)


# --- where the actions are and where the reward is read ------------------------


def test_pack_places_each_response_after_its_own_prompt() -> None:
    rollout = pack([[10, 11], [12], [13, 14, 15]], [[20, 2], [], [21]], pad_id=0)
    assert rollout.input_ids.tolist() == [[10, 11, 20, 2], [12, 0, 0, 0], [13, 14, 15, 21]]
    assert rollout.attention_mask.tolist() == [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]
    # The logits at prompt_length − 1 + j predict response token j.
    assert rollout.positions.tolist() == [[1, 2], [0, 0], [2, 0]]
    assert rollout.actions.tolist() == [[20, 2], [0, 0], [21, 0]]
    assert rollout.mask.tolist() == [[1, 1], [0, 0], [1, 0]]


def test_responses_end_at_their_first_eos_inclusive() -> None:
    assert cut_at_eos([5, 6, 2, 3, 3], 2) == [5, 6, 2]
    assert cut_at_eos([2, 2, 2], 2) == [2]  # an empty answer: its EOS is the one action
    assert cut_at_eos([5, 6, 7], 2) == [5, 6, 7]  # the length limit: no EOS


def test_step_prompts_visit_every_prompt_once_per_epoch_and_replay_the_same() -> None:
    steps = [step_prompts(10, 3, step, 4) for step in range(5)]
    flat = [i for batch in steps for i in batch]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))
    assert flat[:10] != flat[10:20]  # reshuffled each epoch
    assert step_prompts(10, 3, 3, 4) == steps[3]  # a pure function of the step (what --resume relies on)


def test_the_score_is_read_at_the_eos_reward_training_scored(rlhf: Rlhf) -> None:
    """PPO renders `prompt + response + EOS` as rm training does, so its score
    equals reward.score() of the same texts — whether the sampled response
    ended with its EOS or was cut at the length limit."""
    model, tokenizer, _ = load_reward_model(rlhf.reward)
    eos = tokenizer.eos_token_id
    prompt = prompt_ids([{"role": "user", "content": "冰箱怎么样?"}], tokenizer, DEFAULT_PROMPT_TEMPLATE)
    expected = score(rlhf.reward, ["冰箱怎么样?", "冰箱怎么样?"], [GOOD, BAD])
    for response, value in zip((GOOD, BAD), expected):
        answer = response_ids(response, tokenizer)
        ended = reward_sequence(prompt, answer + [eos], eos, 32)
        cut = reward_sequence(prompt, answer, eos, 32)
        assert ended == cut == prompt + answer + [eos]
        assert score_batch(model, [ended], tokenizer.pad_token_id)[0] == pytest.approx(value, abs=1e-5)
    assert expected[0] > expected[1] + 1.0  # the reward model learned GOOD ≻ BAD


def test_action_logprobs_equal_those_of_the_generation(rlhf: Rlhf) -> None:
    """The repacked, right-padded forward gives each sampled token the
    log-probability the left-padded generation drew it with."""
    model = AutoModelForCausalLM.from_pretrained(rlhf.policy).eval()
    tokenizer = AutoTokenizer.from_pretrained(rlhf.policy)
    prompts = [
        prompt_ids([{"role": "user", "content": text}], tokenizer, DEFAULT_PROMPT_TEMPLATE)
        for text in ("冰箱怎么样?", "扫地机器人好用吗，值得买吗?")
    ]
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    torch.manual_seed(1)
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, max_new_tokens=10, output_logits=True,
            return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        )
    generated = out.sequences[:, width:]
    responses = [cut_at_eos(row, tokenizer.eos_token_id) for row in generated.tolist()]
    expected = torch.log_softmax(torch.stack(out.logits, dim=1).float(), -1).gather(-1, generated.unsqueeze(-1)).squeeze(-1)
    rollout = pack(prompts, responses, tokenizer.pad_token_id)
    with torch.no_grad():
        got = action_logprobs(model, rollout, 1.0)
    for row, response in enumerate(responses):
        torch.testing.assert_close(got[row, : len(response)], expected[row, : len(response)], rtol=1e-4, atol=1e-4)


def test_a_batch_of_zero_length_responses_gives_zero_losses(rlhf: Rlhf) -> None:
    model = AutoModelForCausalLM.from_pretrained(rlhf.policy)
    rollout = pack([[5, 6], [7]], [[], []], pad_id=3)
    logprobs = action_logprobs(model, rollout, 1.0)
    rewards = ppo_math.kl_rewards(logprobs.detach(), logprobs.detach(), torch.tensor([4.0, -4.0]), rollout.mask, 0.1, 5.0)
    advantages, _ = ppo_math.gae(rewards, torch.zeros_like(rewards), rollout.mask, 1.0, 0.95)
    loss, _ = ppo_math.actor_loss(logprobs, logprobs.detach(), advantages, rollout.mask, 0.2)
    loss.backward()
    assert loss.item() == 0.0 and math.isfinite(loss.item())


def test_merged_state_dict_equals_merge_and_unload(tiny_bloom: Path) -> None:
    """The EMA folder is written from merged_state_dict: it must be the
    state merge_and_unload() would give (same keys, W + scale·B·A)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_bloom),
        LoraConfig(r=4, lora_alpha=8, target_modules=["query_key_value"], task_type="CAUSAL_LM"),
    )
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_()  # B starts at 0: give the delta something to add
    merged = merged_state_dict(model, lora=True)
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(merged[key], value, msg=key)


# --- real runs through the CLI ---------------------------------------------------


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_job() -> Any:
    """The jobs below are tiny-model runs: one OpenMP thread each (see rlhf)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def ppo_run(rlhf: Rlhf, tmp_path_factory: pytest.TempPathFactory) -> tuple[JobRun, Path]:
    """One PPO run with the stage defaults (LoRA r=32, EMA), shared by the
    tests that read its events and its output; it leaves a checkpoint at
    step 5."""
    folder = tmp_path_factory.mktemp("ppo")
    config = ppo_config(rlhf, folder / "out", eval_data=str(rlhf.eval_prompts), save_every=5)
    run = run_job(write_config(folder, config))
    assert run.returncode == 0, run.stderr[-3000:]
    return run, folder / "out"


def test_ppo_raises_the_reward_while_kl_stays_bounded(ppo_run: tuple[JobRun, Path]) -> None:
    run, _ = ppo_run
    start = run.of("start")[0]
    assert start["stage"] == "ppo" and start["total_steps"] == 10 and start["reference"].startswith("actor base")
    assert 0 < start["trainable_params"] < start["params"] / 3  # LoRA by default
    metrics = run.of("metrics")
    assert [m["step"] for m in metrics] == list(range(1, 11))
    for m in metrics:
        assert {"loss", "lr", "reward_mean", "reward_std", "kl", "actor_loss", "critic_loss", "clip_fraction",
                "response_length", "generation_share", "elapsed_s", "eta_s", "tokens_per_s"} <= set(m)
        assert m["loss"] == m["actor_loss"] and 0 < m["generation_share"] < 1 and 0 < m["response_length"] <= 12
    rewards = [m["reward_mean"] for m in metrics]
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the actor starts as the reference
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 1.0, rewards
    # The KL penalty keeps the policy near the reference (~0.2–0.7 nats per
    # token here; an unpenalised run drifts much further).
    assert max(m["kl"] for m in metrics) < 1.5, [m["kl"] for m in metrics]
    assert metrics[0]["clip_fraction"] > 0  # passes 2–4 see ρ ≠ 1
    evaluation = run.of("eval")[-1]
    assert evaluation["step"] == 10 and evaluation["examples"] == 4 and evaluation["reward_mean"] is not None
    done = run.of("done")[0]
    assert done["metrics"]["reward_mean"] == rewards[-1]


def test_ppo_outputs_chat_through_the_local_backend(ppo_run: tuple[JobRun, Path]) -> None:
    from inference.base import GenerationRequest, SamplingParams
    from inference.config import BackendConfig, create_backend

    _, out = ppo_run
    assert (out / "adapter" / "adapter_config.json").exists()
    assert json.loads((out / "job.json").read_text())["stage"] == "ppo"
    assert json.loads((out / "ema" / "metrics.json").read_text()) == json.loads((out / "metrics.json").read_text())

    async def chat(folder: Path) -> str:
        backend = create_backend(BackendConfig(kind="local", model_path=str(folder)))
        try:
            request = GenerationRequest(
                SamplingParams(max_new_tokens=12, decoder="greedy"), messages=({"role": "user", "content": "冰箱怎么样?"},)
            )
            return (await backend.generate(request)).text
        finally:
            await backend.close()

    answers = {name: asyncio.run(chat(folder)) for name, folder in (("actor", out), ("ema", out / "ema"))}
    # The trained actor gives the answer the reward model prefers.
    assert answers["actor"] == GOOD, answers
    assert answers["ema"] in (GOOD, BAD), answers  # the average moved less, but it is the same kind of model
    ema = AutoModelForCausalLM.from_pretrained(out / "ema")
    actor = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(json.loads((out / "job.json").read_text())["base_model"])
    ids = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        logits = {name: m(ids).logits for name, m in (("ema", ema), ("actor", actor), ("base", base))}
    # With decay 0.992 over 10 steps the EMA sits ~8% of the way from the base to the actor.
    moved = (logits["actor"] - logits["base"]).abs().mean()
    ema_moved = (logits["ema"] - logits["base"]).abs().mean()
    assert 0 < ema_moved < 0.5 * moved


def test_resume_replays_the_uninterrupted_run(ppo_run: tuple[JobRun, Path], tmp_path: Path) -> None:
    """From the step-5 checkpoint (actor adapter, critic, optimizers, EMA, RNG)
    the resumed run samples the same responses and takes the same steps."""
    run, out = ppo_run
    config = json.loads((out / "job.json").read_text())
    config["output_dir"] = str(tmp_path / "out")
    shutil.copytree(out / "checkpoints", tmp_path / "out" / "checkpoints")
    assert (tmp_path / "out" / "checkpoints" / "latest").read_text() == "step-5"
    resumed = run_job(write_config(tmp_path, config), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.of("start")[0]["resumed_from_step"] == 5
    before = {m["step"]: m for m in run.of("metrics")}
    after = resumed.of("metrics")
    assert [m["step"] for m in after] == [6, 7, 8, 9, 10]
    for m in after:
        for key in ("reward_mean", "kl", "actor_loss", "critic_loss", "response_length"):
            assert m[key] == pytest.approx(before[m["step"]][key], rel=1e-5, abs=1e-7), (m["step"], key)


def _eos_policy(policy: Path, folder: Path) -> Path:
    """The policy with its final norm replaced by a constant along EOS's
    (tied) embedding: every next token is EOS, so every answer is empty."""
    model = AutoModelForCausalLM.from_pretrained(policy)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    eos_row = model.get_output_embeddings().weight[tokenizer.eos_token_id].detach()
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.copy_(500.0 * eos_row / eos_row.norm())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_batch_of_empty_responses_trains_without_crashing(rlhf: Rlhf, tmp_path: Path) -> None:
    policy = _eos_policy(rlhf.policy, tmp_path / "eos_policy")
    config = ppo_config(rlhf, tmp_path / "out", policy=policy, max_steps=2, global_batch_size=8, micro_batch_size=4)
    run = run_job(write_config(tmp_path, config))
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = run.of("metrics")
    assert len(metrics) == 2
    for m in metrics:
        assert m["response_length"] == 0.0  # every answer was just its EOS
        for key in ("reward_mean", "kl", "actor_loss", "critic_loss", "clip_fraction"):
            assert m[key] is not None and math.isfinite(m[key]), (key, m)
    assert run.of("done")


def test_sigterm_saves_actor_critic_and_ema_and_resume_finishes(rlhf: Rlhf, tmp_path: Path) -> None:
    steps = 8
    corpus = write_jsonl(tmp_path / "pt.jsonl", [{"text": f"{item}的售后服务:七天无理由退换。" * 3} for item in ITEMS])
    # Full fine-tuning (the reference is then a frozen copy, not the adapter-less
    # base) with the PTX term on.
    config = ppo_config(
        rlhf, tmp_path / "out", lora=None, learning_rate=2e-3, max_steps=steps, global_batch_size=8, micro_batch_size=4,
        ppo={"ptx_data": str(corpus), "ptx_coef": 0.1},
    )
    config_path = write_config(tmp_path, config)
    assert run_until_sigterm(config_path, at_step=2) == 143
    events = read_events(tmp_path / "out" / "progress.jsonl")
    assert events[0]["reference"] == "frozen copy of base_model"
    stopped = next(e for e in events if e["event"] == "cancelled")["step"]
    assert 2 <= stopped < steps
    checkpoint = next(e for e in events if e["event"] == "checkpoint")
    assert checkpoint["step"] == stopped
    folder = Path(checkpoint["path"])
    assert (folder / "actor").is_dir() and (folder / "critic").is_dir() and (folder / "ema.pt").is_file()
    assert (tmp_path / "out" / "checkpoints" / "latest").read_text() == folder.name

    resumed = run_job(config_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.of("start")[0]["resumed_from_step"] == stopped
    assert [m["step"] for m in resumed.of("metrics")] == list(range(stopped + 1, steps + 1))
    assert all(m["ptx_loss"] > 0 for m in resumed.of("metrics"))
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out").config.model_type == "bloom"
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "ema").config.model_type == "bloom"
