"""Triton Inference Server backend: FasterTransformer and TensorRT-LLM models
over HTTP or gRPC, through tritonclient's asyncio clients.

Deployment settings (`BackendConfig`):

- `endpoint`: `http://host:8000` (or `https://`) → HTTP; `grpc://host:8001`
  → gRPC; a bare `host:port` → the `transport` option, gRPC when unset
  (Triton's streaming API is gRPC-only, so it is the transport that serves
  every model). A scheme and a contradicting `transport` are an error.
- `server_model`: the model's name on the server.
- `options.protocol`: `fastertransformer` (default) or `tensorrtllm`.
  - fastertransformer: token ids in and out; tokenised here with the
    tokenizer in `model_path` (required). `output_ids` hold prompt + answer;
    the answer is cut at the first end id (the tokenizer's EOS) whether or
    not the engine stopped there.
  - tensorrtllm: the TensorRT-LLM ensemble (`text_input` → `text_output`),
    which tokenises server-side. `model_path` is optional; with it, usage is
    counted with the tokenizer, without it every response counts as one
    token (streamed TensorRT-LLM responses carry one token each) and
    `max_length` cannot be honoured.
- `options.stream`: the model is decoupled (streams one response per
  token); it is then called through gRPC `ModelStreamInfer`, for `generate`
  too, and HTTP is refused. Otherwise `stream` yields the whole answer as one
  chunk, then the finish chunk.

The model's metadata (its declared inputs) is read once: inputs are sent in
the datatypes the model declares (TensorRT-LLM versions differ, INT32 vs
UINT32), and a sampling parameter the model has no input for is refused
rather than silently ignored.

Errors: connection refused, DNS failure, timeout → `BackendUnavailable`;
anything Triton answers (unknown or unready model, inference error) →
`BackendFailed` with Triton's message.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from inference import prompts
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
from inference.config import TRITON_PROTOCOLS, TRITON_TRANSPORTS, BackendConfig
from inference.text import IncrementalDecoder

T = TypeVar("T")

DEFAULT_MAX_NEW_TOKENS = 256
PROBE_TIMEOUT_S = 5.0  # health checks and metadata: a server that takes longer is not healthy


# --------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    transport: str  # "http" | "grpc"
    address: str  # host:port (HTTP may add a path prefix), no scheme
    ssl: bool = False


def parse_target(endpoint: str, transport: str | None) -> Target:
    """Where and how to reach Triton (rules in the module docstring)."""
    if transport is not None and transport not in TRITON_TRANSPORTS:
        raise InvalidParameter(
            f"triton transport must be one of {', '.join(TRITON_TRANSPORTS)} (got {transport!r})", param="transport"
        )
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        return Target(transport or "grpc", endpoint.rstrip("/"))
    parts = urlsplit(endpoint)
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        implied = "http"
    elif scheme == "grpc":
        implied = "grpc"
    else:
        raise InvalidParameter(
            f"triton endpoint {endpoint!r}: use http://, https://, grpc:// or host:port", param="endpoint"
        )
    if transport is not None and transport != implied:
        raise InvalidParameter(
            f"triton endpoint {endpoint!r} is {implied.upper()} but the transport option says {transport}",
            param="transport",
        )
    if not parts.netloc:
        raise InvalidParameter(f"triton endpoint {endpoint!r} has no host", param="endpoint")
    path = parts.path.rstrip("/")
    if path and implied == "grpc":
        raise InvalidParameter(f"triton endpoint {endpoint!r}: a gRPC address has no path", param="endpoint")
    return Target(implied, parts.netloc + path, ssl=scheme == "https")


def _flag(value: Any) -> bool:
    """Options come from JSON or forms: accept true/"true"/"1"/"yes"."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def new_token_budget(params: SamplingParams, prompt_tokens: int | None) -> int:
    """max_new_tokens, else what max_length leaves after the prompt, else the default."""
    if params.max_new_tokens is not None:
        return params.max_new_tokens
    if params.max_length is not None:
        if prompt_tokens is None:
            raise InvalidParameter(
                "max_length needs the prompt's length: set the deployment's tokenizer (model_path) or use max_tokens",
                param="max_length",
            )
        budget = params.max_length - prompt_tokens
        if budget <= 0:
            raise InvalidParameter(
                f"max_length ({params.max_length}) leaves no room after the prompt ({prompt_tokens} tokens)",
                param="max_length",
            )
        return budget
    return DEFAULT_MAX_NEW_TOKENS


