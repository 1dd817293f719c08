"""A real Triton Inference Server serving a tiny causal LM, for the `triton`
backend's tests and for benchmarks.

It is nvidia-pytriton's bundled tritonserver (runs on CPU) with Python models
that run the real model through `model.generate`, bound under the tensor
names the production engines use:

- `tiny_ft`: FasterTransformer (`input_ids`, `input_lengths`,
  `request_output_len`, `runtime_top_k`, ... → `output_ids` [batch, beam,
  seq] holding prompt + answer, `sequence_length`); stops at `end_id`.
- `tiny_ft_stream`: the same, decoupled: one response per new token, each
  carrying the whole sequence so far (as FasterTransformer streams).
- `tiny_ft_noeos`: like `tiny_ft` but ignores `end_id` and always generates
  `request_output_len` tokens (some engines do), so a client must cut at EOS.
- `tiny_trtllm`: TensorRT-LLM ensemble (`text_input`, `max_tokens`, `top_k`,
  `top_p`, `temperature`, `repetition_penalty`, `random_seed`, `stream` →
  `text_output`, the answer without the prompt); stops at the tokenizer's EOS.
- `tiny_trtllm_stream`: the same, decoupled: with `stream` true each
  response's `text_output` is the new text only.

pytriton 0.7 does not pass a client's cancellation on to the model: a
cancelled stream is generated to its budget (the client has moved on), and
the next request on that model waits for it.

Sampling follows the engines: top-k 1, or top-k 0 with top-p 0 (both
defaults), is greedy; otherwise `do_sample` with top-k (0: off), top-p,
temperature; `random_seed` seeds torch before generating.

Run it: `python -m tests.triton_support --model-dir DIR --http-port P
--grpc-port Q --metrics-port R` (the CLI is used by benchmarks: keep it
stable). Tests use `start_triton`, which runs that command in its own process
group and kills the group at exit.
"""
from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODEL_NAMES = ("tiny_ft", "tiny_ft_stream", "tiny_ft_noeos", "tiny_trtllm", "tiny_trtllm_stream")
MAX_BATCH_SIZE = 8


# --------------------------------------------------------------------------
# Generation (runs in the server process)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Decoding:
    """One request's decoding settings, in engine terms."""

    max_new_tokens: int
    top_k: int = 0
    top_p: float = 0.0
    temperature: float = 1.0
    repetition_penalty: float = 1.0
    seed: int | None = None
    end_id: int | None = None

    @property
    def greedy(self) -> bool:
        return self.top_k == 1 or (self.top_k == 0 and self.top_p == 0.0)

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty,
            # None really disables stopping (checked with transformers 5):
            # the model's own EOS is not the engine's business here.
            "eos_token_id": self.end_id,
        }
        if self.greedy:
            return {**kwargs, "do_sample": False}
        return {
            **kwargs,
            "do_sample": True,
            "top_k": self.top_k,
            "top_p": self.top_p if self.top_p > 0 else 1.0,
            "temperature": self.temperature,
        }


