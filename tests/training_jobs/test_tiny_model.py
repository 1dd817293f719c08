from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.training_jobs.conftest import ROOT, job_env
from training_jobs.tiny import TinyModelSpec, make_tiny_model


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "tokenizer.json"):
        h.update((folder / name).read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize(("arch", "klass"), [("bloom", "BloomForCausalLM"), ("llama", "LlamaForCausalLM")])
def test_tiny_model_reloads_offline_and_round_trips_chinese(tmp_path: Path, arch: str, klass: str) -> None:
    summary = make_tiny_model(TinyModelSpec(arch=arch, layers=2, hidden=64, heads=4), tmp_path / arch)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / arch, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / arch, local_files_only=True)
    assert type(model).__name__ == klass == summary["architecture"]
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    for token in ("<s>", "</s>", "<pad>", "<unk>"):
        assert token in tokenizer.get_vocab()
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    text = "这款空气炸锅容量5.5升,适合3到5口之家。Free shipping over ¥99!"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == text
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert logits.shape == (1, len(ids), 2000) and len(tokenizer) <= 2000  # model vocab as asked


def test_same_seed_gives_identical_files_and_another_seed_does_not(tmp_path: Path) -> None:
    make_tiny_model(TinyModelSpec(seed=3), tmp_path / "a")
    make_tiny_model(TinyModelSpec(seed=3), tmp_path / "b")
    make_tiny_model(TinyModelSpec(seed=4), tmp_path / "c")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_cli_builds_from_a_corpus_and_rejects_bad_sizes(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("医疗保险的报销比例是多少?\nThe deductible is 500 yuan per year.\n" * 50, encoding="utf-8")
    ok = subprocess.run(
        [sys.executable, "-m", "training_jobs", "make-tiny-model", "--arch", "llama", "--out", str(tmp_path / "m"),
         "--corpus", str(corpus), "--vocab-size", "400", "--hidden", "32", "--heads", "2"],
        cwd=ROOT, env=job_env(), capture_output=True, text=True, timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "m").config.hidden_size == 32
    bad = subprocess.run(
        [sys.executable, "-m", "training_jobs", "make-tiny-model", "--out", str(tmp_path / "x"), "--hidden", "30", "--heads", "4"],
        cwd=ROOT, env=job_env(), capture_output=True, text=True, timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: --hidden (30) must be a multiple of --heads (4)"
