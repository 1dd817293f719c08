"""Local-backend serving throughput: our engine (iteration-level dynamic
batching) against one-request-at-a-time `model.generate` behind a lock, on
the same model, prompts and decoding settings, in one run.

    .venv/bin/python bench/local_batching.py [--concurrency 16] [--requests 64] [--model DIR]

Without --model a random-weight BLOOM is built with training_jobs.tiny
(default 4 layers, hidden 256). Prompts are ~250-character slices of the
tiny-model corpus, answers `--max-new-tokens` (20) tokens, greedy unless
--sample. `--concurrency` clients each send requests back to back until
`--requests` are done. EOS can end an answer early on either side, so
tokens/s (generated tokens over wall time) is the figure to compare; the
greedy answers of both sides are also compared token for token (text).
Each side's best of `--repeats` alternated runs counts.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CORPUS = ROOT / "training_jobs" / "resources" / "sample_corpus.txt"


@dataclass
class Result:
    seconds: float
    requests: int
    tokens: int
    texts: list[str]

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def make_prompts(count: int, chars: int) -> list[str]:
    """Distinct ~`chars`-character prompts cut from the corpus at shifting offsets."""
    text = " ".join(line.strip() for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip())
    step = max(1, (len(text) - chars) // max(count, 1))
    return [text[(i * step) % (len(text) - chars) :][:chars] for i in range(count)]


async def run_clients(prompts: list[str], concurrency: int, one) -> Result:
    """`concurrency` clients take prompts from a shared list until it is empty."""
    queue = list(enumerate(prompts))
    texts: list[str] = [""] * len(prompts)
    tokens = 0

    async def client() -> None:
        nonlocal tokens
        while queue:
            index, prompt = queue.pop()
            texts[index], count = await one(prompt)
            tokens += count

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return Result(time.perf_counter() - start, len(prompts), tokens, texts)


async def bench_ours(model_dir: Path, prompts: list[str], args: argparse.Namespace) -> Result:
    from inference.base import GenerationRequest, SamplingParams
    from inference.config import BackendConfig
    from inference.local import LocalBackend

    backend = LocalBackend(
        BackendConfig(kind="local", model_path=str(model_dir), options={"max_batch_size": args.max_batch_size})
    )

    def params(index: int) -> SamplingParams:
        if args.sample:
            return SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.8, top_p=0.95, seed=index)
        return SamplingParams(max_new_tokens=args.max_new_tokens, decoder="greedy")

    index_of = {prompt: i for i, prompt in enumerate(prompts)}

    async def one(prompt: str) -> tuple[str, int]:
        completion = await backend.generate(GenerationRequest(params(index_of[prompt]), prompt=prompt))
        return completion.text, completion.completion_tokens

    try:
        await one(prompts[0])  # load and warm up outside the clock
        return await run_clients(prompts, args.concurrency, one)
    finally:
        await backend.close()


async def bench_generate(model_dir: Path, prompts: list[str], args: argparse.Namespace) -> Result:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    lock = threading.Lock()
    index_of = {prompt: i for i, prompt in enumerate(prompts)}

    def generate(prompt: str) -> tuple[str, int]:
        ids = tokenizer(prompt, return_tensors="pt").input_ids
        extra = {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "top_k": 0} if args.sample else {"do_sample": False}
        with lock, torch.inference_mode():
            if args.sample:
                torch.manual_seed(index_of[prompt])
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.max_new_tokens, **extra)
        new = out[0, ids.shape[1] :]
        if new.numel() and int(new[-1]) == tokenizer.eos_token_id:
            text_ids = new[:-1]
        else:
            text_ids = new
        return tokenizer.decode(text_ids, skip_special_tokens=True), int(new.numel())

    async def one(prompt: str) -> tuple[str, int]:
        return await asyncio.to_thread(generate, prompt)

    await one(prompts[0])
    return await run_clients(prompts, args.concurrency, one)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a model folder (default: build a random-weight one)")
    parser.add_argument("--arch", default="bloom", choices=("bloom", "llama"))
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--prompt-chars", type=int, default=250)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--sample", action="store_true", help="sample (temperature 0.8, top_p 0.95) instead of greedy")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from training_jobs.tiny import TinyModelSpec, make_tiny_model

            model_dir = Path(tmp) / "model"
            spec = TinyModelSpec(arch=args.arch, layers=args.layers, hidden=args.hidden, heads=args.heads)
            summary = make_tiny_model(spec, model_dir)
            print(f"model: random {summary['architecture']}, {summary['parameters']:,} parameters, "
                  f"{args.layers} layers, hidden {args.hidden}")
        else:
            print(f"model: {model_dir}")
        prompts = make_prompts(args.requests, args.prompt_chars)
        mode = "sampling" if args.sample else "greedy"
        print(f"torch threads {torch.get_num_threads()}, {args.requests} requests, concurrency {args.concurrency}, "
              f"{len(prompts[0])}-char prompts, max_new_tokens {args.max_new_tokens}, {mode}")

        ours_runs: list[Result] = []
        theirs_runs: list[Result] = []
        for repeat in range(args.repeats):
            order = (bench_ours, bench_generate) if repeat % 2 == 0 else (bench_generate, bench_ours)
            for side in order:
                result = asyncio.run(side(model_dir, prompts, args))
                (ours_runs if side is bench_ours else theirs_runs).append(result)
        ours = max(ours_runs, key=lambda r: r.tokens_per_s)
        theirs = max(theirs_runs, key=lambda r: r.tokens_per_s)

    print(f"{'side':34} {'req/s':>8} {'tokens/s':>9} {'tokens':>7} {'seconds':>8}")
    for name, result in (("LocalBackend (dynamic batching)", ours), ("model.generate, one at a time", theirs)):
        print(f"{name:34} {result.requests_per_s:>8.2f} {result.tokens_per_s:>9.1f} {result.tokens:>7} {result.seconds:>8.2f}")
    print(f"ratio ours/generate: {ours.requests_per_s / theirs.requests_per_s:.2f}x requests/s, "
          f"{ours.tokens_per_s / theirs.tokens_per_s:.2f}x tokens/s")
    if not args.sample:
        same = sum(a == b for a, b in zip(ours.texts, theirs.texts))
        print(f"greedy answers identical to model.generate: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
