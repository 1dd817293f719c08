"""The `local` backend: a transformers causal LM in the server process, with
our own decoding loop and iteration-level (continuous) batching.

One engine thread per backend owns the model. Requests reach it through a
condition-guarded queue; tokens come back to each request's event loop with
`loop.call_soon_threadsafe` into an `asyncio.Queue`.

Batching scheme. The engine keeps two batches, each one left-padded KV cache
(`DynamicCache`) with a 2-D attention mask, per-row next positions and the
next-token logits of every row:

- the sampling batch (greedy and sampled rows, each with its own parameters);
- the contrastive batch (contrastive search expands every row to its top-k
  candidates each step, so its rows step together, apart from the others).

At every step boundary the engine admits waiting requests: it prefills them
as a batch of their own, then merges their cache into the running one (both
sides left-padded to the longer cache). Rows that finish, or whose consumer
went away, are dropped from the cache with `batch_select_indices` before the
next forward, and left-padding columns no remaining row needs are cut off,
so they stop costing compute. When the engine is idle, the first request
waits `batch_wait_ms` for company so that a burst is prefilled together.

Streams. A request's stream renders and tokenises the prompt, fixes its
token budget, queues a `Job` and turns the engine's token ids into text with
`IncrementalDecoder`; ids that pile up while the consumer is slow become one
chunk. An EOS ends the stream with finish_reason "stop" and counts as one
generated token without text. When the consumer stops early (aclose() from
the stop-string wrapper, a disconnect, task cancellation) the `finally`
marks the job cancelled and the engine drops the row at its next step.

Seeds. Each sampled request draws from its own CPU `torch.Generator`, one
uniform per token, by inverse CDF over its own filtered distribution, so the
same seed gives the same text alone or in any batch.

Exactness. Padding is masked (the mask covers every cache column, LLaMA gets
position ids counted from each row's first real token, BLOOM's ALiBi is
built from the same mask), so a row's logits do not depend on what else is in
the batch beyond float rounding; the tests check greedy answers batched
against alone and against `model.generate`.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch

from inference.base import (
    Backend,
    BackendFailed,
    BackendUnavailable,
    Chunk,
    FinishReason,
    GenerationRequest,
    Health,
    InferenceError,
    InvalidParameter,
    SamplingParams,
)
from inference.config import BackendConfig
from inference.decoding import RowState, apply_penalties, choose_tokens, contrastive_choice, make_generator
from inference.prompts import CHAT_TEMPLATE, render
from inference.text import IncrementalDecoder

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 256
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_BATCH_WAIT_MS = 3.0
CONTEXT_ATTRIBUTES = ("max_position_embeddings", "n_positions")
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt")
# transformers 5's from_pretrained is not thread-safe: two models loading at
# once in one process (two local deployments answering an arena battle) can
# leave a tied weight (BLOOM's lm_head) on the meta device, "newly
# initialized". Loads are serialised process-wide; each backend still has its
# own lock for its engine.
_LOAD_LOCK = threading.Lock()


# --------------------------------------------------------------------------
# Requests as the engine sees them


@dataclass(frozen=True)
class Event:
    """Engine → stream: `ids` are tokens whose text is due, `count` the new
    tokens this stands for (an EOS counts but has no text)."""

    ids: list[int]
    count: int
    finish: FinishReason | None = None
    error: InferenceError | None = None


@dataclass(eq=False)
class Job:
    row: RowState
    budget: int
    contrastive: bool
    emit: Callable[[Event], Any] = lambda event: None
    # Written by the consumer's thread, read by the engine at step
    # boundaries; a plain attribute is enough (one writer, monotonic).
    cancelled: bool = False

    def send(self, event: Event) -> None:
        try:
            self.emit(event)
        except RuntimeError:  # the consumer's event loop is closed: nobody listens
            self.cancelled = True


def token_budget(params: SamplingParams, prompt_len: int, context: int | None, prompt_param: str, default: int) -> int:
    """New tokens a request may generate (see SamplingParams)."""
    if context is not None and prompt_len >= context:
        raise InvalidParameter(
            f"the prompt is {prompt_len} tokens and leaves no room in the model's {context}-token context",
            param=prompt_param,
        )
    if params.max_new_tokens is not None:
        if params.max_new_tokens < 1:
            raise InvalidParameter("'max_tokens' must be at least 1", param="max_tokens")
        budget = params.max_new_tokens
    elif params.max_length is not None:
        budget = params.max_length - prompt_len
        if budget <= 0:
            raise InvalidParameter(
                f"'max_length' ({params.max_length}) leaves no room after the {prompt_len}-token prompt",
                param="max_length",
            )
    else:
        budget = default
    if context is not None:
        budget = min(budget, context - prompt_len)
    return budget


# --------------------------------------------------------------------------
# A batch: rows sharing one left-padded KV cache


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    if width == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = width
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


@dataclass(eq=False)
class Batch:
    """`mask` [B, T] covers every cache column (0 on left padding);
    `positions` [B] is each row's next position; `logits` [B, V] the next-token
    scores; `hidden` [B, T, H] the last-layer states of the context
    (contrastive batches only)."""

    jobs: list[Job]
    cache: Any
    mask: torch.Tensor
    positions: torch.Tensor
    logits: torch.Tensor
    hidden: torch.Tensor | None = None
    trimmable: bool = True  # plain full-attention cache layers (column-wise cuts are safe)

    @property
    def size(self) -> int:
        return len(self.jobs)

    def merge(self, other: Batch) -> None:
        """Append `other`'s rows; the shorter side is left-padded."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        mine, theirs = width - self.mask.shape[1], width - other.mask.shape[1]
        for layer, incoming in zip(self.cache.layers, other.cache.layers, strict=True):
            layer.keys = torch.cat([_pad_left(layer.keys, mine, 2), _pad_left(incoming.keys, theirs, 2)])
            layer.values = torch.cat([_pad_left(layer.values, mine, 2), _pad_left(incoming.values, theirs, 2)])
        self.mask = torch.cat([_pad_left(self.mask, mine, 1), _pad_left(other.mask, theirs, 1)])
        if self.hidden is not None and other.hidden is not None:
            self.hidden = torch.cat([_pad_left(self.hidden, mine, 1), _pad_left(other.hidden, theirs, 1)])
        self.positions = torch.cat([self.positions, other.positions])
        self.logits = torch.cat([self.logits, other.logits])
        self.jobs = self.jobs + other.jobs

    def keep(self, indices: list[int]) -> None:
        """Drop every row not in `indices`, then the padding nobody needs."""
        if len(indices) == self.size:
            return
        self.jobs = [self.jobs[i] for i in indices]
        if not indices:
            return
        index = torch.tensor(indices, dtype=torch.long, device=self.mask.device)
        self.cache.batch_select_indices(index)
        self.mask = self.mask[index]
        self.positions = self.positions[index]
        self.logits = self.logits[index]
        if self.hidden is not None:
            self.hidden = self.hidden[index]
        self._trim_left()

    def _trim_left(self) -> None:
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0, 0]) if used.numel() else 0
        if start == 0 or not self.trimmable:
            return
        for layer in self.cache.layers:
            layer.keys = layer.keys[:, :, start:, :]
            layer.values = layer.values[:, :, start:, :]
        self.mask = self.mask[:, start:]
        if self.hidden is not None:
            self.hidden = self.hidden[:, start:]


