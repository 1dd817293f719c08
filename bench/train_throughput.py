"""SFT training throughput on CPU: training_jobs (DeepSpeed, length-grouped
micro-batches) against transformers.Trainer on the same model, the same
encoded examples, batch sizes, optimizer and schedule, in one run.

    .venv/bin/python bench/train_throughput.py [--steps 12] [--tiny-steps 120] [--sizes tiny,20m]

Two data sets: `uniform` (every row the same length: measures the loop's own
overhead) and `mixed` (the shared e-commerce SFT set, answers of 10–300
characters, or a synthetic stand-in when ../shared is absent: measures the
gain from length grouping). Reports tokens/s (non-pad tokens over training-loop
time; each side's best of --repeats alternated runs) and the ratio ours /
Trainer.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SIZES = {
    "tiny": {"layers": 2, "hidden": 64, "heads": 4},
    "20m": {"layers": 6, "hidden": 512, "heads": 8},  # ≈ 20M parameters
}
SHARED_SFT = ROOT.parent / "shared" / "datasets" / "ecom_sft_2000.json"


def mixed_rows() -> list[dict[str, str]]:
    if SHARED_SFT.exists():
        rows = json.loads(SHARED_SFT.read_text(encoding="utf-8"))
        return [{"prompt": (r["instruction"] + "\n" + r.get("input", "")).strip(), "response": r["output"]} for r in rows]
    rng = random.Random(0)
    return [{"prompt": f"商品{i}怎么样?", "response": "质量很好,发货很快。" * rng.randint(1, 30)} for i in range(2000)]


def uniform_rows() -> list[dict[str, str]]:
    return [{"prompt": f"请介绍商品{i % 10}号。", "response": "这是一款做工精良、性价比很高的家用电器。" * 4} for i in range(2000)]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")


def run_ours(config: dict, workdir: Path) -> float:
    config_path = workdir / "job.json"
    config_path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    subprocess.run([sys.executable, "-m", "training_jobs", "run", "--config", str(config_path)],
                   cwd=ROOT, env=env, check=True, capture_output=True)
    metrics = json.loads((Path(config["output_dir"]) / "metrics.json").read_text())
    return metrics["train_tokens_per_s"]


def run_trainer(config: dict, workdir: Path) -> float:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    from training_jobs.data import encode_instructions

    tokenizer = AutoTokenizer.from_pretrained(config["base_model"])
    data = encode_instructions(config["train_data"], tokenizer, config["prompt_template"], config["max_length"])
    rows = [{"input_ids": e.input_ids, "labels": e.labels, "attention_mask": [1] * len(e.input_ids)} for e in data.examples]
    model = AutoModelForCausalLM.from_pretrained(config["base_model"], dtype=torch.float32)
    counted = {"tokens": 0}

    class CountingCollator(DataCollatorForSeq2Seq):
        def __call__(self, features, return_tensors=None):
            batch = super().__call__(features, return_tensors)
            counted["tokens"] += int(batch["attention_mask"].sum())
            return batch

    args = TrainingArguments(
        output_dir=str(workdir / "trainer"), per_device_train_batch_size=config["micro_batch_size"],
        gradient_accumulation_steps=config["global_batch_size"] // config["micro_batch_size"],
        learning_rate=config["learning_rate"], lr_scheduler_type="cosine",
        warmup_steps=int(config["warmup_ratio"] * config["max_steps"]),
        max_steps=config["max_steps"], max_grad_norm=config["grad_clip"], save_strategy="no", report_to=[],
        logging_steps=10**6, use_cpu=True, dataloader_num_workers=0, seed=config["seed"], disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=rows,
                      data_collator=CountingCollator(tokenizer, padding=True, label_pad_token_id=-100))
    start = time.monotonic()
    trainer.train()
    return counted["tokens"] / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps per run of the 20M model")
    parser.add_argument("--tiny-steps", type=int, default=120, help="steps per run of the tiny model (it is ~100x faster)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternated; the best counts")
    parser.add_argument("--sizes", default="tiny,20m")
    parser.add_argument("--micro", type=int, default=8)
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=1024)  # the seed's SFT max_length
    args = parser.parse_args()

    from training_jobs.tiny import TinyModelSpec, make_tiny_model

    import torch
    print(f"torch threads: {torch.get_num_threads()}, steps per run: {args.tiny_steps} (tiny) / {args.steps} (20m), "
          f"micro {args.micro}, global {args.global_batch}, max_length {args.max_length}")
    print(f"{'model':6} {'data':8} {'params':>11} {'ours tok/s':>11} {'Trainer tok/s':>14} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        datasets = {"uniform": uniform_rows(), "mixed": mixed_rows()}
        for name, rows in datasets.items():
            write_jsonl(tmp_path / f"{name}.jsonl", rows)
        for size in args.sizes.split(","):
            model_dir = tmp_path / f"model-{size}"
            summary = make_tiny_model(TinyModelSpec(arch="bloom", **SIZES[size]), model_dir)
            for name in datasets:
                config = {
                    "stage": "sft", "base_model": str(model_dir), "train_data": str(tmp_path / f"{name}.jsonl"),
                    "output_dir": str(tmp_path / f"out-{size}-{name}"), "max_length": args.max_length,
                    "global_batch_size": args.global_batch, "micro_batch_size": args.micro, "learning_rate": 1e-4,
                    "warmup_ratio": 0.1, "max_steps": args.tiny_steps if size == "tiny" else args.steps, "precision": "fp32", "zero_stage": 0,
                    "grad_clip": 1.0, "log_every": 10**6, "seed": 0, "prompt_template": "User: {prompt}\n\nBot: ",
                }
                # Alternate the sides (A B B A …) and keep each side's best run:
                # these machines are noisy and the first run warms caches.
                ours_runs, theirs_runs = [], []
                for repeat in range(args.repeats):
                    if repeat % 2 == 0:
                        ours_runs.append(run_ours(config, tmp_path))
                        theirs_runs.append(run_trainer(config, tmp_path))
                    else:
                        theirs_runs.append(run_trainer(config, tmp_path))
                        ours_runs.append(run_ours(config, tmp_path))
                ours, theirs = max(ours_runs), max(theirs_runs)
                print(f"{size:6} {name:8} {summary['parameters']:>11,} {ours:>11.0f} {theirs:>14.0f} {ours / theirs:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
