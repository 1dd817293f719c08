"""Stage rm: DeepSpeed-Chat's token-level pairwise loss on a hand-worked
batch, a reward model trained through the CLI that learns the synthetic
preference, its folder, resume, and bad preference rows."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.training_jobs.conftest import (
    MARKER,
    ROOT,
    PreferenceSet,
    base_config,
    job_env,
    run_job,
    write_config,
    write_jsonl,
)
from training_jobs.progress import read_events
from training_jobs.reward import load_reward_model, pairwise_loss, score


def nll(margin: float) -> float:
    """−log σ(margin), written out."""
    return math.log(1 + math.exp(-margin))


def test_pairwise_loss_matches_the_hand_computed_value() -> None:
    eos = pad = 2  # pad == eos: ends must come from the masks, not from ids
    # A: shared prefix [5, 6], rejected shorter   → c_end 5, r_end 4, div 2, end 5: t ∈ {2, 3, 4}
    # B: identical pair (padded in the batch)     → no divergence: end = c_end = 3, div 2: t ∈ {2}
    # C: rejected longer, chosen ends at once     → c_end 2, r_end 4, div 1, end 4: t ∈ {1, 2, 3}
    chosen_ids = torch.tensor([[5, 6, 7, 8, eos], [5, 6, eos, pad, pad], [5, eos, pad, pad, pad]])
    chosen_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    rejected_ids = torch.tensor([[5, 6, 9, eos, pad], [5, 6, eos, pad, pad], [5, 6, 7, eos, pad]])
    rejected_mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])
    chosen_values = torch.tensor([[0.1, 0.2, 1.0, 2.0, 3.0], [0.3, 0.4, 0.7, 9.0, 9.0], [0.0, 1.5, -0.5, 0.25, 9.0]])
    rejected_values = torch.tensor([[0.1, 0.2, 0.5, -1.0, 0.0], [0.3, 0.4, -0.3, 9.0, 9.0], [0.0, 0.5, 1.0, -0.75, 9.0]])

    loss, chosen_scores, rejected_scores = pairwise_loss(
        chosen_values, rejected_values, chosen_ids, rejected_ids, chosen_mask, rejected_mask
    )

    loss_a = (nll(1.0 - 0.5) + nll(2.0 - -1.0) + nll(3.0 - 0.0)) / 3  # t = 4 reads rejected's padded value
    loss_b = nll(0.7 - -0.3)
    loss_c = (nll(1.5 - 0.5) + nll(-0.5 - 1.0) + nll(0.25 - -0.75)) / 3  # t = 2, 3 read chosen's padded values
    assert float(loss) == pytest.approx((loss_a + loss_b + loss_c) / 3, rel=1e-6)
    # Scores: the value at each sequence's last attended token (its EOS).
    assert chosen_scores.tolist() == pytest.approx([3.0, 0.7, 1.5])
    assert rejected_scores.tolist() == pytest.approx([-1.0, -0.3, -0.75])


def test_pairwise_loss_of_an_unpadded_identical_pair_reads_its_last_token() -> None:
    ids = torch.tensor([[4, 5, 6]])
    mask = torch.ones_like(ids)
    loss, _, _ = pairwise_loss(torch.tensor([[9.0, 9.0, 2.0]]), torch.tensor([[0.0, 0.0, 0.0]]), ids, ids, mask, mask)
    assert float(loss) == pytest.approx(nll(2.0))


def test_reward_model_learns_the_preference_and_its_folder_loads(trained_reward_model) -> None:
    from transformers import AutoModel

    _, folder, _ = trained_reward_model
    events = read_events(folder / "progress.jsonl")
    metrics = [e for e in events if e["event"] == "metrics"]
    assert {"loss", "accuracy", "chosen_score", "rejected_score", "tokens_per_s", "lr"} <= set(metrics[-1])
    assert metrics[-1]["loss"] < metrics[0]["loss"]
    evaluation = [e for e in events if e["event"] == "eval"][-1]
    assert evaluation["accuracy"] >= 0.9, evaluation
    assert evaluation["chosen_score"] > evaluation["rejected_score"]
    assert evaluation["eval_loss"] < math.log(2)  # better than a constant score
    done = json.loads((folder / "metrics.json").read_text())
    assert done["stage"] == "rm" and done["accuracy"] == evaluation["accuracy"]
    assert json.loads((folder / "job.json").read_text())["stage"] == "rm"

    model, tokenizer, meta = load_reward_model(folder)
    assert meta["kind"] == "reward" and meta["prompt_template"] == "User: {prompt}\n\nBot: "
    assert tokenizer.eos_token_id is not None and model.v_head.weight.shape == (1, model.config.hidden_size)
    assert AutoModel.from_pretrained(folder, local_files_only=True).config.model_type == "bloom"

    # Answers not written this way in the data: the marker still wins.
    prompts = ["冰箱怎么样?", "口红怎么样?", "耳机怎么样?"]
    with_marker = [f"颜色好看，声音很小，{MARKER}。", f"{MARKER}，做工精细。", f"价格实惠，{MARKER}，质量不错。"]
    without = ["颜色好看，声音很小，尺码合适。", "做工精细。", "价格实惠，包装完好，质量不错。"]
    good, bad = score(folder, prompts, with_marker), score(folder, prompts, without)
    assert all(g > b for g, b in zip(good, bad)), (good, bad)


def test_rm_resume_replays_the_same_losses(tmp_path: Path, preference_set: PreferenceSet) -> None:
    def config(out: Path) -> dict:
        return base_config(
            preference_set.model, preference_set.train, out, stage="rm", max_steps=4, save_every=2,
            learning_rate=5e-3, micro_batch_size=4, global_batch_size=8,
        )

    full = run_job(write_config(tmp_path, config(tmp_path / "full"), "full.json"))
    assert full.returncode == 0, full.stderr[-3000:]
    assert [e["step"] for e in full.of("checkpoint")] == [2]
    # A second run that finds only the step-2 checkpoint continues from it.
    shutil.copytree(tmp_path / "full" / "checkpoints", tmp_path / "resumed" / "checkpoints")
    resumed = run_job(write_config(tmp_path, config(tmp_path / "resumed"), "resumed.json"), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.of("start")[0]["resumed_from_step"] == 2
    expected = {e["step"]: e for e in full.of("metrics")}
    for event in resumed.of("metrics"):
        assert event["step"] in (3, 4)
        for name in ("loss", "accuracy", "chosen_score", "rejected_score"):
            assert event[name] == pytest.approx(expected[event["step"]][name], rel=1e-5, abs=1e-6), (event["step"], name)
    heads = [load_reward_model(tmp_path / name)[0].v_head.weight for name in ("full", "resumed")]
    torch.testing.assert_close(heads[0], heads[1])


@pytest.mark.parametrize(
    ("stage", "rows", "line", "message"),
    [
        (
            "rm",
            [{"prompt": "冰箱怎么样?", "chosen": "好评。", "rejected": "一般。"}, {"prompt": "耳机怎么样?", "chosen": "好评。"}],
            2, "field 'rejected' must be a string",
        ),
        (
            "dpo",
            [{"prompt": "冰箱怎么样?", "chosen": "好评。", "reject": "一般。"}],
            1, "field 'rejected' must be a string (the seed's 'reject' is read as 'rejected' by the datasets app)",
        ),
    ],
)
def test_a_bad_preference_row_is_a_config_error(tmp_path, tiny_bloom, stage, rows, line, message) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    config_path = write_config(tmp_path, base_config(tiny_bloom, data, tmp_path / "out", stage=stage, max_steps=1))
    result = subprocess.run(
        [sys.executable, "-m", "training_jobs", "run", "--config", str(config_path)],
        cwd=ROOT, env=job_env(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"config error: train_data: {data} line {line}: {message}" in result.stderr.splitlines()
    error = read_events(tmp_path / "out" / "progress.jsonl")[-1]
    assert error["event"] == "error" and error["kind"] == "config"
