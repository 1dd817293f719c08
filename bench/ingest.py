"""Dataset ingest throughput: our streaming pipeline (validation, Alpaca →
canonical messages, token-length stats, duplicates, sample) against
`datasets.load_dataset("json")` plus a tokenising `map`, on the same file, each
in its own process so peak RSS is its own.

    .venv/bin/python bench/ingest.py [--rows 1000000]

`ours` measures token lengths on a 100,000-row uniform sample (what the
product does on large files), `ours-exact` tokenises every row like the
`datasets` path. Reports rows/s and peak RSS for each, and the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

WORDS = ["空气炸锅", "洗衣机", "冰箱", "耳机", "口红", "羽绒服", "扫地机器人", "牙刷", "优惠券", "退货", "发货", "保修",
         "容量", "价格", "尺码", "颜色", "the", "price", "warranty", "delivery", "battery", "size"]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as handle:
        for i in range(rows):
            instruction = "".join(rng.choice(WORDS) for _ in range(rng.randint(2, 10))) + "?"
            output = "".join(rng.choice(WORDS) for _ in range(rng.randint(5, 45))) + "。"
            handle.write(json.dumps({"instruction": instruction, "input": "", "output": output}, ensure_ascii=False))
            handle.write("\n")


def peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the
    # parent (which imported torch), VmHWM belongs to this process's memory.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(data: Path, model: Path, out: Path, exact: bool) -> dict:
    from webapp.datasets.ingest import IngestOptions, ingest
    from webapp.datasets.stats import TOKEN_SAMPLE, StatsCollector, tokenizer_counter

    start = time.monotonic()
    collector = StatsCollector(count_tokens=tokenizer_counter(str(model)), token_sample=None if exact else TOKEN_SAMPLE)
    with out.open("w", encoding="utf-8") as handle:
        report = ingest(data, handle, IngestOptions(kind="instruction"), on_row=collector.add, on_source=collector.add_source)
    stats = collector.result()
    elapsed = time.monotonic() - start
    return {"rows": report.rows, "seconds": elapsed, "rows_per_s": report.rows / elapsed, "peak_rss_mb": peak_rss_mb(),
            "p50_tokens": stats["token_length"]["p50"]}


def run_hf(data: Path, model: Path, cache: Path) -> dict:
    import datasets
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    tokenizer = AutoTokenizer.from_pretrained(model)
    start = time.monotonic()
    table = datasets.load_dataset("json", data_files=str(data), split="train", cache_dir=str(cache))

    def to_messages(batch: dict) -> dict:
        users = [f"{i}\n{x}" if x else i for i, x in zip(batch["instruction"], batch["input"])]
        texts = [f"{u}\n{o}" for u, o in zip(users, batch["output"])]
        return {"text": texts, "length": [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]}

    table = table.map(to_messages, batched=True, batch_size=1000)
    lengths = sorted(table["length"])
    elapsed = time.monotonic() - start
    return {"rows": len(table), "seconds": elapsed, "rows_per_s": len(table) / elapsed, "peak_rss_mb": peak_rss_mb(),
            "p50_tokens": lengths[len(lengths) // 2]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--side", choices=["ours", "ours-exact", "hf"], help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side == "ours":
        print(json.dumps(run_ours(args.data, args.model, args.work / "canonical.jsonl", exact=False)))
        return
    if args.side == "ours-exact":
        print(json.dumps(run_ours(args.data, args.model, args.work / "canonical.jsonl", exact=True)))
        return
    if args.side == "hf":
        print(json.dumps(run_hf(args.data, args.model, args.work / "hf-cache")))
        return

    from training_jobs.tiny import TinyModelSpec, make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "instructions.jsonl"
        generate(data, args.rows)
        make_tiny_model(TinyModelSpec(), work / "model")
        print(f"file: {args.rows:,} rows, {data.stat().st_size / 1e6:.0f} MB")
        results = {}
        for side in ("ours", "ours-exact", "hf"):
            output = subprocess.run(
                [sys.executable, __file__, "--side", side, "--data", str(data), "--model", str(work / "model"), "--work", str(work)],
                capture_output=True, text=True, check=True,
            ).stdout.strip().splitlines()[-1]
            results[side] = json.loads(output)
            r = results[side]
            print(f"{side:10} {r['rows']:>9,} rows in {r['seconds']:6.1f} s = {r['rows_per_s']:>8,.0f} rows/s, "
                  f"peak RSS {r['peak_rss_mb']:6.0f} MB, median {r['p50_tokens']} tokens", flush=True)
        for side in ("ours", "ours-exact"):
            print(f"ratio {side}/datasets: {results[side]['rows_per_s'] / results['hf']['rows_per_s']:.2f}")


if __name__ == "__main__":
    main()
