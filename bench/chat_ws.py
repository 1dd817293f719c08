"""Chat websocket load: N concurrent /ws/chat/ connections, each sending
`send` frames (greedy, 20 tokens, serve_load's 250-character prompts) and
reading to `done`, against a local tiny BLOOM and against the Triton backend
(the test tritonserver serving the same model under FasterTransformer names).

For every chat the client records send → `start`, send → first `delta`
(client TTFT), send → `done`, and the `ttft_ms` the server reports in
`done`. That figure is timed by `AnswerRun.run()` (webapp/chat/streaming.py)
from the moment the backend stream is opened to its first text: it includes
the backend's own queueing (the local engine's batch slots, Triton's
serialised model) but not what the consumer does before it (the turn
previewed from the database, the `start` frame) nor the sending of the
`delta`. The turn's write runs alongside the stream (`stored` frame) and is
not on this path. So, per chat:

  overhead = client TTFT - server ttft_ms      (the websocket path's cost at TTFT)
           = (send → start)                    receive frame + preview the turn (DB reads) + start frame
           + (start → first delta - ttft_ms)   backend lookup, delta frame out, client read

As a cross-check of the backend figure, the same prompts (rendered as the
consumer renders them) also go, at the same concurrency, to the backend
alone: `backend.stream()` called in this process (LocalBackend / TritonBackend,
the objects the web process pools), and for Triton also raw `tritonclient`
(serve_load's direct client). "Dropped" is a connection that fails, closes
early, sends an `error`, or never gets `done`; at the end `--idle-sockets`
sockets are left without traffic for `--idle` seconds and pinged (a user
reading an answer: before the channel layer's socket_timeout was raised,
redis-py 8's 5 s read timeout killed idle consumers every ~5 s).

    .venv/bin/python bench/chat_ws.py [--levels 1,16,200] [--backends local,triton] [--max-tokens 20]
        [--db sqlite|postgres] [--idle 30] [--json FILE]

As serve_load, Triton gets its own core (standing for the GPU box) unless
--no-pin; the web process (which also runs the local engine) and this client
share the others. The web process is webstack's (uvicorn, SQLite, embedded
Redis); `--db postgres` runs it on a throwaway PostgreSQL instead, as in
production (each ORM call of the consumer then opens a connection: CONN_MAX_AGE
is 0).
The ttft_ms the server reports is a whole number of milliseconds (floored),
so the overhead reads up to 1 ms high.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from bench.serve_load import MODEL, cpu_seconds, direct_client, make_prompts, pin, session_pids  # noqa: E402
from bench.webstack import CREATE_USER_AND_KEY, web_stack  # noqa: E402
from tests.triton_support import start_triton  # noqa: E402
from training_jobs.tiny import TinyModelSpec, make_tiny_model  # noqa: E402
from webapp.lib.embedded_redis import free_port  # noqa: E402

DEPLOYMENTS = {"local": "bench-local", "triton": "bench-triton"}
NAN = float("nan")


# --------------------------------------------------------------------------
# Samples


@dataclass
class Chat:
    """One websocket chat; times in seconds from just before the `send` frame."""

    done: bool = False
    why: str = ""  # why it was dropped
    start: float = NAN  # → start frame
    ttft: float = NAN  # → first delta
    total: float = NAN  # → done
    server_ttft_ms: float = NAN
    server_latency_ms: float = NAN
    status: str = ""
    text: str = ""

    @property
    def overhead_ms(self) -> float:
        return 1000 * self.ttft - self.server_ttft_ms

    @property
    def after_start_ms(self) -> float:
        return 1000 * (self.ttft - self.start) - self.server_ttft_ms


@dataclass
class Direct:
    ttft: float
    total: float
    text: str


@dataclass
class Level:
    backend: str
    concurrency: int
    chats: list[Chat] = field(default_factory=list)
    connect: list[float] = field(default_factory=list)  # seconds per opened socket
    connect_failed: int = 0
    wall: float = NAN
    web_cpu_ms: float = NAN  # web-process CPU per chat
    inproc: list[Direct] = field(default_factory=list)
    inproc_errors: int = 0
    inproc_cpu_ms: float = NAN  # this process's CPU per request (for local: the engine's compute included)
    raw: list[Direct] = field(default_factory=list)
    raw_errors: int = 0

    @property
    def dropped(self) -> int:
        return self.connect_failed + sum(not c.done for c in self.chats)


def pct(values: list[float], q: float) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.percentile(values, q)) if values else NAN


# --------------------------------------------------------------------------
# The websocket side


async def ws_level(level: Level, url: str, origin: str, cookie: str, model: str, prompts: list[str],
                   max_tokens: int, timeout: float) -> None:
    from websockets.asyncio.client import connect

    async def open_socket():
        started = time.perf_counter()
        try:
            socket = await connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={cookie}"},
                                   open_timeout=timeout, ping_interval=None, max_size=None)
        except Exception as error:  # noqa: BLE001 - counted as dropped
            level.connect_failed += 1
            if level.connect_failed <= 3:
                print(f"  connect failed: {error!r}", file=sys.stderr)
            return None
        level.connect.append(time.perf_counter() - started)
        return socket

    sockets = [s for s in await asyncio.gather(*(open_socket() for _ in range(level.concurrency))) if s is not None]
    queue = list(reversed(prompts))

    async def one(socket, number: int, prompt: str) -> Chat:
        chat = Chat()
        request = f"r{number}"
        frame = {"type": "send", "request": request, "conversation": None, "model": model, "content": prompt,
                 "params": {"decoder": "greedy", "max_tokens": max_tokens}}
        parts: list[str] = []
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await socket.send(json.dumps(frame))
                async for message in socket:
                    now = time.perf_counter() - started
                    event = json.loads(message)
                    kind = event.get("type")
                    if kind == "start":
                        chat.start = now
                    elif kind == "delta":
                        if not parts:
                            chat.ttft = now
                        parts.append(event["text"])
                    elif kind == "error":
                        chat.why = f"error frame: {event.get('message')}"
                    elif kind == "done":
                        chat.total = now
                        chat.status = event["status"]
                        chat.server_ttft_ms = NAN if event["ttft_ms"] is None else float(event["ttft_ms"])
                        chat.server_latency_ms = float(event["latency_ms"])
                        chat.done = not chat.why and chat.status == "complete"
                        if not chat.done and not chat.why:
                            chat.why = f"done with status {chat.status}"
                        break
                else:
                    chat.why = f"closed before done (code {socket.close_code})"
        except TimeoutError:
            chat.why = f"no done after {timeout:.0f} s"
        except Exception as error:  # noqa: BLE001 - counted as dropped
            chat.why = f"{type(error).__name__}: {error}"
        chat.text = "".join(parts)
        return chat

    counter = iter(range(10**9))

    async def worker(socket) -> None:
        while queue:
            chat = await one(socket, next(counter), queue.pop())
            level.chats.append(chat)
            if not chat.done and len([c for c in level.chats if not c.done]) <= 3:
                print(f"  {level.backend} c={level.concurrency} dropped: {chat.why}", file=sys.stderr)
            if chat.why.startswith(("closed", "ConnectionClosed")):
                return  # this socket is gone

    started = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in sockets))
    level.wall = time.perf_counter() - started
    # Prompts left on the queue (every socket died) are chats that never ran.
    level.chats.extend(Chat(why="never sent: no socket left") for _ in queue)
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


async def idle_check(url: str, origin: str, cookie: str, sockets: int, seconds: float) -> tuple[int, int]:
    """Open `sockets` chat sockets, leave them idle `seconds` (a user reading
    an answer), then ping each: how many still answer."""
    from websockets.asyncio.client import connect

    opened = await asyncio.gather(*(connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={cookie}"},
                                            ping_interval=None) for _ in range(sockets)))
    await asyncio.sleep(seconds)
    alive = 0
    for socket in opened:
        try:
            await socket.send(json.dumps({"type": "ping"}))
            async with asyncio.timeout(10):
                alive += json.loads(await socket.recv()).get("type") == "pong"
        except Exception:  # noqa: BLE001 - a dropped socket is what this counts
            pass
    await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)
    return alive, sockets


# --------------------------------------------------------------------------
# The backend alone, at the same concurrency


async def run_direct(concurrency: int, prompts: list[str], one) -> tuple[list[Direct], int]:
    queue = list(reversed(prompts))
    results: list[Direct] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while queue:
            prompt = queue.pop()
            try:
                results.append(await one(prompt))
            except Exception as error:  # noqa: BLE001 - counted and reported
                errors += 1
                if errors <= 3:
                    print(f"  direct error: {error!r}", file=sys.stderr)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results, errors


def inproc_client(backend, max_tokens: int):
    """`backend.stream()` as the consumer calls it (generation_stream: the
    stop-string wrapper, no stop strings here), TTFT timed as AnswerRun does."""
    from inference.base import GenerationRequest
    from inference.params import sampling_params
    from inference.text import apply_stop_strings

    params = sampling_params({"decoder": "greedy", "max_tokens": max_tokens})

    async def one(prompt: str) -> Direct:
        request = GenerationRequest(params=params, messages=({"role": "user", "content": prompt},))
        started = time.perf_counter()
        first = None
        parts: list[str] = []
        stream = apply_stop_strings(backend.stream(request), params.stop)
        try:
            async for chunk in stream:
                if chunk.text:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(chunk.text)
        finally:
            await stream.aclose()
        end = time.perf_counter()
        return Direct((first or end) - started, end - started, "".join(parts))

    return one


def raw_triton_client(grpc_url: str, model_dir: Path, max_tokens: int):
    """serve_load's tritonclient client on the prompt as the consumer renders it."""
    from inference.prompts import SEED_TEMPLATE, render

    _, sample_one = direct_client(grpc_url, model_dir, max_tokens)

    async def one(prompt: str) -> Direct:
        sample = await sample_one(render([{"role": "user", "content": prompt}], SEED_TEMPLATE, None))
        return Direct(sample.ttft, sample.e2e, "")

    return one


