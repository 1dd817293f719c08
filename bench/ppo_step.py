"""Time per PPO step, split into generation, experience scoring and training,
through the real CLI (`python -m training_jobs run`, stage ppo).

    .venv/bin/python bench/ppo_step.py [--sizes tiny,20m] [--batch 16] [--prompt 128] [--response 128]

For each size: a random-weight BLOOM policy (make_tiny_model) and a reward
model built on it (random value head), prompts long enough to fill
`--prompt` tokens, the stage defaults otherwise (LoRA r=32 on
query_key_value, EMA on, one PPO epoch). A random policy almost never
samples EOS, so every response runs to `--response` tokens: each step does
the same work. The job's own `metrics` events carry the split
(`generation_s`: sampling; `experience_s`: actor, reference, critic and
reward forwards plus GAE; `train_s`: actor and critic forward/backward/step
plus the EMA update); the first `--warmup` steps are dropped.

A second table times `generate` alone for the LoRA actor as PPO runs it
(adapter unmerged, through PEFT) against the same weights merged into a
plain model: what merging for generation — one thing DeepSpeed-Chat's
hybrid engine does — would save, all else equal.

bench/gpu/ppo_step.sh runs this on a GPU with BLOOM-560m shapes.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
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
    "tiny": {"layers": 2, "hidden": 64, "heads": 4, "vocab_size": 2000},
    "20m": {"layers": 6, "hidden": 512, "heads": 8, "vocab_size": 8000},  # ≈ 20M parameters
    "560m": {"layers": 24, "hidden": 1024, "heads": 16, "vocab_size": 250880},  # BLOOM-560m shapes
}
WORDS = ["空气炸锅", "洗衣机", "冰箱", "耳机", "口红", "羽绒服", "price", "warranty", "delivery", "退货", "优惠券", "容量"]


def build(size: str, folder: Path, prompts: int, prompt_tokens: int) -> tuple[Path, Path, Path, int]:
    """(policy, reward model, prompts file, parameters)."""
    import random

    import torch
    from transformers import AutoTokenizer

    from training_jobs.reward import build_reward_model, save_reward_model
    from training_jobs.tiny import TinyModelSpec, make_tiny_model

    summary = make_tiny_model(TinyModelSpec(arch="bloom", **SIZES[size]), folder / "policy")
    reward = build_reward_model(folder / "policy")
    torch.nn.init.normal_(reward.v_head.weight, std=0.02)
    save_reward_model(reward, AutoTokenizer.from_pretrained(folder / "policy"), folder / "reward",
                      prompt_template="User: {prompt}\n\nBot: ", max_length=2 * prompt_tokens)
    rng = random.Random(0)
    # Longer than the prompt in any tokenizer (a word is ≥ 1 token): the job
    # keeps the last prompt_tokens tokens, so every prompt is full length.
    rows = [{"prompt": "".join(rng.choice(WORDS) for _ in range(prompt_tokens))} for _ in range(prompts)]
    data = folder / "prompts.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return folder / "policy", folder / "reward", data, int(summary["parameters"])


def run_job(config: dict, folder: Path, launcher: list[str]) -> list[dict]:
    path = folder / "job.json"
    path.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    argv = [*launcher, "--module", "training_jobs", "run", "--config", str(path)] if launcher else \
        [sys.executable, "-m", "training_jobs", "run", "--config", str(path)]
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"ppo job failed ({result.returncode}):\n{result.stderr[-4000:]}")
    events = [json.loads(line) for line in (Path(config["output_dir"]) / "progress.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "metrics"]


def generation_variants(policy: Path, batch: int, prompt: int, response: int, device: str, dtype: str) -> dict[str, float]:
    """Seconds per generated token (whole batch) of PEFT-unmerged LoRA vs merged."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch_dtype).to(device).eval()
    lora = get_peft_model(model, LoraConfig(r=32, lora_alpha=32, target_modules=["query_key_value"], task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in lora.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.01)  # a trained adapter is non-zero; the cost is the same either way
    ids = torch.randint(10, 1000, (batch, prompt), device=device)
    config = GenerationConfig(do_sample=True, top_k=0, max_new_tokens=response, min_new_tokens=response,
                              pad_token_id=3, eos_token_id=2, use_cache=True)

    def timed(module: torch.nn.Module) -> float:
        best = float("inf")
        for _ in range(2):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad():
                module.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best / response

    unmerged = timed(lora)
    merged = timed(lora.merge_and_unload())
    return {"unmerged": unmerged, "merged": merged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,20m")
    parser.add_argument("--batch", type=int, default=16, help="global batch (prompts per step); the seed's 16")
    parser.add_argument("--micro", type=int, default=4)
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens (the seed: 256)")
    parser.add_argument("--response", type=int, default=128, help="response tokens (the seed: 256)")
    parser.add_argument("--steps", type=int, default=3, help="measured steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--zero", type=int, default=0)
    parser.add_argument("--launcher", default="", help="e.g. 'deepspeed --num_gpus 8' (default: one process)")
    parser.add_argument("--full", action="store_true", help="full fine-tuning of the actor instead of LoRA (no PEFT needed)")
    parser.add_argument("--no-variants", action="store_true", help="skip the generate-only LoRA merged/unmerged table")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.full:
        args.no_variants = True  # the table compares LoRA merged and unmerged

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device {device}, torch threads {torch.get_num_threads()}, batch {args.batch} (micro {args.micro}), "
          f"prompt {args.prompt} + response {args.response} tokens, {args.precision}, ZeRO {args.zero}, "
          f"{'full' if args.full else 'LoRA r=32'} actor, {args.steps} measured steps after {args.warmup}")
    header = (f"{'model':5} {'params':>11} {'gen s':>8} {'exp s':>8} {'train s':>8} {'step s':>8} {'gen share':>9} "
              f"{'gen tok/s':>10} {'resp len':>8}")
    results = []
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            folder = Path(tmp) / size
            policy, reward, prompts, params = build(size, folder, args.batch * (args.steps + args.warmup), args.prompt)
            config = {
                "stage": "ppo", "base_model": str(policy), "reward_model": str(reward), "train_data": str(prompts),
                "output_dir": str(folder / "out"), "max_length": args.prompt + args.response,
                "global_batch_size": args.batch, "micro_batch_size": args.micro, "learning_rate": 1e-5,
                "warmup_ratio": 0.0, "max_steps": args.steps + args.warmup, "precision": args.precision,
                "zero_stage": args.zero, "log_every": 1, "seed": 0,
                "ppo": {"prompt_length": args.prompt, "response_length": args.response},
            }
            if args.full:
                config["lora"] = None
            metrics = run_job(config, folder, args.launcher.split())[args.warmup :]
            split = {key: statistics.mean(m[key] for m in metrics) for key in ("generation_s", "experience_s", "train_s")}
            step = sum(split.values())
            length = statistics.mean(m["response_length"] for m in metrics)
            row = {"size": size, "params": params, **split, "step_s": step, "generation_share": split["generation_s"] / step,
                   "generated_tokens_per_s": args.batch * length / split["generation_s"], "response_length": length}
            if not args.no_variants:
                row["generate_s_per_token"] = generation_variants(
                    policy, args.batch, args.prompt, args.response, device, args.precision
                )
            results.append(row)
            lines.append(
                f"{size:5} {params:>11,} {split['generation_s']:>8.3f} {split['experience_s']:>8.3f} {split['train_s']:>8.3f} "
                f"{step:>8.3f} {row['generation_share']:>9.1%} {row['generated_tokens_per_s']:>10.1f} {length:>8.1f}"
            )
            print(f"{size}: done", flush=True)
    print(header)
    print("\n".join(lines))
    if not args.no_variants:
        print(f"\ngenerate only, ms per new token (batch {args.batch}):")
        print(f"{'model':5} {'LoRA unmerged (PPO)':>20} {'merged':>8} {'saving':>7}")
        for row in results:
            v = row["generate_s_per_token"]
            saving = 1 - v["merged"] / v["unmerged"]
            print(f"{row['size']:5} {1000 * v['unmerged']:>20.2f} {1000 * v['merged']:>8.2f} {saving:>7.1%}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