# --------------------------------------------------------------------------
# The engine thread


class Engine:
    """Owns the model; one thread runs prefill/decode steps for all requests."""

    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int, batch_wait_s: float, device: str) -> None:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        self.model = model
        self.device = torch.device(device)
        self.max_batch_size = max(1, max_batch_size)
        self.batch_wait_s = max(0.0, batch_wait_s)
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = next(
            (i for i in (tokenizer.pad_token_id, tokenizer.eos_token_id) if isinstance(i, int)), 0
        )
        self.uses_position_ids = "position_ids" in inspect.signature(model.forward).parameters
        self._cache_class = DynamicCache
        self._layer_class = DynamicLayer
        # Only plain full-attention layers can be padded, merged and trimmed
        # column-wise; other cache layouts run one batch at a time (below).
        self._mergeable: bool | None = None
        self._pending: deque[Job] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self.batches: dict[bool, Batch | None] = {False: None, True: None}  # key: contrastive
        self.steps = 0
        self.thread = threading.Thread(target=self._run, name="local-llm-engine", daemon=True)

    # -- called from other threads -------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise BackendUnavailable("the local backend is closed")
            self._pending.append(job)
            self._cond.notify()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self.thread.is_alive() and threading.current_thread() is not self.thread:
            self.thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    @property
    def active_rows(self) -> int:
        """Rows in the running batches (not counting requests still queued)."""
        return sum(batch.size for batch in list(self.batches.values()) if batch is not None)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- the loop ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            with torch.inference_mode():
                while True:
                    admitted = self._take_new()
                    if admitted is None:
                        break
                    if admitted:
                        self._admit(admitted)
                    for contrastive in (False, True):
                        self._guarded_step(contrastive)
        except BaseException:  # a bug in the loop itself: say so, fail everyone below
            logger.exception("local engine loop crashed")
        finally:
            self._shutdown()

    def _idle(self) -> bool:
        return all(batch is None for batch in self.batches.values())

    def _take_new(self) -> list[Job] | None:
        """Waiting requests that fit, or None when stopping."""
        with self._cond:
            while not self._stopping and not self._pending and self._idle():
                self._cond.wait()
            if self._stopping:
                return None
            if self._idle() and self.batch_wait_s:
                # Idle engine: give a burst a moment to arrive so it shares one prefill.
                deadline = time.monotonic() + self.batch_wait_s
                while not self._stopping and len(self._pending) < self.max_batch_size:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
            room = {kind: self._room(kind) for kind in (False, True)}
            taken: list[Job] = []
            waiting: deque[Job] = deque()
            for job in self._pending:
                if job.cancelled:
                    continue
                if room[job.contrastive] > 0:
                    room[job.contrastive] -= 1
                    taken.append(job)
                else:
                    waiting.append(job)
            self._pending = waiting
            return taken

    def _room(self, contrastive: bool) -> int:
        batch = self.batches[contrastive]
        if batch is None:
            return self.max_batch_size
        if self._mergeable is False:
            return 0
        return self.max_batch_size - batch.size

    def _admit(self, jobs: list[Job]) -> None:
        for contrastive in (False, True):
            group = [job for job in jobs if job.contrastive == contrastive]
            if not group:
                continue
            try:
                fresh = self._prefill(group, contrastive)
                current = self.batches[contrastive]
                if current is None:
                    self.batches[contrastive] = fresh
                else:
                    current.merge(fresh)
            except Exception as error:
                # A failed merge leaves the running batch half-updated: fail it too.
                failed = group + (self.batches[contrastive].jobs if self.batches[contrastive] else [])
                self.batches[contrastive] = None
                self._fail(failed, error)

    def _guarded_step(self, contrastive: bool) -> None:
        batch = self.batches[contrastive]
        if batch is None:
            return
        try:
            batch.keep([i for i, job in enumerate(batch.jobs) if not job.cancelled])
            if batch.size:
                if contrastive:
                    self._contrastive_step(batch)
                else:
                    self._sampling_step(batch)
                self.steps += 1
        except Exception as error:
            self.batches[contrastive] = None
            self._fail(batch.jobs, error)
            return
        if batch.size == 0:
            self.batches[contrastive] = None

    # -- model calls -------------------------------------------------------------

    def _forward(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, cache: Any, *, hidden: bool = False
    ) -> Any:
        kwargs: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "cache": cache,
            "use_cache": True,
            "logits_to_keep": 1,
        }
        if self.uses_position_ids:
            kwargs["position_ids"] = positions
        if hidden:
            kwargs["output_hidden_states"] = True
        return self.model(**kwargs)

    def _prefill(self, jobs: list[Job], contrastive: bool) -> Batch:
        lengths = [len(job.row.prompt_ids) for job in jobs]
        width = max(lengths)
        ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for row, job in enumerate(jobs):
            ids[row, width - lengths[row] :] = torch.tensor(job.row.prompt_ids)
            mask[row, width - lengths[row] :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        cache = self._cache_class(config=self.model.config)
        out = self._forward(ids, mask, positions, cache, hidden=contrastive)
        if self._mergeable is None:
            self._mergeable = all(type(layer) is self._layer_class for layer in cache.layers)
        return Batch(
            jobs=list(jobs),
            cache=cache,
            mask=mask,
            positions=torch.tensor(lengths, dtype=torch.long, device=self.device),
            logits=out.logits[:, -1].float(),
            hidden=out.hidden_states[-1] if contrastive else None,
            trimmable=bool(self._mergeable),
        )

    def _sampling_step(self, batch: Batch) -> None:
        tokens = choose_tokens(batch.logits, [job.row for job in batch.jobs])
        running = self._deliver(batch.jobs, tokens)
        batch.keep(running)
        if not batch.size:
            return
        ids = torch.tensor([tokens[i] for i in running], dtype=torch.long, device=self.device)[:, None]
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((batch.size, 1))], dim=1)
        out = self._forward(ids, batch.mask, batch.positions[:, None], batch.cache)
        batch.positions = batch.positions + 1
        batch.logits = out.logits[:, -1].float()

    def _contrastive_step(self, batch: Batch) -> None:
        """One token for every row: expand each row to its top-k candidates,
        run them in one forward against the cached context, keep the best
        candidate's cache entry, logits and hidden state."""
        assert batch.hidden is not None
        rows = [job.row for job in batch.jobs]
        probs = torch.softmax(apply_penalties(batch.logits, rows), dim=-1)
        ks = [min(max(row.params.contrastive_top_k, 1), probs.shape[-1]) for row in rows]
        k = max(ks)
        top_probs, top_ids = probs.topk(k, dim=-1)
        valid = torch.arange(k, device=probs.device)[None, :] < torch.tensor(ks, device=probs.device)[:, None]
        size = batch.size
        batch.cache.batch_repeat_interleave(k)
        mask = torch.cat([batch.mask, batch.mask.new_ones((size, 1))], dim=1)
        out = self._forward(
            top_ids.reshape(-1, 1),
            mask.repeat_interleave(k, dim=0),
            batch.positions.repeat_interleave(k)[:, None],
            batch.cache,
            hidden=True,
        )
        candidate_hidden = out.hidden_states[-1][:, -1].reshape(size, k, -1)
        alpha = torch.tensor([row.params.penalty_alpha for row in rows], device=probs.device)
        best = contrastive_choice(top_probs, candidate_hidden, batch.hidden, batch.mask, alpha, valid)
        rows_index = torch.arange(size, device=probs.device)
        selected = rows_index * k + best
        batch.cache.batch_select_indices(selected)
        batch.logits = out.logits[selected, -1].float()
        batch.hidden = torch.cat([batch.hidden, candidate_hidden[rows_index, best][:, None]], dim=1)
        batch.mask = mask
        batch.positions = batch.positions + 1
        tokens = top_ids[rows_index, best].tolist()
        batch.keep(self._deliver(batch.jobs, tokens))

    def _deliver(self, jobs: list[Job], tokens: list[int]) -> list[int]:
        """Hands each row its token; returns the rows that go on."""
        running: list[int] = []
        for index, (job, token) in enumerate(zip(jobs, tokens)):
            if job.cancelled:
                continue
            job.row.generated.append(token)
            if token in self.eos_ids:
                job.send(Event([], 1, "stop"))
            elif len(job.row.generated) >= job.budget:
                job.send(Event([token], 1, "length"))
            else:
                job.send(Event([token], 1))
                running.append(index)
        return running

    def _fail(self, jobs: list[Job], error: BaseException) -> None:
        logger.warning("local engine step failed for %d request(s): %r", len(jobs), error)
        failure = BackendFailed(f"local model failed: {type(error).__name__}: {error}")
        for job in jobs:
            job.send(Event([], 0, error=failure))

    def _shutdown(self) -> None:
        with self._cond:
            self._stopping = True
            left = list(self._pending)
            self._pending.clear()
        for contrastive, batch in list(self.batches.items()):
            if batch is not None:
                left.extend(batch.jobs)
            self.batches[contrastive] = None
        closed = BackendUnavailable("the local backend was closed")
        for job in left:
            job.send(Event([], 0, error=closed))


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if configured is None:
        configured = getattr(model.config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif isinstance(configured, (list, tuple)):
        ids.update(i for i in configured if isinstance(i, int))
    if isinstance(tokenizer.eos_token_id, int):
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def _context_size(config: Any) -> int | None:
    for name in CONTEXT_ATTRIBUTES:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _dtype(name: Any) -> Any:
    if isinstance(name, torch.dtype):
        return name
    if name in (None, ""):
        return torch.float32
    if name == "auto":
        return "auto"
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise BackendUnavailable(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)} or auto") from None


