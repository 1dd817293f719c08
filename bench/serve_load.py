"""Serving load benchmark, vLLM-bench style: TTFT, TPOT, inter-token latency,
end-to-end latency (mean, p50, p99, p99.9) and requests/s at several
concurrency levels, side by side in one run:

  gateway: streaming POST /v1/completions → our Triton backend → Triton (gRPC, decoupled)
  direct:  tritonclient.grpc.aio stream_infer → the same Triton model, tokenising and
           detokenising in the client, as an application without the gateway would.

Both stream greedy answers to the same 250-character prompts, so both sides
do identical work on the server; the ratio is the gateway's cost. The server
is the test Triton (nvidia-pytriton, tiny model on CPU: tests/triton_support.py).

    .venv/bin/python bench/serve_load.py [--levels 1,16,60,104] [--requests 208]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from inference.text import IncrementalDecoder  # noqa: E402
from tests.triton_support import start_triton  # noqa: E402
from training_jobs.tiny import TinyModelSpec, make_tiny_model  # noqa: E402
from bench.webstack import CREATE_USER_AND_KEY, web_stack  # noqa: E402

MODEL = "tiny_ft_stream"
ITEMS = ["空气炸锅", "洗衣机", "冰箱", "耳机", "口红", "羽绒服", "扫地机器人", "牙刷", "air fryer", "headphones"]


def make_prompts(count: int, chars: int = 250, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    prompts = []
    for _ in range(count):
        text = ""
        while len(text) < chars:
            text += f"品类结构:家用电器,{rng.choice(ITEMS)}。售后服务:七天无理由退换,{rng.randint(1, 999)}元。"
        prompts.append(text[:chars])
    return prompts


@dataclass
class Sample:
    ttft: float
    e2e: float
    itl: list[float]
    tokens: int


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Level:
    side: str
    concurrency: int
    wall: float
    samples: list[Sample] = field(default_factory=list)
    errors: int = 0
    gateway_cpu_ms: float = float("nan")  # CPU the gateway process spent per request

    def row(self) -> dict[str, float]:
        def ms(values: list[float], q: float | None = None) -> float:
            if not values:
                return float("nan")
            return 1000 * (statistics.fmean(values) if q is None else float(np.percentile(values, q)))

        ttft = [s.ttft for s in self.samples]
        e2e = [s.e2e for s in self.samples]
        itl = [x for s in self.samples for x in s.itl]
        tpot = [(s.e2e - s.ttft) / (s.tokens - 1) for s in self.samples if s.tokens > 1]
        tokens = sum(s.tokens for s in self.samples)
        return {
            "req_s": len(self.samples) / self.wall, "tok_s": tokens / self.wall, "errors": self.errors,
            "ttft_mean": ms(ttft), "ttft_p50": ms(ttft, 50), "ttft_p99": ms(ttft, 99), "ttft_p999": ms(ttft, 99.9),
            "tpot_mean": ms(tpot), "tpot_p99": ms(tpot, 99),
            "itl_mean": ms(itl), "itl_p99": ms(itl, 99),
            "e2e_mean": ms(e2e), "e2e_p50": ms(e2e, 50), "e2e_p99": ms(e2e, 99), "e2e_p999": ms(e2e, 99.9),
            "tokens_per_req": tokens / max(1, len(self.samples)), "gw_cpu_ms": self.gateway_cpu_ms,
        }


async def run_level(side: str, concurrency: int, prompts: list[str], one) -> Level:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    level = Level(side, concurrency, 0.0)

    async def worker() -> None:
        while not queue.empty():
            prompt = queue.get_nowait()
            try:
                level.samples.append(await one(prompt))
            except Exception as error:  # noqa: BLE001 - counted and reported
                level.errors += 1
                if level.errors <= 3:
                    print(f"  {side} error: {error!r}", file=sys.stderr)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    level.wall = time.perf_counter() - started
    return level


def gateway_client(base: str, key: str, max_tokens: int):
    client = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120,
                               limits=httpx.Limits(max_connections=512, max_keepalive_connections=512))

    async def one(prompt: str) -> Sample:
        body = {"model": "bench-triton", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True}
        started = last = time.perf_counter()
        first = None
        itl: list[float] = []
        pieces = 0
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {(await response.aread())[:200]!r}")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    raise RuntimeError(event["error"]["message"])
                if event["choices"] and event["choices"][0]["text"]:
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    else:
                        itl.append(now - last)
                    last = now
                    pieces += 1
        end = time.perf_counter()
        return Sample((first or end) - started, end - started, itl, pieces)

    return client, one


def direct_client(grpc_url: str, model_dir: Path, max_tokens: int):
    import tritonclient.grpc.aio as grpcclient
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    client = grpcclient.InferenceServerClient(grpc_url.removeprefix("grpc://"))
    end_id = tokenizer.eos_token_id

    def inputs(ids: list[int]) -> list:
        tensors = []
        for name, value, dtype in (
            ("input_ids", np.array([ids], dtype=np.uint32), "UINT32"),
            ("input_lengths", np.array([[len(ids)]], dtype=np.uint32), "UINT32"),
            ("request_output_len", np.array([[max_tokens]], dtype=np.uint32), "UINT32"),
            ("runtime_top_k", np.array([[1]], dtype=np.uint32), "UINT32"),
            ("end_id", np.array([[end_id]], dtype=np.uint32), "UINT32"),
        ):
            tensor = grpcclient.InferInput(name, list(value.shape), dtype)
            tensor.set_data_from_numpy(value)
            tensors.append(tensor)
        return tensors

    async def one(prompt: str) -> Sample:
        started = last = time.perf_counter()
        ids = tokenizer(prompt)["input_ids"]
        decoder = IncrementalDecoder(tokenizer)
        seen = len(ids)
        first = None
        itl: list[float] = []
        pieces = 0

        async def requests():
            yield {"model_name": MODEL, "inputs": inputs(ids), "enable_empty_final_response": True}

        async for result, error in client.stream_infer(requests()):
            if error is not None:
                raise RuntimeError(str(error))
            output = result.as_numpy("output_ids")
            final = result.get_response().parameters.get("triton_final_response")
            if output is not None:
                sequence = output[0, 0].tolist()
                new = sequence[seen:]
                if end_id in new:
                    new = new[: new.index(end_id)]
                seen += len(new)
                if new and decoder.push(new):
                    now = time.perf_counter()
                    if first is None:
                        first = now
                    else:
                        itl.append(now - last)
                    last = now
                    pieces += len(new)
            if final is not None and final.bool_param:
                break
        end = time.perf_counter()
        return Sample((first or end) - started, end - started, itl, pieces)

    return client, one


@contextmanager
def gateway(model_dir: Path, triton_grpc: str, workdir: Path) -> Iterator[tuple[str, str, int]]:
    """The web server (uvicorn, as `make run` starts it) on a throwaway SQLite
    database with one Triton deployment."""
    setup = CREATE_USER_AND_KEY + (
        "from webapp.deployments.models import Deployment;"
        f"Deployment.objects.create(owner=u, name='bench-triton', kind='triton', endpoint_url='{triton_grpc}',"
        f" server_model='{MODEL}', model_path='{model_dir}', options={{'protocol': 'fastertransformer', 'stream': True}});"
        "print(k.raw)"
    )
    try:
        with web_stack(workdir, setup=setup) as stack:
            yield stack.base, stack.setup_output, stack.pid
    finally:
        if (workdir / "web.log").exists():
            shutil.copy(workdir / "web.log", Path(tempfile.gettempdir()) / "serve_load_web.log")


def pin(pids: list[int], cores: set[int]) -> None:
    """Every thread of these processes (and what they start later) on `cores`."""
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", ",".join(map(str, sorted(cores))), str(pid)],
                       check=True, capture_output=True)


def session_pids(leader: int) -> list[int]:
    out = subprocess.run(["pgrep", "-s", str(leader)], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny BLOOM built here)")
    parser.add_argument("--levels", default="1,16,60,104")
    parser.add_argument("--requests", type=int, default=208, help="requests per level and side (at least 5× the level: fewer waves are dominated by the opening burst)")
    parser.add_argument("--max-tokens", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--no-pin", action="store_true",
                        help="do not give Triton its own core (by default the last core is Triton's, standing for "
                             "the GPU box, and the gateway (uvicorn) and this load generator share the others)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if not args.no_pin and len(os.sched_getaffinity(0)) >= 2:
        # One core for the server: more torch/OpenMP threads than cores spin
        # against each other (0.8 req/s instead of ~20 at concurrency 1).
        os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model or workdir / "model"
        if args.model is None:
            make_tiny_model(TinyModelSpec(arch="bloom", seed=0), model_dir)
        with start_triton(model_dir, workdir / "triton.log") as triton, gateway(model_dir, triton.grpc_url, workdir) as (base, key, web_pid):
            cores = sorted(os.sched_getaffinity(0))
            if not args.no_pin and len(cores) >= 2:
                server_core, client_cores = {cores[-1]}, set(cores[:-1])
                pin(session_pids(triton.pid), server_core)
                pin([web_pid, os.getpid()], client_cores)
                print(f"Triton on core {cores[-1]}; gateway and load generator on cores {sorted(client_cores)}")
            args.web_pid = web_pid
            results = asyncio.run(measure(base, key, triton.grpc_url, model_dir, levels, args))
    report(results, args.json)


async def measure(base: str, key: str, grpc_url: str, model_dir: Path, levels: list[int], args) -> list[Level]:
    gw_client, gw_one = gateway_client(base, key, args.max_tokens)
    dc_client, dc_one = direct_client(grpc_url, model_dir, args.max_tokens)
    await run_level("gateway", 4, make_prompts(16, seed=99), gw_one)  # warm-up: model load, connections
    await run_level("direct", 4, make_prompts(16, seed=99), dc_one)
    results = []
    for concurrency in levels:
        prompts = make_prompts(max(args.requests, 5 * concurrency), seed=concurrency)
        # Alternate the order per level so neither side always runs on a warmer machine.
        order = [("direct", dc_one), ("gateway", gw_one)] if concurrency % 2 == 0 else [("gateway", gw_one), ("direct", dc_one)]
        for side, one in order:
            cpu_before = cpu_seconds(args.web_pid)
            level = await run_level(side, concurrency, prompts, one)
            if side == "gateway":
                level.gateway_cpu_ms = 1000 * (cpu_seconds(args.web_pid) - cpu_before) / max(1, len(level.samples))
            results.append(level)
            row = level.row()
            print(f"{side:8s} c={concurrency:4d}  {row['req_s']:7.1f} req/s  TTFT p50 {row['ttft_p50']:7.1f} ms  "
                  f"E2E p99.9 {row['e2e_p999']:7.1f} ms  errors {level.errors}", flush=True)
    await gw_client.aclose()
    await dc_client.close()
    return results


def report(results: list[Level], json_path: Path | None) -> None:
    rows = {(level.side, level.concurrency): level.row() for level in results}
    columns = ["req_s", "tok_s", "ttft_mean", "ttft_p50", "ttft_p99", "ttft_p999", "tpot_mean", "itl_mean", "itl_p99",
               "e2e_mean", "e2e_p50", "e2e_p99", "e2e_p999", "tokens_per_req", "gw_cpu_ms", "errors"]
    print("\nside     conc " + " ".join(f"{c:>10s}" for c in columns))
    for (side, concurrency), row in rows.items():
        print(f"{side:8s} {concurrency:4d} " + " ".join(f"{row[c]:10.1f}" for c in columns))
    print("\ngateway vs direct (same Triton, same prompts):")
    for concurrency in sorted({c for _, c in rows}):
        gw, dc = rows[("gateway", concurrency)], rows[("direct", concurrency)]
        print(f"  c={concurrency:4d}: throughput ratio {gw['req_s'] / dc['req_s']:.2f}, "
              f"added E2E p99.9 {gw['e2e_p999'] - dc['e2e_p999']:+.1f} ms, added TTFT p50 {gw['ttft_p50'] - dc['ttft_p50']:+.1f} ms")
    if json_path:
        json_path.write_text(json.dumps({f"{s}@{c}": r for (s, c), r in rows.items()}, indent=2))


if __name__ == "__main__":
    main()