def check_supported(params: SamplingParams) -> None:
    """What neither engine can do."""
    if params.decoder == "contrastive":
        raise InvalidParameter("Triton engines have no contrastive search; use decoder sample or greedy", param="decoder")
    for name in ("presence_penalty", "frequency_penalty"):
        if getattr(params, name):
            raise InvalidParameter(f"{name} is not supported by the triton backend (use repetition_penalty)", param=name)


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


Tensors = list[tuple[str, np.ndarray, str]]  # (name, array, Triton datatype)


@dataclass(frozen=True)
class Input:
    """One input tensor. `names`: the model may declare any one of them;
    `datatype`: sent when the model's metadata does not say; `param`: the
    sampling parameter it carries — None for plumbing the model may lack
    (end_id, stream); `required`: part of the protocol's core."""

    names: tuple[str, ...]
    value: Any
    datatype: str
    param: str | None = None
    required: bool = False


def _scalar(names: str | tuple[str, ...], value: Any, datatype: str, param: str | None = None) -> Input:
    return Input((names,) if isinstance(names, str) else names, [[value]], datatype, param)


def resolve_inputs(
    inputs: Sequence[Input], declared: dict[str, str], model: str, protocol: str
) -> Tensors:
    """(name, array, datatype) per input, in the model's declared types. A
    model without a core input speaks another protocol (BackendFailed); an
    optional input it lacks is dropped when it is plumbing and refused when
    it carries a sampling parameter (InvalidParameter)."""
    from tritonclient.utils import triton_to_np_dtype

    resolved = []
    for spec in inputs:
        name = next((n for n in spec.names if n in declared), None)
        if name is None:
            if spec.required:
                raise BackendFailed(
                    f"model {model!r} on Triton has no {spec.names[0]} input: is it served with the protocol "
                    f"this deployment says ({protocol})?"
                )
            if spec.param is None:
                continue
            raise InvalidParameter(
                f"model {model!r} on Triton has no {' or '.join(spec.names)} input, so {spec.param} is not supported",
                param=spec.param,
            )
        datatype = declared.get(name, spec.datatype)
        if datatype == "BYTES":
            array = np.array(spec.value, dtype=np.object_)
        else:
            array = np.array(spec.value, dtype=triton_to_np_dtype(datatype))
        resolved.append((name, array, datatype))
    return resolved


def _greedy_or_sampling(params: SamplingParams, top_k_name: str, top_p_name: str, int_type: str) -> list[Input]:
    """Both engines read top-k 1 as greedy; sampling sends top-k (0 = off)
    and top-p explicitly, because their defaults (top-k 1 or 0 with top-p 0)
    mean greedy."""
    if params.greedy:
        inputs = [_scalar(top_k_name, 1, int_type, "decoder")]
    else:
        inputs = [
            _scalar(top_k_name, params.top_k, int_type, "top_k"),
            _scalar(top_p_name, params.top_p, "FP32", "top_p"),
            _scalar("temperature", params.temperature, "FP32", "temperature"),
        ]
    if params.repetition_penalty != 1.0:
        inputs.append(_scalar("repetition_penalty", params.repetition_penalty, "FP32", "repetition_penalty"))
    if params.seed is not None and not params.greedy:
        # TensorRT-LLM's ensemble and FasterTransformer say random_seed; some ensembles say seed.
        inputs.append(_scalar(("random_seed", "seed"), params.seed % 2**64, "UINT64", "seed"))
    return inputs


# --------------------------------------------------------------------------
# Protocols: a request's inputs, and a reader that turns responses into chunks
# --------------------------------------------------------------------------