class TinyLM:
    """The model and tokenizer, with generation serialised by a lock: a
    `random_seed` seeds torch's global generator, which concurrent requests
    on other models would otherwise share."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
        self.lock = threading.Lock()

    def _generate(self, prompt_ids: list[int], decoding: Decoding, **extra: Any) -> list[int]:
        torch = self.torch
        ids = torch.tensor([prompt_ids], dtype=torch.long)
        with self.lock, torch.no_grad():
            if decoding.seed is not None:
                torch.manual_seed(decoding.seed)
            out = self.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                pad_token_id=self.tokenizer.pad_token_id,
                **decoding.generate_kwargs(),
                **extra,
            )
        return [int(t) for t in out[0, len(prompt_ids) :]]

    def generate(self, prompt_ids: list[int], decoding: Decoding) -> list[int]:
        """The new tokens (including the end id when it was produced)."""
        return self._generate(prompt_ids, decoding)

    def stream(self, prompt_ids: list[int], decoding: Decoding) -> Iterator[list[int]]:
        """The new tokens so far, after each token. Closing the iterator
        stops the generation at the next step."""
        from transformers.generation.stopping_criteria import StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        torch = self.torch
        tokens: queue.Queue[list[int] | BaseException | None] = queue.Queue()
        cancelled = threading.Event()

        class Collect(BaseStreamer):
            def __init__(self) -> None:
                self.prompt_done = False

            def put(self, value: Any) -> None:
                if not self.prompt_done:  # generate() first hands over the prompt
                    self.prompt_done = True
                    return
                tokens.put([int(t) for t in value.reshape(-1)])

            def end(self) -> None:
                tokens.put(None)

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool)

        def run() -> None:
            try:
                stop = StoppingCriteriaList([Cancelled()])
                self._generate(prompt_ids, decoding, streamer=Collect(), stopping_criteria=stop)
            except BaseException as error:  # handed to the consumer, raised there
                tokens.put(error)

        worker = threading.Thread(target=run, name="tiny-generate", daemon=True)
        worker.start()
        so_far: list[int] = []
        try:
            while (item := tokens.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                so_far.extend(item)
                yield list(so_far)
        finally:
            cancelled.set()
            worker.join()


# --------------------------------------------------------------------------
# Triton models (pytriton infer functions)
# --------------------------------------------------------------------------


def _scalar(request: Mapping[str, np.ndarray], name: str, row: int, default: Any) -> Any:
    """An optional [batch, 1] input's value for one row."""
    if name not in request:
        return default
    return request[name][row].reshape(-1)[0].item()


def ft_request(request: Mapping[str, np.ndarray], row: int, *, honour_end_id: bool) -> tuple[list[int], Decoding]:
    length = int(request["input_lengths"][row].reshape(-1)[0])
    prompt = [int(t) for t in request["input_ids"][row][:length]]
    end_id = _scalar(request, "end_id", row, None)
    decoding = Decoding(
        max_new_tokens=int(request["request_output_len"][row].reshape(-1)[0]),
        top_k=int(_scalar(request, "runtime_top_k", row, 1)),  # FasterTransformer's default: greedy
        top_p=float(_scalar(request, "runtime_top_p", row, 0.0)),
        temperature=float(_scalar(request, "temperature", row, 1.0)),
        repetition_penalty=float(_scalar(request, "repetition_penalty", row, 1.0)),
        seed=_scalar(request, "random_seed", row, None),
        end_id=int(end_id) if end_id is not None and honour_end_id else None,
    )
    return prompt, decoding


def ft_outputs(sequences: list[list[int]], pad_id: int) -> dict[str, np.ndarray]:
    """`output_ids` [batch, beam=1, seq] padded with `pad_id` past each
    row's `sequence_length`, as FasterTransformer returns them."""
    width = max(len(seq) for seq in sequences)
    ids = np.full((len(sequences), 1, width), pad_id, dtype=np.uint32)
    for row, seq in enumerate(sequences):
        ids[row, 0, : len(seq)] = seq
    lengths = np.array([[len(seq)] for seq in sequences], dtype=np.uint32)
    return {"output_ids": ids, "sequence_length": lengths}


def trtllm_request(request: Mapping[str, np.ndarray], row: int, lm: TinyLM) -> tuple[list[int], Decoding, bool]:
    raw = request["text_input"][row].reshape(-1)[0]
    text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
    decoding = Decoding(
        max_new_tokens=int(request["max_tokens"][row].reshape(-1)[0]),
        top_k=int(_scalar(request, "top_k", row, 0)),
        top_p=float(_scalar(request, "top_p", row, 0.0)),
        temperature=float(_scalar(request, "temperature", row, 1.0)),
        repetition_penalty=float(_scalar(request, "repetition_penalty", row, 1.0)),
        seed=_scalar(request, "random_seed", row, None),
        end_id=lm.tokenizer.eos_token_id,  # the ensemble's postprocessing knows the tokenizer
    )
    return lm.tokenizer.encode(text), decoding, bool(_scalar(request, "stream", row, False))


def _text_output(texts: list[str]) -> dict[str, np.ndarray]:
    return {"text_output": np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_)}


