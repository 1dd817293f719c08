"""The OpenAI-compatible gateway: request parsing, deployment lookup, fan-out
of `n` choices, OpenAI's response and stream shapes, per-key concurrency and
the request log. Views (`webapp.api.views`) only call into here."""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from asgiref.sync import sync_to_async
from django.conf import settings

from inference.base import (
    Backend,
    BackendFailed,
    Chunk,
    GenerationRequest,
    InferenceError,
    InvalidParameter,
)
from inference.params import choice_count, sampling_params
from inference.prompts import check_messages
from webapp.accounts.models import ApiKey
from webapp.api import lookups
from webapp.api.models import RequestLog
from webapp.deployments.models import Deployment
from webapp.deployments.serving import backend_for, generation_stream


logger = logging.getLogger(__name__)


class GatewayError(Exception):
    """An error answered before any output: status + OpenAI envelope."""

    def __init__(self, status: int, message: str, error_type: str, code: str | None = None, param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type, self.code, self.param = status, message, error_type, code, param

    @classmethod
    def from_inference(cls, error: InferenceError) -> GatewayError:
        return cls(error.status, error.message, error.error_type, error.code, error.param)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str = "invalid_parameter") -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", code, param)


@dataclass
class CallLog:
    """What the request log row will say; filled in as the call goes."""

    endpoint: str
    api_key: ApiKey | None = None
    model: str = ""
    stream: bool = False
    status_code: int = 200
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""
    started: float = field(default_factory=time.monotonic)

    def fail(self, status: int, message: str) -> None:
        self.status_code, self.error = status, message[:500]


def save_log(log: CallLog) -> None:
    """Queues the row; `LogWriter` inserts queued rows in one statement a
    moment later, so no request waits for a database commit."""
    key = log.api_key
    writer_for_loop().add(RequestLog(
        owner_id=key.owner_id if key else None,
        api_key=key,
        endpoint=log.endpoint,
        model=log.model[:128],
        status_code=log.status_code,
        prompt_tokens=log.prompt_tokens,
        completion_tokens=log.completion_tokens,
        latency_ms=int((time.monotonic() - log.started) * 1000),
        stream=log.stream,
        error=log.error,
    ))


class LogWriter:
    """Batches request-log rows per event loop: one bulk insert every
    FLUSH_AFTER_S instead of one commit per request. Rows still queued when
    the process is killed are lost (the counts are bookkeeping, not billing)."""

    FLUSH_AFTER_S = 0.25

    def __init__(self) -> None:
        self.pending: list[RequestLog] = []
        self.task: asyncio.Task[None] | None = None

    def add(self, row: RequestLog) -> None:
        self.pending.append(row)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._flush_soon())

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.FLUSH_AFTER_S)
        while self.pending:
            rows, self.pending = self.pending, []
            try:
                await sync_to_async(RequestLog.objects.bulk_create)(rows)
            except Exception:  # noqa: BLE001 - never let bookkeeping break serving
                logger.exception("could not store %d request-log rows", len(rows))


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LogWriter] = weakref.WeakKeyDictionary()


def writer_for_loop() -> LogWriter:
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = LogWriter()
    return writer


# ---------------------------------------------------------------- parsing