class FasterTransformerReader:
    """Reads `output_ids` (prompt + answer so far; [batch, beam, seq]) from
    one response or a stream of them, emitting only new text."""

    def __init__(self, tokenizer: Any, prompt_tokens: int, budget: int, end_id: int | None) -> None:
        self.decoder = IncrementalDecoder(tokenizer)
        self.prompt_tokens = prompt_tokens
        self.budget = budget
        self.end_id = end_id
        self.count = 0  # answer tokens emitted
        self.stopped = False  # saw the end id

    def feed(self, result: Any, *, last: bool = False) -> Chunk | None:
        """The new text; `last` (a non-streamed answer) also releases what
        an incomplete character at the end holds back, so the whole
        answer is one chunk."""
        ids = result.as_numpy("output_ids")
        if ids is None:
            raise BackendFailed("Triton's response has no output_ids (is the model a FasterTransformer model?)")
        sequence = ids.reshape(-1, ids.shape[-1])[0]  # first batch row, first beam
        lengths = result.as_numpy("sequence_length")
        if lengths is not None and lengths.size:
            # Past sequence_length the engine pads (with the end id).
            sequence = sequence[: int(lengths.reshape(-1)[0])]
        answer = [int(t) for t in sequence[self.prompt_tokens :]]
        fresh = answer[self.count :]
        if self.end_id is not None and self.end_id in fresh:
            # Engines that ignore end_id keep generating after it.
            fresh = fresh[: fresh.index(self.end_id)]
            self.stopped = True
        if not fresh:
            return None
        self.count += len(fresh)
        text = self.decoder.push(fresh) + (self.decoder.flush() if last else "")
        return Chunk(text, tokens=len(fresh), prompt_tokens=self.prompt_tokens)

    def finish(self) -> Chunk:
        # An engine that stops at the end id may leave it out of the
        # output: fewer tokens than the budget means it stopped on its own.
        reason: FinishReason = "stop" if self.stopped or self.count < self.budget else "length"
        return Chunk(self.decoder.flush(), prompt_tokens=self.prompt_tokens, finish_reason=reason)


class TensorRTLLMReader:
    """Reads `text_output`: the answer (one response) or, streamed, the new
    text of each response."""

    def __init__(self, tokenizer: Any | None, prompt_tokens: int, budget: int, *, streamed: bool) -> None:
        self.tokenizer = tokenizer
        self.prompt_tokens = prompt_tokens
        self.budget = budget
        self.streamed = streamed
        self.text = ""
        self.responses = 0
        self.count = 0  # tokens reported so far
        self.stopped = False  # the protocol has no end marker to see

    def _tokens_so_far(self) -> int:
        if self.tokenizer is None:
            return self.responses
        return len(self.tokenizer.encode(self.text, add_special_tokens=False))

    def feed(self, result: Any, *, last: bool = False) -> Chunk | None:
        """The response's text (`last` changes nothing: Triton sends whole characters)."""
        output = result.as_numpy("text_output")
        if output is None:
            raise BackendFailed("Triton's response has no text_output (is the model a TensorRT-LLM ensemble?)")
        raw = output.reshape(-1)[0] if output.size else b""
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        self.responses += 1
        self.text += text
        # Counting the text so far (not each piece) keeps the sum equal to
        # the answer's token count whatever the pieces' boundaries.
        tokens = max(self._tokens_so_far() - self.count, 0)
        self.count += tokens
        if not text and not tokens:
            return None
        return Chunk(text, tokens=tokens, prompt_tokens=self.prompt_tokens)

    def finish(self) -> Chunk:
        # Re-tokenised text can merge tokens the model produced one by one;
        # a stream's response count (one per token) says it more surely.
        produced = max(self.count, self.responses) if self.streamed else self.count
        reason: FinishReason = "length" if produced >= self.budget else "stop"
        return Chunk("", prompt_tokens=self.prompt_tokens, finish_reason=reason)


# --------------------------------------------------------------------------
# Transports
# --------------------------------------------------------------------------