def make_models(lm: TinyLM) -> dict[str, Any]:
    """name → infer function (per-request loops: prompts differ in length,
    so requests are not concatenated into one tensor)."""
    from inference.text import IncrementalDecoder

    pad_id = lm.tokenizer.pad_token_id or 0

    def ft_batch(requests: list[Any], *, honour_end_id: bool) -> list[dict[str, np.ndarray]]:
        responses = []
        for request in requests:
            sequences = []
            for row in range(request["input_ids"].shape[0]):
                prompt, decoding = ft_request(request, row, honour_end_id=honour_end_id)
                sequences.append(prompt + lm.generate(prompt, decoding))
            responses.append(ft_outputs(sequences, pad_id))
        return responses

    def tiny_ft(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        return ft_batch(requests, honour_end_id=True)

    def tiny_ft_noeos(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        return ft_batch(requests, honour_end_id=False)

    def tiny_ft_stream(requests: list[Any]) -> Iterator[list[dict[str, np.ndarray]]]:
        # max_batch_size 1 on decoupled models: one request per call, so
        # every response belongs to it.
        (request,) = requests
        prompt, decoding = ft_request(request, 0, honour_end_id=True)
        for new in lm.stream(prompt, decoding):
            yield [ft_outputs([prompt + new], pad_id)]

    def tiny_trtllm(requests: list[Any]) -> list[dict[str, np.ndarray]]:
        responses = []
        for request in requests:
            texts = []
            for row in range(request["text_input"].shape[0]):
                prompt, decoding, _ = trtllm_request(request, row, lm)
                texts.append(lm.tokenizer.decode(lm.generate(prompt, decoding), skip_special_tokens=True))
            responses.append(_text_output(texts))
        return responses

    def tiny_trtllm_stream(requests: list[Any]) -> Iterator[list[dict[str, np.ndarray]]]:
        (request,) = requests
        prompt, decoding, stream = trtllm_request(request, 0, lm)
        if not stream:
            new = lm.generate(prompt, decoding)
            yield [_text_output([lm.tokenizer.decode(new, skip_special_tokens=True)])]
            return
        decoder = IncrementalDecoder(lm.tokenizer)
        seen = 0
        for new in lm.stream(prompt, decoding):
            # One response per token, as TensorRT-LLM streams; a token that
            # only starts a character has no text yet.
            yield [_text_output([decoder.push(new[seen:])])]
            seen = len(new)
        if tail := decoder.flush():
            yield [_text_output([tail])]

    return {
        "tiny_ft": tiny_ft,
        "tiny_ft_stream": tiny_ft_stream,
        "tiny_ft_noeos": tiny_ft_noeos,
        "tiny_trtllm": tiny_trtllm,
        "tiny_trtllm_stream": tiny_trtllm_stream,
    }


def _tensors() -> dict[str, tuple[list[Any], list[Any]]]:
    """Inputs and outputs per protocol (shapes without the batch dimension)."""
    from pytriton.model_config import Tensor

    def opt(name: str, dtype: Any) -> Any:
        return Tensor(name=name, dtype=dtype, shape=(1,), optional=True)

    ft = (
        [
            Tensor(name="input_ids", dtype=np.uint32, shape=(-1,)),
            Tensor(name="input_lengths", dtype=np.uint32, shape=(1,)),
            Tensor(name="request_output_len", dtype=np.uint32, shape=(1,)),
            opt("runtime_top_k", np.uint32),
            opt("runtime_top_p", np.float32),
            opt("temperature", np.float32),
            opt("repetition_penalty", np.float32),
            opt("random_seed", np.uint64),
            opt("end_id", np.uint32),
        ],
        [
            Tensor(name="output_ids", dtype=np.uint32, shape=(1, -1)),
            Tensor(name="sequence_length", dtype=np.uint32, shape=(1,)),
        ],
    )
    trtllm = (
        [
            Tensor(name="text_input", dtype=np.bytes_, shape=(1,)),
            Tensor(name="max_tokens", dtype=np.int32, shape=(1,)),
            opt("top_k", np.int32),
            opt("top_p", np.float32),
            opt("temperature", np.float32),
            opt("repetition_penalty", np.float32),
            opt("random_seed", np.uint64),
            opt("stream", np.bool_),
        ],
        [Tensor(name="text_output", dtype=np.bytes_, shape=(1,))],
    )
    return {"ft": ft, "trtllm": trtllm}


def serve(
    model_dir: Path, *, host: str, http_port: int, grpc_port: int, metrics_port: int, workspace: Path | None
) -> None:
    """Bind the models and block until SIGINT/SIGTERM."""
    from pytriton.model_config import ModelConfig
    from pytriton.triton import Triton, TritonConfig

    lm = TinyLM(model_dir)
    functions = make_models(lm)
    tensors = _tensors()
    config = TritonConfig(
        http_address=host,
        http_port=http_port,
        grpc_address=host,
        grpc_port=grpc_port,
        metrics_address=host,
        metrics_port=metrics_port,
        exit_timeout_secs=2,  # tests stop it often; nothing in flight matters then
    )
    with Triton(config=config, workspace=workspace) as triton:
        for name, function in functions.items():
            inputs, outputs = tensors["trtllm" if "trtllm" in name else "ft"]
            decoupled = name.endswith("_stream")
            triton.bind(
                model_name=name,
                infer_func=function,
                inputs=inputs,
                outputs=outputs,
                config=ModelConfig(max_batch_size=1 if decoupled else MAX_BATCH_SIZE, decoupled=decoupled),
                strict=True,
            )
        triton.serve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.triton_support", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="tiny model folder (config, tokenizer, weights)")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--workspace", type=Path, default=None, help="pytriton workspace (default: pytriton's own, in ~/.cache/pytriton)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    serve(
        args.model_dir,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        workspace=args.workspace,
    )


# --------------------------------------------------------------------------
# Launcher (runs in the test process)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonServer:
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    pid: int

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.host}:{self.grpc_port}"