# --------------------------------------------------------------------------
# The backend


class LocalBackend(Backend):
    kind = "local"

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.path = config.model_path
        self.max_batch_size = int(config.option("max_batch_size", DEFAULT_MAX_BATCH_SIZE))
        self.batch_wait_s = float(config.option("batch_wait_ms", DEFAULT_BATCH_WAIT_MS)) / 1000
        self.device = str(config.option("device", "cpu"))
        self.dtype = config.option("dtype", "float32")
        self.default_max_tokens = int(config.option("default_max_tokens", DEFAULT_MAX_NEW_TOKENS))
        self._lock = threading.Lock()
        self._tokenizer: Any = None
        self._engine: Engine | None = None
        self._context: int | None = None

    # -- loading -------------------------------------------------------------------

    def _folder(self) -> Path:
        if not self.path:
            raise BackendUnavailable("this local deployment has no model folder")
        folder = Path(self.path)
        if not folder.is_dir():
            raise BackendUnavailable(f"model folder {folder} does not exist")
        return folder

    def _load_tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(str(self._folder()), local_files_only=True)
        return self._tokenizer

    def _load(self) -> Engine:
        """Tokenizer, model and engine thread, once (callers race here)."""
        with self._lock:
            if self._engine is not None and self._engine.alive:
                return self._engine
            folder = self._folder()
            try:
                with _LOAD_LOCK:
                    # Imported under the lock too: two threads doing transformers'
                    # first (lazy) import at once get "cannot import name
                    # 'AutoModelForCausalLM'" (an arena's two local models on a
                    # fresh server).
                    from transformers import AutoModelForCausalLM

                    tokenizer = self._load_tokenizer()
                    model = AutoModelForCausalLM.from_pretrained(
                        str(folder), local_files_only=True, dtype=_dtype(self.dtype)
                    )
                model.to(self.device).eval()
            except InferenceError:
                raise
            except Exception as error:
                raise BackendUnavailable(f"cannot load the model in {folder}: {error}") from error
            engine = Engine(
                model, tokenizer, max_batch_size=self.max_batch_size, batch_wait_s=self.batch_wait_s, device=self.device
            )
            engine.start()
            self._context = _context_size(model.config)
            self._engine = engine
            return engine

    async def _ready(self) -> Engine:
        engine = self._engine
        if engine is not None and engine.alive:
            return engine
        return await asyncio.to_thread(self._load)

    @property
    def engine(self) -> Engine | None:
        return self._engine

    # -- requests --------------------------------------------------------------

    def _job(self, request: GenerationRequest) -> tuple[Job, int]:
        """Renders, tokenises and validates; raises InvalidParameter."""
        tokenizer = self._tokenizer
        params = request.params
        add_special = True
        if request.prompt is not None:
            text, param = request.prompt, "prompt"
        elif request.messages is not None:
            text, param = render(request.messages, self.config.prompt_template, tokenizer), "messages"
            # Chat templates usually write the BOS themselves; don't add a second.
            bos = getattr(tokenizer, "bos_token", None)
            add_special = not (self.config.prompt_template == CHAT_TEMPLATE and bos and text.startswith(bos))
        else:
            raise InvalidParameter("the request has neither a prompt nor messages", param="prompt")
        ids = list(tokenizer(text, add_special_tokens=add_special)["input_ids"])
        if not ids:
            if not isinstance(tokenizer.bos_token_id, int):
                raise InvalidParameter("the prompt is empty", param=param)
            ids = [tokenizer.bos_token_id]  # continue from the start of a document
        budget = token_budget(params, len(ids), self._context, param, self.default_max_tokens)
        if params.decoder == "contrastive" and params.contrastive_top_k < 1:
            raise InvalidParameter("'contrastive_top_k' must be at least 1", param="contrastive_top_k")
        contrastive = params.decoder == "contrastive"
        generator = None if contrastive or params.greedy else make_generator(params.seed)
        return Job(RowState(params, ids, generator), budget, contrastive), len(ids)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        engine = await self._ready()
        job, prompt_tokens = self._job(request)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()
        job.emit = partial(loop.call_soon_threadsafe, queue.put_nowait)
        decoder = IncrementalDecoder(self._tokenizer, skip_special_tokens=True)
        engine.submit(job)
        finished = False
        try:
            while True:
                events = [await queue.get()]
                # A slow consumer gets what piled up as one chunk.
                while not queue.empty():
                    events.append(queue.get_nowait())
                ids, count, finish, error = _merge(events)
                text = decoder.push(ids) if ids else ""
                if finish is not None:
                    finished = True
                    yield Chunk(text + decoder.flush(), count, prompt_tokens, finish)
                    return
                if count:
                    yield Chunk(text, count, prompt_tokens)
                if error is not None:
                    raise error
        except InferenceError:
            finished = True
            raise
        finally:
            if not finished:
                # aclose(), a stop string, a client disconnect or task
                # cancellation: the engine drops the row at its next step.
                job.cancelled = True

    # -- lifecycle -----------------------------------------------------------------

    async def health(self) -> Health:
        engine = self._engine
        if engine is not None:
            return Health(True, "loaded") if engine.alive else Health(False, "the engine thread has stopped")
        try:
            folder = self._folder()
        except BackendUnavailable as error:
            return Health(False, error.message)
        if not any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS):
            return Health(False, f"no model weights in {folder}")
        try:
            await asyncio.to_thread(self._check_folder, folder)
        except Exception as error:
            return Health(False, f"cannot load the model config or tokenizer in {folder}: {error}")
        return Health(True, "ready to load")

    def _check_folder(self, folder: Path) -> None:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(str(folder), local_files_only=True)
        self._load_tokenizer()

    async def close(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            await asyncio.to_thread(engine.stop)
            engine.model = None


def _merge(events: list[Event]) -> tuple[list[int], int, FinishReason | None, InferenceError | None]:
    """Coalesces what arrived; tokens that came before an error still count."""
    ids: list[int] = []
    count = 0
    finish: FinishReason | None = None
    for event in events:
        if event.error is not None:
            return ids, count, None, event.error
        ids.extend(event.ids)
        count += event.count
        finish = event.finish or finish
    return ids, count, finish, None
