from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from training_jobs.progress import read_events

ROOT = Path(__file__).resolve().parents[2]
ITEMS = ["空气炸锅", "洗衣机", "冰箱", "耳机", "口红", "羽绒服", "扫地机器人", "牙刷"]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sft_data(tmp_path: Path) -> Path:
    """A learnable instruction set: the answer is a fixed function of the item."""
    rng = random.Random(0)
    prices = {item: (i + 1) * 100 for i, item in enumerate(ITEMS)}
    rows = []
    for _ in range(160):
        item = rng.choice(ITEMS)
        rows.append({"prompt": f"{item}多少钱?", "response": f"{item}的价格是{prices[item]}元。"})
    return write_jsonl(tmp_path / "sft.jsonl", rows)


@pytest.fixture
def pt_data(tmp_path: Path) -> Path:
    rng = random.Random(1)
    rows = [
        {"text": "".join(f"品类结构:家用电器,{rng.choice(ITEMS)}。售后服务:七天无理由退换。" for _ in range(3))}
        for _ in range(120)
    ]
    return write_jsonl(tmp_path / "pt.jsonl", rows)


@dataclass
class JobRun:
    returncode: int
    events: list[dict[str, Any]]
    stdout: str
    stderr: str

    def of(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == event]

    def losses(self) -> dict[int, float]:
        return {e["step"]: e["loss"] for e in self.of("metrics")}


def job_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


def write_config(tmp_path: Path, config: dict[str, Any], name: str = "job.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def run_job(config_path: Path, *extra: str, timeout: float = 240, launcher: list[str] | None = None) -> JobRun:
    argv = [*(launcher or [sys.executable]), "-m", "training_jobs", "run", "--config", str(config_path), *extra]
    result = subprocess.run(argv, cwd=ROOT, env=job_env(), capture_output=True, text=True, timeout=timeout)
    events_file = config_path.parent / "_stdout.txt"
    events_file.write_text(result.stdout)
    return JobRun(result.returncode, read_events(events_file), result.stdout, result.stderr)


def run_until_sigterm(config_path: Path, at_step: int, timeout: float = 120) -> int:
    """Runs a job, sends it SIGTERM (as the web app cancels) once it reports
    the metrics of optimizer step `at_step` or later, and returns its exit
    code."""
    argv = [sys.executable, "-m", "training_jobs", "run", "--config", str(config_path)]
    process = subprocess.Popen(argv, cwd=ROOT, env=job_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if '"event": "metrics"' in line and json.loads(line)["step"] >= at_step:
            process.send_signal(signal.SIGTERM)
            break
    process.stdout.read()
    return process.wait(timeout=timeout)


def base_config(model: Path, data: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    config = {
        "stage": "sft", "base_model": str(model), "train_data": str(data), "output_dir": str(out),
        "max_length": 64, "global_batch_size": 8, "micro_batch_size": 4, "learning_rate": 3e-3,
        "warmup_ratio": 0.0, "epochs": 2, "precision": "fp32", "zero_stage": 0, "log_every": 1, "seed": 7,
    }
    config.update(overrides)
    return config


# --- preference data and a trained tiny reward model (rm, dpo, ppo tests) ---------------

MARKER = "好评"  # the synthetic preference: answers that contain it are chosen
PHRASES = ["质量不错", "物流很快", "包装完好", "价格实惠", "做工精细", "颜色好看", "尺码合适", "声音很小"]


def preference_rows(seed: int, count: int) -> list[dict[str, str]]:
    """Pairs whose only systematic difference is the marker: chosen is 1–3
    random phrases with MARKER among them, rejected 1–3 random phrases
    without it. Learnable by a tiny reward model, and reachable for a PPO
    policy that was SFT-trained on both sides (it already says MARKER about
    half of the time)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        chosen = rng.sample(PHRASES, rng.randint(0, 2))
        chosen.insert(rng.randint(0, len(chosen)), MARKER)
        rejected = rng.sample(PHRASES, rng.randint(1, 3))
        rows.append({"prompt": f"{rng.choice(ITEMS)}怎么样?", "chosen": "，".join(chosen) + "。", "rejected": "，".join(rejected) + "。"})
    return rows


@dataclass(frozen=True)
class PreferenceSet:
    model: Path  # a tiny BLOOM whose tokenizer knows the phrases (short sequences)
    train: Path
    eval: Path


@pytest.fixture(scope="session")
def preference_set(tmp_path_factory: pytest.TempPathFactory) -> PreferenceSet:
    from training_jobs.tiny import SAMPLE_CORPUS, TinyModelSpec, make_tiny_model

    folder = tmp_path_factory.mktemp("preferences")
    train, evaluation = preference_rows(11, 256), preference_rows(12, 64)
    corpus = folder / "corpus.txt"
    lines = [f"User: {r['prompt']}\n\nBot: {r[side]}" for r in train for side in ("chosen", "rejected")]
    corpus.write_text(SAMPLE_CORPUS.read_text(encoding="utf-8") + "\n".join(lines) + "\n", encoding="utf-8")
    make_tiny_model(TinyModelSpec(arch="bloom", seed=0), folder / "bloom", corpus)
    return PreferenceSet(
        folder / "bloom", write_jsonl(folder / "train.jsonl", train), write_jsonl(folder / "eval.jsonl", evaluation)
    )


def _run_or_fail(config: dict[str, Any], folder: Path, name: str) -> JobRun:
    run = run_job(write_config(folder, config, name))
    if run.returncode != 0:
        pytest.fail(f"{name} failed ({run.returncode}): {run.stderr[-3000:]}")
    return run


@pytest.fixture(scope="session")
def sft_policy(preference_set: PreferenceSet, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BLOOM after SFT on both sides of the pairs: it answers in the
    data's format and says MARKER in about half of its answers."""
    folder = tmp_path_factory.mktemp("sft_policy")
    rows = [
        {"prompt": r["prompt"], "response": r[side]}
        for r in json_lines(preference_set.train) for side in ("chosen", "rejected")
    ]
    data = write_jsonl(folder / "sft.jsonl", rows)
    config = base_config(preference_set.model, data, folder / "out", global_batch_size=32, micro_batch_size=32, epochs=3, log_every=8)
    _run_or_fail(config, folder, "sft.json")
    return folder / "out"


def json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="session")
def trained_reward_model(
    preference_set: PreferenceSet, sft_policy: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path, Path]:
    """(policy folder, reward model folder, preference data) — a reward model
    trained with `python -m training_jobs run` (stage rm, from the SFT
    policy) that prefers answers containing MARKER; its progress.jsonl holds
    the run's events."""
    folder = tmp_path_factory.mktemp("reward_model")
    config = base_config(
        sft_policy, preference_set.train, folder / "out", stage="rm", eval_data=str(preference_set.eval),
        global_batch_size=16, micro_batch_size=8, learning_rate=5e-3, epochs=2, log_every=4,
    )
    _run_or_fail(config, folder, "rm.json")
    return sft_policy, folder / "out", preference_set.train