def server_env() -> dict[str, str]:
    """The bundled tritonserver's Python backend must find this
    interpreter's libpython first, or loading a model fails with
    "'_thread.RLock' object has no attribute '_recursion_count'"."""
    env = dict(os.environ)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    return env


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _models_ready(http_url: str) -> bool:
    for name in MODEL_NAMES:
        try:
            with urllib.request.urlopen(f"{http_url}/v2/models/{name}/ready", timeout=2) as response:
                if response.status != 200:
                    return False
        except (urllib.error.URLError, OSError):
            return False
    return True


def _kill_group(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the whole group (tritonserver and its backend stubs are the
    server's children), then SIGKILL whatever is left after the grace."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@contextmanager
def start_triton(
    model_dir: Path, log_path: Path, *, timeout_s: float = 120.0, grace_s: float = 3.0
) -> Iterator[TritonServer]:
    """Run the test server until the block ends; waits until every model is
    ready (RuntimeError with the log's tail when it does not get there)."""
    from webapp.lib.embedded_redis import free_port

    host = "127.0.0.1"
    http_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    # pytriton puts unix sockets in its workspace: keep the path short
    # (108-byte limit), whatever pytest's tmp_path looks like.
    workspace = Path(tempfile.mkdtemp(prefix="pytriton-"))
    command = [
        sys.executable, "-m", "tests.triton_support",
        "--model-dir", str(model_dir),
        "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port),
        "--host", host, "--workspace", str(workspace / "ws"),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=server_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = TritonServer(host, http_port, grpc_port, metrics_port, process.pid)
    try:
        deadline = time.monotonic() + timeout_s
        while not _models_ready(server.http_url):
            if process.poll() is not None:
                raise RuntimeError(
                    f"the Triton test server exited with {process.returncode} before its models were ready; "
                    f"log {log_path}:\n{_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Triton test server's models were not ready after {timeout_s:.0f} s; "
                    f"log {log_path}:\n{_log_tail(log_path)}"
                )
            time.sleep(0.25)
        yield server
    finally:
        _kill_group(process, grace_s)
        shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