# --------------------------------------------------------------------------
# Server variant: the production database


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL (the production database, docker-compose.yml)
    on a free port, trust auth; yields its DATABASE_URL."""
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is None:
        raise SystemExit("--db postgres needs PostgreSQL's binaries (pg_ctl, initdb, postgres) on PATH")
    bindir = Path(pg_ctl).resolve().parent
    home = Path(tempfile.mkdtemp(prefix="chat-ws-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        shutil.chown(home, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = home / "data"
    subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    with open(home / "postgres.log", "ab") as log:
        server = subprocess.Popen([*as_owner, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(home),
                                   "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=500"],
                                  stdout=log, stderr=subprocess.STDOUT)
    try:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                     autocommit=True) as connection:
                    connection.execute("CREATE DATABASE bench")
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start; see {home / 'postgres.log'}") from None
                time.sleep(0.2)
        yield f"postgres://postgres@127.0.0.1:{port}/bench"
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def server_env(args) -> Iterator[dict[str, str]]:
    """What the web process's environment adds to webstack's (SQLite, an
    embedded Redis) for the chosen variant."""
    if args.db == "postgres":
        with postgres_server() as url:
            yield {"DATABASE_URL": url}
    else:
        yield {}


# --------------------------------------------------------------------------
# The run


def setup_snippet(model_dir: Path, grpc_url: str, max_batch_size: int) -> str:
    return CREATE_USER_AND_KEY + (
        "from webapp.deployments.models import Deployment;"
        f"Deployment.objects.create(owner=u, name='{DEPLOYMENTS['local']}', kind='local', model_path='{model_dir}',"
        f" options={{'max_batch_size': {max_batch_size}}});"
        f"Deployment.objects.create(owner=u, name='{DEPLOYMENTS['triton']}', kind='triton', endpoint_url='{grpc_url}',"
        f" server_model='{MODEL}', model_path='{model_dir}', options={{'protocol': 'fastertransformer', 'stream': True}});"
        "from django.test import Client;c = Client();c.force_login(u);print(c.cookies['sessionid'].value)"
    )


def backend_config(kind: str, model_dir: Path, grpc_url: str, max_batch_size: int):
    """What webapp.deployments.services.backend_config makes of the two rows above."""
    from inference.config import BackendConfig

    if kind == "local":
        return BackendConfig(kind="local", model_path=str(model_dir), options={"max_batch_size": max_batch_size})
    return BackendConfig(kind="triton", model_path=str(model_dir), endpoint=grpc_url, server_model=MODEL,
                         options={"protocol": "fastertransformer", "stream": True})


async def measure(args, base: str, cookie: str, web_pid: int, model_dir: Path, grpc_url: str) -> tuple[list[Level], Any]:
    from inference.config import create_backend

    port = base.rsplit(":", 1)[1]
    url, origin = f"ws://127.0.0.1:{port}/ws/chat/", f"http://127.0.0.1:{port}"
    results: list[Level] = []
    for kind in args.backends:
        backend = create_backend(backend_config(kind, model_dir, grpc_url, args.max_batch_size))
        inproc = inproc_client(backend, args.max_tokens)
        raw = raw_triton_client(grpc_url, model_dir, args.max_tokens) if kind == "triton" else None
        # Warm-up outside the clock: the web process loads the local model on
        # its first request; connections, tokenizers, model metadata.
        warm = make_prompts(8, seed=99)
        await ws_level(Level(kind, 4), url, origin, cookie, DEPLOYMENTS[kind], warm, args.max_tokens, args.timeout)
        await run_direct(4, warm, inproc)
        if raw is not None:
            await run_direct(4, warm, raw)
        for concurrency in args.levels:
            prompts = make_prompts(max(concurrency * args.rounds, args.min_chats), seed=concurrency)
            level = Level(kind, concurrency)
            sides = ["ws", "inproc"] + (["raw"] if raw is not None else [])
            if concurrency % 2:  # alternate which side runs on a warmer machine
                sides.reverse()
            for side in sides:
                if side == "ws":
                    before = cpu_seconds(web_pid)
                    await ws_level(level, url, origin, cookie, DEPLOYMENTS[kind], prompts, args.max_tokens, args.timeout)
                    level.web_cpu_ms = 1000 * (cpu_seconds(web_pid) - before) / max(1, len(level.chats))
                elif side == "inproc":
                    before = time.process_time()
                    level.inproc, level.inproc_errors = await run_direct(concurrency, prompts, inproc)
                    level.inproc_cpu_ms = 1000 * (time.process_time() - before) / max(1, len(level.inproc))
                else:
                    level.raw, level.raw_errors = await run_direct(concurrency, prompts, raw)
            results.append(level)
            print_level(level, flush=True)
        await backend.close()
    idle = None
    if args.idle > 0:
        idle = await idle_check(url, origin, cookie, args.idle_sockets, args.idle)
        print(f"idle sockets: {idle[0]}/{idle[1]} still answer a ping after {args.idle:g} s idle", flush=True)
    return results, idle


def summary(level: Level) -> dict[str, Any]:
    done = [c for c in level.chats if c.done]
    row = {
        "backend": level.backend, "concurrency": level.concurrency, "chats": len(level.chats),
        "dropped": level.dropped, "connect_p99_ms": 1000 * pct(level.connect, 99),
        "client_ttft_p50": 1000 * pct([c.ttft for c in done], 50), "client_ttft_p99": 1000 * pct([c.ttft for c in done], 99),
        "server_ttft_p50": pct([c.server_ttft_ms for c in done], 50),
        "server_ttft_p99": pct([c.server_ttft_ms for c in done], 99),
        "overhead_p50": pct([c.overhead_ms for c in done], 50), "overhead_p99": pct([c.overhead_ms for c in done], 99),
        "overhead_max": max((c.overhead_ms for c in done), default=NAN),
        "send_start_p50": 1000 * pct([c.start for c in done], 50), "send_start_p99": 1000 * pct([c.start for c in done], 99),
        "after_start_p50": pct([c.after_start_ms for c in done], 50),
        "after_start_p99": pct([c.after_start_ms for c in done], 99),
        "total_p99": 1000 * pct([c.total for c in done], 99),
        "inproc_ttft_p50": 1000 * pct([d.ttft for d in level.inproc], 50),
        "inproc_ttft_p99": 1000 * pct([d.ttft for d in level.inproc], 99),
        "inproc_errors": level.inproc_errors,
        "raw_ttft_p50": 1000 * pct([d.ttft for d in level.raw], 50), "raw_ttft_p99": 1000 * pct([d.ttft for d in level.raw], 99),
        "raw_errors": level.raw_errors, "web_cpu_ms_per_chat": level.web_cpu_ms, "inproc_cpu_ms": level.inproc_cpu_ms,
        "chats_per_s": len(done) / level.wall,
    }
    # Greedy: the websocket answers should be the in-process backend's, text for text.
    inproc_texts = sorted(d.text for d in level.inproc)
    row["same_answers"] = sum(a == b for a, b in zip(sorted(c.text for c in done), inproc_texts))
    return row


def print_level(level: Level, flush: bool = False) -> None:
    r = summary(level)
    print(f"{r['backend']:6s} c={r['concurrency']:3d}  chats {r['chats']}  dropped {r['dropped']}  "
          f"client TTFT p50/p99 {r['client_ttft_p50']:.1f}/{r['client_ttft_p99']:.1f} ms  "
          f"server ttft_ms {r['server_ttft_p50']:.0f}/{r['server_ttft_p99']:.0f}  "
          f"overhead {r['overhead_p50']:.1f}/{r['overhead_p99']:.1f} ms  "
          f"in-process TTFT {r['inproc_ttft_p50']:.1f}/{r['inproc_ttft_p99']:.1f} ms", flush=flush)


def report(results: list[Level], json_path: Path | None) -> None:
    rows = [summary(level) for level in results]
    columns = [
        ("chats", "chats"), ("dropped", "dropped"), ("client_ttft_p50", "cTTFT50"), ("client_ttft_p99", "cTTFT99"),
        ("server_ttft_p50", "sTTFT50"), ("server_ttft_p99", "sTTFT99"), ("overhead_p50", "ovh50"),
        ("overhead_p99", "ovh99"), ("overhead_max", "ovhmax"), ("send_start_p50", "s→st50"),
        ("send_start_p99", "s→st99"), ("after_start_p50", "post50"), ("after_start_p99", "post99"),
        ("inproc_ttft_p50", "inpr50"), ("inproc_ttft_p99", "inpr99"), ("raw_ttft_p50", "raw50"),
        ("raw_ttft_p99", "raw99"), ("connect_p99_ms", "conn99"), ("total_p99", "e2e99"),
        ("web_cpu_ms_per_chat", "webCPU"), ("inproc_cpu_ms", "inprCPU"), ("chats_per_s", "chat/s"),
        ("same_answers", "same"),
    ]
    print("\nms; cTTFT = client send → first delta, sTTFT = ttft_ms in done, ovh = cTTFT - sTTFT per chat,\n"
          "s→st = send → start frame, post = start → first delta - sTTFT, inpr = backend.stream() in-process,\n"
          "raw = tritonclient direct, webCPU = web-process CPU ms per chat, inprCPU = the same for backend.stream() alone,\n"
          "conn99 = websocket connect (handshake + session), same = answers identical to in-process")
    print("backend conc " + " ".join(f"{label:>8s}" for _, label in columns))
    for row in rows:
        print(f"{row['backend']:7s} {row['concurrency']:4d} " + " ".join(f"{row[key]:8.1f}" for key, _ in columns))
    if json_path:
        json_path.write_text(json.dumps({"rows": rows, "chats": {
            f"{level.backend}@{level.concurrency}": [asdict(c) for c in level.chats] for level in results}}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--levels", default="1,16,200", help="concurrent websocket connections per level")
    parser.add_argument("--backends", default="local,triton")
    parser.add_argument("--rounds", type=int, default=1, help="chats per connection at each level (back to back)")
    parser.add_argument("--min-chats", type=int, default=40, help="at least this many chats per level (low levels)")
    parser.add_argument("--max-tokens", type=int, default=20)
    parser.add_argument("--max-batch-size", type=int, default=32, help="the local deployment's engine batch")
    parser.add_argument("--layers", type=int, default=2, help="tiny BLOOM layers (both backends serve it)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a chat may take before it counts as dropped")
    parser.add_argument("--json", type=Path, help="write the figures (and every chat) here too")
    parser.add_argument("--no-pin", action="store_true", help="do not give Triton its own core")
    parser.add_argument("--idle", type=float, default=30.0,
                        help="at the end, leave --idle-sockets chat sockets idle this long and ping them (0: skip)")
    parser.add_argument("--idle-sockets", type=int, default=20)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                        help="the web process's database: webstack's SQLite file (default) or a throwaway PostgreSQL, "
                             "as in production (needs the PostgreSQL binaries)")
    args = parser.parse_args()
    args.levels = [int(x) for x in args.levels.split(",")]
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not set(args.backends) <= set(DEPLOYMENTS):
        parser.error(f"--backends: {', '.join(DEPLOYMENTS)}")
    pinning = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
    if pinning:
        os.environ["OMP_NUM_THREADS"] = "1"  # as serve_load: more torch threads than cores spin
    with tempfile.TemporaryDirectory(prefix="chat-ws-") as tmp:
        workdir = Path(tmp)
        model_dir = workdir / "model"
        summary_ = make_tiny_model(TinyModelSpec(arch="bloom", layers=args.layers, hidden=args.hidden, seed=0), model_dir)
        print(f"model: random BLOOM, {summary_['parameters']:,} parameters; {args.max_tokens} tokens, greedy; "
              f"levels {args.levels}; backends {args.backends}; database {args.db}")
        try:
            with start_triton(model_dir, workdir / "triton.log") as triton, server_env(args) as env, \
                    web_stack(workdir / "web", setup=setup_snippet(model_dir, triton.grpc_url, args.max_batch_size),
                              env=env) as stack:
                cores = sorted(os.sched_getaffinity(0))
                if pinning:
                    pin(session_pids(triton.pid), {cores[-1]})
                    pin([stack.pid, os.getpid()], set(cores[:-1]))
                    print(f"Triton on core {cores[-1]}; web process (with the local engine) and this client on {cores[:-1]}")
                results, idle = asyncio.run(
                    measure(args, stack.base, stack.setup_output, stack.pid, model_dir, triton.grpc_url))
                report(results, args.json)
                if idle is not None:
                    print(f"idle: {idle[0]}/{idle[1]} sockets alive after {args.idle:g} s without traffic")
                log = stack.log.read_text(errors="replace")
                print(f"web log: {log.count('redis.exceptions.TimeoutError')} channel-layer Redis read timeouts, "
                      f"{log.count('Exception in ASGI application')} consumers crashed")
        finally:
            if (workdir / "web" / "web.log").exists():
                shutil.copy(workdir / "web" / "web.log", Path(tempfile.gettempdir()) / "chat_ws_web.log")


if __name__ == "__main__":
    main()
