from __future__ import annotations

import json
import os
import random
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


def base_config(model: Path, data: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    config = {
        "stage": "sft", "base_model": str(model), "train_data": str(data), "output_dir": str(out),
        "max_length": 64, "global_batch_size": 8, "micro_batch_size": 4, "learning_rate": 3e-3,
        "warmup_ratio": 0.0, "epochs": 2, "precision": "fp32", "zero_stage": 0, "log_every": 1, "seed": 7,
    }
    config.update(overrides)
    return config