def _looks_unreachable(status: str, message: str) -> bool:
    """Triton reports an unready model with UNAVAILABLE/503 too; the
    transport's own errors never mention a model."""
    if "DEADLINE_EXCEEDED" in status:
        return True
    unavailable = "UNAVAILABLE" in status or status in ("502", "503", "504")
    return unavailable and "model" not in message.lower()


class Transport:
    """One tritonclient asyncio client, with its errors turned into ours."""

    def __init__(self, target: Target, timeout_s: float) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.probe_s = min(PROBE_TIMEOUT_S, timeout_s)
        self.where = f"Triton at {target.address}"

    def error(self, error: BaseException) -> InferenceError:
        from tritonclient.utils import InferenceServerException

        if isinstance(error, InferenceServerException):
            message = error.message() or str(error)
            if _looks_unreachable(str(error.status() or ""), message):
                return BackendUnavailable(f"{self.where} is unreachable: {message}")
            return BackendFailed(f"{self.where}: {message}")
        if isinstance(error, (asyncio.TimeoutError, TimeoutError)):
            return BackendUnavailable(f"{self.where} is unreachable: no answer within the timeout")
        if isinstance(error, OSError):  # connection refused, DNS
            return BackendUnavailable(f"{self.where} is unreachable: {error}")
        return BackendFailed(f"{self.where}: {type(error).__name__}: {error}")

    async def call(self, awaitable: Awaitable[T], timeout_s: float | None = None) -> T:
        try:
            return await (asyncio.wait_for(awaitable, timeout_s) if timeout_s else awaitable)
        except InferenceError:
            raise
        except Exception as error:
            raise self.error(error) from error

    async def live(self) -> bool:
        raise NotImplementedError

    async def model_ready(self, model: str) -> bool:
        raise NotImplementedError

    async def declared_inputs(self, model: str) -> dict[str, str]:
        raise NotImplementedError

    async def infer(self, model: str, inputs: Tensors) -> Any:
        raise NotImplementedError

    def stream(self, model: str, inputs: Tensors) -> AsyncIterator[Any]:
        raise InvalidParameter("streaming (decoupled) Triton models are served over gRPC only", param="stream")

    async def close(self) -> None:
        raise NotImplementedError


def _declared(metadata: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["datatype"] for item in metadata.get("inputs", [])}


class HttpTransport(Transport):
    def __init__(self, target: Target, timeout_s: float) -> None:
        super().__init__(target, timeout_s)
        import tritonclient.http.aio as httpclient

        self.module = httpclient
        # conn_timeout is aiohttp's total timeout for each request.
        self.client = httpclient.InferenceServerClient(target.address, conn_timeout=timeout_s, ssl=target.ssl)

    def error(self, error: BaseException) -> InferenceError:
        import aiohttp

        if isinstance(error, aiohttp.ClientConnectionError):  # also a server that hangs up
            return BackendUnavailable(f"{self.where} is unreachable: {error}")
        return super().error(error)

    async def live(self) -> bool:
        return bool(await self.call(self.client.is_server_live(), self.probe_s))

    async def model_ready(self, model: str) -> bool:
        return bool(await self.call(self.client.is_model_ready(model), self.probe_s))

    async def declared_inputs(self, model: str) -> dict[str, str]:
        return _declared(await self.call(self.client.get_model_metadata(model), self.probe_s))

    async def infer(self, model: str, inputs: Tensors) -> Any:
        tensors = []
        for name, array, datatype in inputs:
            tensor = self.module.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array, binary_data=True)
            tensors.append(tensor)
        return await self.call(self.client.infer(model, tensors))

    async def close(self) -> None:
        await self.client.close()


