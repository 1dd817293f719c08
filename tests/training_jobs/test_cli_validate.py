"""`python -m training_jobs validate`: the web app's cheap pre-flight check —
`ok`, or one `config error: <field>: …` line per problem and exit code 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.training_jobs.conftest import ROOT, base_config, job_env, write_config


def _validate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "training_jobs", "validate", *args],
        cwd=ROOT, env=job_env(), input=stdin, capture_output=True, text=True, timeout=60,
    )


def test_a_good_config_prints_ok_and_writes_nothing(tmp_path: Path, tiny_bloom: Path, sft_data: Path) -> None:
    out = tmp_path / "out"
    result = _validate("--config", str(write_config(tmp_path, base_config(tiny_bloom, sft_data, out))))
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")
    assert not out.exists()  # no progress.jsonl, no error event: nothing ran


def test_errors_name_the_field(tmp_path: Path, tiny_bloom: Path, sft_data: Path) -> None:
    config = base_config(tiny_bloom, sft_data, tmp_path / "out", learning_rate=5)
    result = _validate("--config", "-", stdin=json.dumps(config))
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["config error: learning_rate: Input should be less than 1"]
    assert result.stdout == ""


def test_checks_paths_and_the_world_size(tmp_path: Path, tiny_bloom: Path, sft_data: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    result = _validate("--config", str(write_config(tmp_path, base_config(tiny_bloom, missing, tmp_path / "out"))))
    assert result.stderr.splitlines() == [f"config error: train_data: file {missing} does not exist"]
    # 8 sequences per step cannot split into micro-batches of 4 over 3 ranks.
    good = write_config(tmp_path, base_config(tiny_bloom, sft_data, tmp_path / "out"), name="good.json")
    result = _validate("--config", str(good), "--world-size", "3")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "config error: global_batch_size: 8 is not a multiple of micro_batch_size × ranks = 4 × 3"
    ]
    assert _validate("--config", str(good), "--world-size", "2").returncode == 0
