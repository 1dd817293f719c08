"""The one interface every backend implements, and the types it speaks.

A backend turns a `GenerationRequest` into a stream of `Chunk`s (the last one
carries `finish_reason`), answers `embed` when it is an embedding backend, and
reports `health`. The gateway (`webapp.api`) never knows which engine is behind
a deployment; it only sees these types and `InferenceError`s.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length"]
Decoder = Literal["sample", "greedy", "contrastive"]
DECODERS: tuple[str, ...] = ("sample", "greedy", "contrastive")


class InferenceError(Exception):
    """A failure with the HTTP status and OpenAI error type the gateway sends."""

    status = 502
    error_type = "api_error"
    code: str | None = "backend_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidParameter(InferenceError):
    """The request cannot be served as asked (400, names the parameter)."""

    status = 400
    error_type = "invalid_request_error"
    code = "invalid_parameter"


class BackendUnavailable(InferenceError):
    """The engine cannot be reached or is not ready (503)."""

    status = 503
    error_type = "api_error"
    code = "backend_unavailable"


class BackendFailed(InferenceError):
    """The engine answered with an error or nonsense (502)."""

    status = 502
    error_type = "api_error"
    code = "backend_error"


class UpstreamRateLimited(InferenceError):
    status = 429
    error_type = "rate_limit_error"
    code = "upstream_rate_limited"


@dataclass(frozen=True)
class SamplingParams:
    """Decoding parameters after validation (see `inference.params.parse`).

    `max_new_tokens` None means "until EOS or the model's context"; `max_length`
    (the seed's clients) bounds prompt + answer and is turned into a new-token
    budget by backends that know the prompt length.
    """

    max_new_tokens: int | None = None
    max_length: int | None = None
    decoder: Decoder = "sample"
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k filter
    repetition_penalty: float = 1.0  # multiplicative, CTRL-style (transformers' meaning)
    presence_penalty: float = 0.0  # additive, OpenAI's meaning
    frequency_penalty: float = 0.0
    penalty_alpha: float = 0.6  # contrastive search
    contrastive_top_k: int = 4
    seed: int | None = None
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.decoder == "greedy" or (self.decoder == "sample" and self.temperature == 0)


@dataclass(frozen=True)
class GenerationRequest:
    """Exactly one of `prompt` (raw text, /v1/completions) and `messages`
    (chat, rendered with the deployment's prompt template unless the engine
    templates itself, as an OpenAI upstream does)."""

    params: SamplingParams
    prompt: str | None = None
    messages: tuple[dict[str, str], ...] | None = None
    user: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chunk:
    """A piece of streamed output. `tokens` is how many new tokens the piece
    stands for (summed into usage); the last chunk of a stream has
    `finish_reason` set and may have empty text."""

    text: str
    tokens: int = 0
    prompt_tokens: int = 0
    finish_reason: FinishReason | None = None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int
    dimensions: int


@dataclass(frozen=True)
class Health:
    ok: bool
    detail: str = ""


class Backend:
    """Base class: subclasses implement `stream` (and `embed` for embedding
    backends); `generate` collects a stream."""

    kind: str = "base"
    supports_generation: bool = True
    supports_embeddings: bool = False

    def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        raise NotImplementedError

    async def generate(self, request: GenerationRequest) -> Completion:
        parts: list[str] = []
        prompt_tokens = completion_tokens = 0
        finish: FinishReason = "length"
        async for chunk in self.stream(request):
            parts.append(chunk.text)
            completion_tokens += chunk.tokens
            prompt_tokens = chunk.prompt_tokens or prompt_tokens
            if chunk.finish_reason:
                finish = chunk.finish_reason
        return Completion("".join(parts), prompt_tokens, completion_tokens, finish)

    async def embed(self, texts: list[str]) -> Embeddings:
        raise InvalidParameter(f"this model ({self.kind} backend) does not serve embeddings", param="model")

    async def health(self) -> Health:
        raise NotImplementedError

    async def close(self) -> None:
        """Release connections, threads and memory."""