class GrpcTransport(Transport):
    def __init__(self, target: Target, timeout_s: float) -> None:
        super().__init__(target, timeout_s)
        import tritonclient.grpc.aio as grpcclient

        self.module = grpcclient
        self.client = grpcclient.InferenceServerClient(target.address, ssl=target.ssl)

    def error(self, error: BaseException) -> InferenceError:
        from grpc.aio import AioRpcError
        from tritonclient.utils import InferenceServerException

        if isinstance(error, AioRpcError):  # what a stream raises, unwrapped
            error = InferenceServerException(msg=error.details(), status=str(error.code()))
        return super().error(error)

    def _tensors(self, inputs: Tensors) -> list[Any]:
        tensors = []
        for name, array, datatype in inputs:
            tensor = self.module.InferInput(name, list(array.shape), datatype)
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    async def live(self) -> bool:
        return bool(await self.call(self.client.is_server_live(client_timeout=self.probe_s)))

    async def model_ready(self, model: str) -> bool:
        return bool(await self.call(self.client.is_model_ready(model, client_timeout=self.probe_s)))

    async def declared_inputs(self, model: str) -> dict[str, str]:
        metadata = await self.call(self.client.get_model_metadata(model, as_json=True, client_timeout=self.probe_s))
        return _declared(metadata)

    async def infer(self, model: str, inputs: Tensors) -> Any:
        return await self.call(self.client.infer(model, self._tensors(inputs), client_timeout=self.timeout_s))

    async def stream(self, model: str, inputs: Tensors) -> AsyncIterator[Any]:
        """The responses to one request on a decoupled model. The request
        side is closed after the request, so Triton ends the stream when the
        request is complete; closing this generator early cancels the call,
        which tells Triton to stop generating."""
        tensors = self._tensors(inputs)

        async def one_request() -> AsyncIterator[dict[str, Any]]:
            yield {"model_name": model, "inputs": tensors}

        responses = self.client.stream_infer(one_request(), stream_timeout=self.timeout_s)
        try:
            async for result, error in responses:
                if error is not None:
                    raise error
                yield result
                if _is_final(result):
                    return
        except Exception as error:
            raise self.error(error) from error
        finally:
            responses.cancel()

    async def close(self) -> None:
        await self.client.close()


def _is_final(result: Any) -> bool:
    """Engines that flag their last response (TensorRT-LLM) end the stream
    there; others end it when the request completes."""
    parameters = result.get_response().parameters
    return "triton_final_response" in parameters and parameters["triton_final_response"].bool_param


# --------------------------------------------------------------------------
# The backend
# --------------------------------------------------------------------------


