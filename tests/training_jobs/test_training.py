"""Real DeepSpeed runs on CPU (gloo) through the CLI, the web app's boundary."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.training_jobs.conftest import ROOT, base_config, job_env, run_job, run_until_sigterm, write_config
from training_jobs.progress import read_events


def test_pt_lowers_the_loss_and_reports_eval(tmp_path, tiny_bloom, pt_data) -> None:
    config = base_config(
        tiny_bloom, pt_data, tmp_path / "out", stage="pt", eval_data=str(pt_data), max_length=64,
        epochs=3, zero_stage=2, log_every=2,
    )
    run = run_job(write_config(tmp_path, config))
    assert run.returncode == 0, run.stderr[-3000:]
    start = run.of("start")[0]
    assert start["world_size"] == 1 and start["params"] == start["trainable_params"] > 100_000
    losses = list(run.losses().values())
    assert losses[-1] <= 0.7 * losses[0], losses
    evaluation = run.of("eval")[-1]
    assert evaluation["eval_loss"] > 0 and evaluation["perplexity"] == pytest.approx(2.718281828 ** evaluation["eval_loss"], rel=1e-6)
    metrics = run.of("metrics")[-1]
    assert {"step", "epoch", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s", "eta_s"} <= set(metrics)
    assert read_events(tmp_path / "out" / "progress.jsonl") == run.events


def test_sft_lowers_the_loss_and_writes_a_loadable_model(tmp_path, tiny_bloom, sft_data) -> None:
    out = tmp_path / "out"
    run = run_job(write_config(tmp_path, base_config(tiny_bloom, sft_data, out, eval_data=str(sft_data), epochs=3)))
    assert run.returncode == 0, run.stderr[-3000:]
    losses = list(run.losses().values())
    assert losses[-1] <= 0.7 * losses[0], losses
    done = run.of("done")[0]
    assert done["output_dir"] == str(out) and done["metrics"]["eval_loss"] is not None
    assert json.loads((out / "metrics.json").read_text()) == done["metrics"]
    assert json.loads((out / "job.json").read_text())["stage"] == "sft"
    model = AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    prompt = tokenizer("User: 冰箱多少钱?\n\nBot: ", return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(generated[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "的价格是" in answer and "元" in answer  # it learned the answer pattern, not only a lower loss


@pytest.mark.parametrize("arch", ["llama"])
def test_sft_trains_llama_too(tmp_path, tiny_llama, sft_data, arch) -> None:
    run = run_job(write_config(tmp_path, base_config(tiny_llama, sft_data, tmp_path / "out", max_steps=4)))
    assert run.returncode == 0, run.stderr[-3000:]
    assert len(run.of("metrics")) == 4


def test_zero_stages_agree_on_the_first_step_loss(tmp_path, tiny_bloom, sft_data) -> None:
    first = {}
    for stage in (0, 2, 3):
        config = base_config(tiny_bloom, sft_data, tmp_path / f"z{stage}", zero_stage=stage, max_steps=2)
        run = run_job(write_config(tmp_path, config, f"z{stage}.json"))
        assert run.returncode == 0, run.stderr[-3000:]
        first[stage] = run.losses()
        assert AutoModelForCausalLM.from_pretrained(tmp_path / f"z{stage}").config.model_type == "bloom"
    assert first[2][1] == pytest.approx(first[0][1], rel=1e-4)
    assert first[3][1] == pytest.approx(first[0][1], rel=1e-4)
    assert first[3][2] == pytest.approx(first[0][2], rel=1e-3)  # and the update agrees


def test_two_ranks_through_the_deepspeed_launcher(tmp_path, tiny_bloom, sft_data) -> None:
    config = base_config(tiny_bloom, sft_data, tmp_path / "out", zero_stage=2, max_steps=3, global_batch_size=8, micro_batch_size=2)
    launcher = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", "--master_port", "29631"]
    # The launcher runs `python -u -m training_jobs run …` on each rank.
    argv = [*launcher, "--module", "training_jobs", "run", "--config", str(write_config(tmp_path, config))]
    result = subprocess.run(argv, cwd=ROOT, env=job_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    events = read_events(tmp_path / "out" / "progress.jsonl")
    start = next(e for e in events if e["event"] == "start")
    assert start["world_size"] == 2 and start["gradient_accumulation"] == 2
    assert [e["step"] for e in events if e["event"] == "metrics"] == [1, 2, 3]
    assert sum(1 for e in events if e["event"] == "start") == 1  # only rank 0 reports
    assert (tmp_path / "out" / "model.safetensors").exists()


def test_sigterm_checkpoints_and_resume_replays_the_same_losses(tmp_path, tiny_bloom, sft_data) -> None:
    steps = 12
    reference = run_job(write_config(tmp_path, base_config(tiny_bloom, sft_data, tmp_path / "ref", max_steps=steps), "ref.json"))
    assert reference.returncode == 0, reference.stderr[-3000:]

    config_path = write_config(tmp_path, base_config(tiny_bloom, sft_data, tmp_path / "run", max_steps=steps), "run.json")
    assert run_until_sigterm(config_path, at_step=3) == 143
    events = read_events(tmp_path / "run" / "progress.jsonl")
    stopped = next(e for e in events if e["event"] == "cancelled")["step"]
    assert 3 <= stopped < steps
    assert any(e["event"] == "checkpoint" and e["step"] == stopped for e in events)

    resumed = run_job(config_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.of("start")[0]["resumed_from_step"] == stopped
    after = resumed.losses()
    assert sorted(after) == list(range(stopped + 1, steps + 1))
    for step, loss in after.items():
        assert loss == pytest.approx(reference.losses()[step], rel=1e-5), step


def test_lora_merged_model_matches_base_plus_adapter(tmp_path, tiny_bloom, sft_data) -> None:
    from peft import PeftModel

    out = tmp_path / "out"
    config = base_config(tiny_bloom, sft_data, out, max_steps=6, lora={"r": 8, "alpha": 16, "dropout": 0.0})
    run = run_job(write_config(tmp_path, config))
    assert run.returncode == 0, run.stderr[-3000:]
    start = run.of("start")[0]
    assert 0 < start["trainable_params"] < start["params"] / 5
    assert (out / "adapter" / "adapter_config.json").exists()
    ids = torch.tensor([[5, 17, 42, 99, 123, 7]])
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_bloom), out / "adapter").eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_bloom).eval()
    with torch.no_grad():
        merged_logits, adapted_logits, base_logits = merged(ids).logits, adapted(ids).logits, base(ids).logits
    torch.testing.assert_close(merged_logits, adapted_logits, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)  # the adapter learned something


def test_bf16_with_zero2_trains_on_cpu(tmp_path, tiny_bloom, sft_data) -> None:
    config = base_config(tiny_bloom, sft_data, tmp_path / "out", precision="bf16", zero_stage=2, max_steps=3)
    run = run_job(write_config(tmp_path, config))
    assert run.returncode == 0, run.stderr[-3000:]
    losses = run.losses()
    assert len(losses) == 3 and all(loss is not None and loss > 0 for loss in losses.values())
    assert AutoModelForCausalLM.from_pretrained(tmp_path / "out").dtype == torch.bfloat16