def parse_body(raw: bytes) -> dict[str, Any]:
    if len(raw) > settings.V1_MAX_BODY_BYTES:
        raise GatewayError(413, f"request body is {len(raw)} bytes; the limit is {settings.V1_MAX_BODY_BYTES}",
                           "invalid_request_error", "request_too_large")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise bad_request(f"the body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    return body


def _model_name(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_request("'model' is required (one of the ids that GET /v1/models lists)", "model", "missing_model")
    return model


async def resolve_deployment(api_key: ApiKey, body: Mapping[str, Any]) -> Deployment:
    name = _model_name(body)
    deployment = await lookups.deployment_for(api_key, name)
    if deployment is None:
        raise GatewayError(404, f"The model '{name}' does not exist or you do not have access to it.",
                           "invalid_request_error", "model_not_found", "model")
    return deployment


def _stream_flags(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("'stream' must be true or false", "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise bad_request("'stream_options' must be an object", "stream_options")
    return stream, bool(options.get("include_usage", False))


@dataclass
class Plan:
    """A validated generation call: one request per choice."""

    deployment: Deployment
    backend: Backend
    requests: list[GenerationRequest]
    stream: bool
    include_usage: bool
    chat: bool
    id: str
    n: int  # choices per prompt: request i answers prompt i // n
    created: int = field(default_factory=lambda: int(time.time()))


def _user(body: Mapping[str, Any]) -> str | None:
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_request("'user' must be a string", "user")
    return user


def _per_choice(request: GenerationRequest, n: int) -> list[GenerationRequest]:
    """n choices; with a seed, choice i samples with seed + i so they differ
    yet the whole answer stays repeatable."""
    seed = request.params.seed
    return [
        replace(request, params=replace(request.params, seed=None if seed is None else (seed + i) % 2**63))
        for i in range(n)
    ]


async def plan_chat(api_key: ApiKey, body: dict[str, Any]) -> Plan:
    deployment = await resolve_deployment(api_key, body)
    if deployment.serves_embeddings:
        raise bad_request(f"'{deployment.name}' is an embedding model; use /v1/embeddings", "model", "wrong_endpoint")
    try:
        messages = check_messages(body.get("messages"))
        params = sampling_params(body, deployment.default_params)
        n = choice_count(body)
    except InferenceError as error:
        raise GatewayError.from_inference(error) from None
    stream, include_usage = _stream_flags(body)
    request = GenerationRequest(params=params, messages=messages, user=_user(body))
    return Plan(deployment, backend_for(deployment), _per_choice(request, n), stream, include_usage, True,
                f"chatcmpl-{uuid.uuid4().hex}", n)


async def plan_completion(api_key: ApiKey, body: dict[str, Any]) -> Plan:
    deployment = await resolve_deployment(api_key, body)
    if deployment.serves_embeddings:
        raise bad_request(f"'{deployment.name}' is an embedding model; use /v1/embeddings", "model", "wrong_endpoint")
    prompt = body.get("prompt")
    prompts = [prompt] if isinstance(prompt, str) else prompt
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
        raise bad_request("'prompt' must be a string or a non-empty array of strings", "prompt")
    try:
        params = sampling_params(body, deployment.default_params)
        n = choice_count(body)
    except InferenceError as error:
        raise GatewayError.from_inference(error) from None
    if body.get("echo") or body.get("logprobs") or (body.get("best_of") or 1) != 1 or body.get("suffix"):
        param = next(p for p in ("echo", "logprobs", "best_of", "suffix") if body.get(p) not in (None, False, 0, 1, ""))
        raise bad_request(f"'{param}' is not supported", param, "unsupported_parameter")
    stream, include_usage = _stream_flags(body)
    requests = [r for p in prompts for r in _per_choice(GenerationRequest(params=params, prompt=p, user=_user(body)), n)]
    return Plan(deployment, backend_for(deployment), requests, stream, include_usage, False, f"cmpl-{uuid.uuid4().hex}", n)


# ---------------------------------------------------------------- running

def open_stream(plan: Plan, request: GenerationRequest) -> AsyncIterator[Chunk]:
    return generation_stream(plan.backend, request)


async def first_chunk(stream: AsyncIterator[Chunk]) -> Chunk:
    """Pulls the first chunk so that errors the backend finds while preparing
    (prompt too long, engine down) are answered as HTTP errors, not in-stream."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        raise GatewayError.from_inference(BackendFailed("the backend ended the stream without output")) from None
    except InferenceError as error:
        raise GatewayError.from_inference(error) from None


async def complete(plan: Plan, log: CallLog) -> dict[str, Any]:
    """Non-streaming answer: all choices concurrently."""

    async def one(request: GenerationRequest) -> tuple[str, int, int, str]:
        stream = open_stream(plan, request)
        chunk = await first_chunk(stream)
        parts, tokens, prompt_tokens, finish = [chunk.text], chunk.tokens, chunk.prompt_tokens, chunk.finish_reason
        async for chunk in stream:
            parts.append(chunk.text)
            tokens += chunk.tokens
            prompt_tokens = chunk.prompt_tokens or prompt_tokens
            finish = chunk.finish_reason or finish
        return "".join(parts), prompt_tokens, tokens, finish or "length"

    try:
        results = await asyncio.gather(*(one(r) for r in plan.requests))
    except InferenceError as error:
        raise GatewayError.from_inference(error) from None
    # Prompt tokens count once per prompt, completion tokens per choice (OpenAI's usage).
    log.prompt_tokens = sum(result[1] for index, result in enumerate(results) if index % plan.n == 0)
    log.completion_tokens = sum(result[2] for result in results)
    choices = []
    for index, (text, _, _, finish) in enumerate(results):
        if plan.chat:
            choices.append({"index": index, "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None, "finish_reason": finish})
        else:
            choices.append({"index": index, "text": text, "logprobs": None, "finish_reason": finish})
    return {
        "id": plan.id,
        "object": "chat.completion" if plan.chat else "text_completion",
        "created": plan.created,
        "model": plan.deployment.name,
        "system_fingerprint": None,
        "choices": choices,
        "usage": usage(log),
    }


def usage(log: CallLog) -> dict[str, int]:
    return {"prompt_tokens": log.prompt_tokens, "completion_tokens": log.completion_tokens,
            "total_tokens": log.prompt_tokens + log.completion_tokens}


def sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


async def start_streams(plan: Plan) -> list[tuple[Chunk, AsyncIterator[Chunk]]]:
    """Opens every choice's stream and waits for each first chunk (see first_chunk)."""
    streams = [open_stream(plan, request) for request in plan.requests]
    try:
        firsts = await asyncio.gather(*(first_chunk(s) for s in streams))
    except BaseException:
        await asyncio.gather(*(s.aclose() for s in streams), return_exceptions=True)  # type: ignore[attr-defined]
        raise
    return list(zip(firsts, streams))


async def _merge(started: list[tuple[Chunk, AsyncIterator[Chunk]]]) -> AsyncIterator[tuple[int, Chunk]]:
    """Chunks of all choices as they come, tagged with the choice index."""
    if len(started) == 1:
        first, stream = started[0]
        yield 0, first
        async for chunk in stream:
            yield 0, chunk
        return
    queue: asyncio.Queue[tuple[int, Chunk | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, first: Chunk, stream: AsyncIterator[Chunk]) -> None:
        try:
            await queue.put((index, first))
            async for chunk in stream:
                await queue.put((index, chunk))
            await queue.put((index, None))
        except BaseException as error:  # noqa: BLE001 - handed to the consumer
            await queue.put((index, error))
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    tasks = [asyncio.create_task(pump(i, f, s)) for i, (f, s) in enumerate(started)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def stream_events(
    plan: Plan, started: list[tuple[Chunk, AsyncIterator[Chunk]]], log: CallLog, on_close: Callable[[], Any]
) -> AsyncIterator[bytes]:
    """OpenAI's stream: per choice the role chunk (chat) then content deltas
    and a finish chunk; the usage chunk when asked; then [DONE]. A failure
    after the first byte becomes an error event followed by [DONE]."""
    kind = "chat.completion.chunk" if plan.chat else "text_completion"

    def event(index: int, delta: dict[str, Any] | str, finish: str | None) -> bytes:
        if plan.chat:
            choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": index, "text": delta, "logprobs": None, "finish_reason": finish}
        payload: dict[str, Any] = {"id": plan.id, "object": kind, "created": plan.created, "model": plan.deployment.name,
                                   "system_fingerprint": None, "choices": [choice]}
        if plan.include_usage:
            payload["usage"] = None
        return sse(payload)

    # Prompt tokens count once per prompt; an upstream may only tell them at the end.
    prompt_tokens: dict[int, int] = {}
    try:
        async for index, chunk in _merge(started):
            if index not in prompt_tokens and plan.chat:
                yield event(index, {"role": "assistant", "content": ""}, None)
            prompt_tokens[index] = chunk.prompt_tokens or prompt_tokens.get(index, 0)
            log.prompt_tokens = sum(count for i, count in prompt_tokens.items() if i % plan.n == 0)
            log.completion_tokens += chunk.tokens
            if chunk.text:
                yield event(index, {"content": chunk.text} if plan.chat else chunk.text, None)
            if chunk.finish_reason:
                yield event(index, {} if plan.chat else "", chunk.finish_reason)
        if plan.include_usage:
            yield sse({"id": plan.id, "object": kind, "created": plan.created, "model": plan.deployment.name,
                       "system_fingerprint": None, "choices": [], "usage": usage(log)})
        yield sse("[DONE]")
    except InferenceError as error:
        log.fail(error.status, error.message)
        yield sse({"error": {"message": error.message, "type": error.error_type, "param": error.param, "code": error.code}}) + sse("[DONE]")
    except asyncio.CancelledError:
        log.fail(499, "client closed the connection")
        raise
    except Exception as error:  # noqa: BLE001 - the stream has started: report in-band
        log.fail(500, f"{type(error).__name__}: {error}")
        yield sse({"error": {"message": "internal error while streaming", "type": "api_error", "param": None,
                             "code": "internal_error"}}) + sse("[DONE]")
    finally:
        # After [DONE]: the client is not kept waiting for the bookkeeping.
        for _, stream in started:
            await stream.aclose()  # type: ignore[attr-defined]
        await on_close()


# ---------------------------------------------------------------- embeddings

async def embed(api_key: ApiKey, body: dict[str, Any], log: CallLog) -> dict[str, Any]:
    deployment = await resolve_deployment(api_key, body)
    log.model = deployment.name
    backend = backend_for(deployment)
    if not backend.supports_embeddings:
        raise bad_request(f"'{deployment.name}' does not serve embeddings", "model", "wrong_endpoint")
    texts = body.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts:
        raise bad_request("'input' must be a string or a non-empty array of strings", "input")
    if not all(isinstance(t, str) for t in texts):
        raise bad_request("'input' must hold strings (token arrays are not supported: the model has its own tokenizer)", "input")
    if len(texts) > settings.V1_MAX_EMBEDDING_INPUTS:
        raise bad_request(f"'input' holds {len(texts)} items; the limit is {settings.V1_MAX_EMBEDDING_INPUTS}", "input")
    if any(not t for t in texts):
        raise bad_request("'input' must not contain empty strings", "input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise bad_request("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    try:
        result = await backend.embed(texts)
    except InferenceError as error:
        raise GatewayError.from_inference(error) from None
    dimensions = body.get("dimensions")
    if dimensions is not None and dimensions != result.dimensions:
        raise bad_request(f"'{deployment.name}' has {result.dimensions} dimensions and cannot be shortened", "dimensions")
    log.prompt_tokens = result.prompt_tokens
    data = []
    for index, vector in enumerate(result.vectors):
        value: Any = vector
        if encoding == "base64":
            value = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {"object": "list", "data": data, "model": deployment.name,
            "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens}}


def model_list(deployments: list[Deployment]) -> dict[str, Any]:
    return {"object": "list", "data": [
        {"id": d.name, "object": "model", "created": int(d.created_at.timestamp()), "owned_by": d.owner.username}
        for d in deployments
    ]}