class TritonBackend(Backend):
    kind = "triton"

    def __init__(self, config: BackendConfig) -> None:
        if not config.endpoint:
            raise InvalidParameter(
                "a triton deployment needs an endpoint (http://host:8000 or host:8001)", param="endpoint"
            )
        if not config.server_model:
            raise InvalidParameter("a triton deployment needs the model's name on the server", param="server_model")
        self.config = config
        self.model = config.server_model
        self.protocol = str(config.option("protocol", "fastertransformer"))
        if self.protocol not in TRITON_PROTOCOLS:
            raise InvalidParameter(
                f"triton protocol must be one of {', '.join(TRITON_PROTOCOLS)} (got {self.protocol!r})", param="protocol"
            )
        self.target = parse_target(config.endpoint, config.option("transport"))
        self.decoupled = _flag(config.option("stream", False))
        if self.decoupled and self.target.transport != "grpc":
            raise InvalidParameter("streaming (decoupled) Triton models are served over gRPC only", param="stream")
        if self.protocol == "fastertransformer" and not config.model_path:
            raise InvalidParameter(
                "the FasterTransformer protocol needs the model's tokenizer (model_path)", param="model_path"
            )
        self.tokenizer = self._load_tokenizer(config.model_path) if config.model_path else None
        self._transport: Transport | None = None
        self._transport_loop: asyncio.AbstractEventLoop | None = None
        self._declared: dict[str, str] | None = None

    @staticmethod
    def _load_tokenizer(path: str) -> Any:
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise InvalidParameter(f"cannot load the tokenizer from {path}: {error}", param="model_path") from error

    # -- client -----------------------------------------------------------

    def _client(self) -> Transport:
        """The backend's one client, made in the loop that uses it: both
        aiohttp and grpc.aio bind to the loop they were created in. (A
        client left behind by another, finished loop cannot be closed from
        this one; the gateway runs one loop, so that is for tests.)"""
        loop = asyncio.get_running_loop()
        if self._transport is None or self._transport_loop is not loop:
            cls = GrpcTransport if self.target.transport == "grpc" else HttpTransport
            self._transport = cls(self.target, self.config.timeout_s)
            self._transport_loop = loop
        return self._transport

    async def _declared_inputs(self) -> dict[str, str]:
        if self._declared is None:
            self._declared = await self._client().declared_inputs(self.model)
        return self._declared

    # -- requests ---------------------------------------------------------

    def _prompt(self, request: GenerationRequest) -> str:
        if request.prompt is not None:
            return request.prompt
        return prompts.render(request.messages or (), self.config.prompt_template, self.tokenizer)

    def _prepare(self, request: GenerationRequest) -> tuple[list[Input], FasterTransformerReader | TensorRTLLMReader]:
        check_supported(request.params)
        if self.protocol == "fastertransformer":
            return self._prepare_ft(request)
        return self._prepare_trtllm(request)

    def _prepare_ft(self, request: GenerationRequest) -> tuple[list[Input], FasterTransformerReader]:
        params = request.params
        ids = self.tokenizer.encode(self._prompt(request))
        if not ids:
            raise InvalidParameter("the prompt is empty", param="prompt" if request.prompt is not None else "messages")
        budget = new_token_budget(params, len(ids))
        end_id = self.tokenizer.eos_token_id
        inputs = [
            Input(("input_ids",), [ids], "UINT32", required=True),
            Input(("input_lengths",), [[len(ids)]], "UINT32", required=True),
            Input(("request_output_len",), [[budget]], "UINT32", required=True),
            *_greedy_or_sampling(params, "runtime_top_k", "runtime_top_p", "UINT32"),
        ]
        if end_id is not None:
            inputs.append(_scalar("end_id", end_id, "UINT32"))
        return inputs, FasterTransformerReader(self.tokenizer, len(ids), budget, end_id)

    def _prepare_trtllm(self, request: GenerationRequest) -> tuple[list[Input], TensorRTLLMReader]:
        params = request.params
        prompt = self._prompt(request)
        prompt_tokens = len(self.tokenizer.encode(prompt)) if self.tokenizer is not None else None
        budget = new_token_budget(params, prompt_tokens)
        inputs = [
            Input(("text_input",), [[prompt.encode("utf-8")]], "BYTES", required=True),
            Input(("max_tokens",), [[budget]], "INT32", required=True),
            *_greedy_or_sampling(params, "top_k", "top_p", "INT32"),
            _scalar("stream", self.decoupled, "BOOL"),
        ]
        return inputs, TensorRTLLMReader(self.tokenizer, prompt_tokens or 0, budget, streamed=self.decoupled)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        specs, reader = self._prepare(request)
        client = self._client()
        inputs = resolve_inputs(specs, await self._declared_inputs(), self.model, self.protocol)
        if not self.decoupled:
            chunk = reader.feed(await client.infer(self.model, inputs), last=True)
            if chunk is not None:
                yield chunk
            yield reader.finish()
            return
        async with aclosing(client.stream(self.model, inputs)) as responses:
            async for result in responses:
                chunk = reader.feed(result)
                if chunk is not None:
                    yield chunk
                if reader.stopped:
                    break  # leaving the block cancels the call
        yield reader.finish()

    # -- lifecycle --------------------------------------------------------

    async def health(self) -> Health:
        try:
            client = self._client()
            if not await client.live():
                return Health(False, f"Triton at {self.target.address} is not live")
            if not await client.model_ready(self.model):
                return Health(False, f"model {self.model!r} is not ready on Triton at {self.target.address}")
            return Health(True)
        except InferenceError as error:
            return Health(False, error.message)
        except Exception as error:  # health never raises
            return Health(False, f"Triton at {self.target.address}: {type(error).__name__}: {error}")

    async def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            await transport.close()
