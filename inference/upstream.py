"""Any OpenAI-compatible upstream (vLLM, TGI, OpenAI itself, another
Workbench): requests pass through with our parameter mapping, streams are
re-chunked, upstream errors become ours (see `_raise_for_status`)."""
from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from inference.base import (
    Backend,
    BackendFailed,
    BackendUnavailable,
    Chunk,
    Completion,
    Embeddings,
    GenerationRequest,
    Health,
    InferenceError,
    InvalidParameter,
    SamplingParams,
    UpstreamRateLimited,
)
from inference.config import BackendConfig


def upstream_body(request: GenerationRequest, model: str, prompt_tokens: int | None) -> dict[str, Any]:
    """OpenAI's fields, plus vLLM's extras only when they change something."""
    params: SamplingParams = request.params
    if params.decoder == "contrastive":
        raise InvalidParameter("decoder 'contrastive' is served by local deployments only", param="decoder")
    body: dict[str, Any] = {"model": model}
    if request.messages is not None:
        body["messages"] = list(request.messages)
    else:
        body["prompt"] = request.prompt
    budget = params.max_new_tokens
    if budget is None and params.max_length is not None:
        if prompt_tokens is None:
            raise InvalidParameter("'max_length' needs the deployment's tokenizer folder; send max_tokens", param="max_length")
        budget = params.max_length - prompt_tokens
        if budget <= 0:
            raise InvalidParameter(f"'max_length' ({params.max_length}) leaves no room after the {prompt_tokens}-token prompt", param="max_length")
    if budget is not None:
        body["max_tokens"] = budget
    body["temperature"] = 0.0 if params.greedy else params.temperature
    if params.top_p != 1.0:
        body["top_p"] = params.top_p
    if params.seed is not None:
        body["seed"] = params.seed
    if params.presence_penalty:
        body["presence_penalty"] = params.presence_penalty
    if params.frequency_penalty:
        body["frequency_penalty"] = params.frequency_penalty
    if params.stop:
        body["stop"] = list(params.stop)
    if params.top_k:
        body["top_k"] = params.top_k
    if params.repetition_penalty != 1.0:
        body["repetition_penalty"] = params.repetition_penalty
    if request.user:
        body["user"] = request.user
    return body


def _error_message(response: httpx.Response) -> tuple[str, str | None]:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict):
        return str(error.get("message") or error), error.get("param")
    if isinstance(error, str):
        return error, None
    return response.text[:300] or response.reason_phrase, None


def _raise_for_status(response: httpx.Response, where: str) -> None:
    if response.status_code < 400:
        return
    message, param = _error_message(response)
    status = response.status_code
    if status in (400, 422):
        raise InvalidParameter(f"upstream rejected the request: {message}", param=param)
    if status == 429:
        raise UpstreamRateLimited(f"upstream is rate limiting: {message}")
    if status in (401, 403):
        raise BackendFailed(f"upstream {where} refused this deployment's credentials ({status}): {message}")
    if status == 404:
        raise BackendFailed(f"upstream {where} answered 404: {message}")
    raise BackendFailed(f"upstream {where} failed ({status}): {message}")


class OpenAIUpstreamBackend(Backend):
    kind = "openai"
    supports_embeddings = True

    def __init__(self, config: BackendConfig) -> None:
        if not config.endpoint:
            raise InvalidParameter("an OpenAI-compatible deployment needs an endpoint URL", param="endpoint")
        self.config = config
        self.base = config.endpoint.rstrip("/")
        self.model = config.server_model or ""
        headers = {"Authorization": f"Bearer {config.option('api_key')}"} if config.option("api_key") else {}
        self.client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(config.timeout_s, connect=min(10.0, config.timeout_s)),
            limits=httpx.Limits(max_connections=int(config.option("max_connections", 256))),
        )
        self._tokenizer: Any = None

    def _prompt_tokens(self, request: GenerationRequest) -> int | None:
        """Only needed for `max_length`; None when no tokenizer is configured."""
        if request.params.max_length is None or request.params.max_new_tokens is not None or not self.config.model_path:
            return None
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            self._tokenizer = AutoTokenizer.from_pretrained(self.config.model_path, local_files_only=True)
        from inference.prompts import render

        text = request.prompt if request.prompt is not None else render(request.messages or (), self.config.prompt_template, self._tokenizer)
        return len(self._tokenizer(text)["input_ids"])

    def _route(self, request: GenerationRequest) -> str:
        return "/chat/completions" if request.messages is not None else "/completions"

    async def generate(self, request: GenerationRequest) -> Completion:
        body = upstream_body(request, self.model, self._prompt_tokens(request))
        route = self._route(request)
        try:
            response = await self.client.post(self.base + route, json=body)
        except httpx.TimeoutException as error:
            raise BackendFailed(f"upstream {self.base} timed out: {error!r}") from error
        except httpx.TransportError as error:
            raise BackendUnavailable(f"upstream {self.base} is unreachable: {error!r}") from error
        _raise_for_status(response, self.base)
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] if request.messages is not None else choice["text"]
            usage = data.get("usage") or {}
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise BackendFailed(f"upstream {self.base} sent an unexpected answer: {response.text[:200]}") from error
        return Completion(
            text=text or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[Chunk]:
        body = upstream_body(request, self.model, self._prompt_tokens(request))
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        chat = request.messages is not None
        try:
            async with self.client.stream("POST", self.base + self._route(request), json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    _raise_for_status(response, self.base)
                async for chunk in self._chunks(response, chat):
                    yield chunk
        except httpx.TimeoutException as error:
            raise BackendFailed(f"upstream {self.base} timed out: {error!r}") from error
        except httpx.TransportError as error:
            raise BackendUnavailable(f"upstream {self.base} is unreachable: {error!r}") from error

    async def _chunks(self, response: httpx.Response, chat: bool) -> AsyncIterator[Chunk]:
        pieces = 0
        finish: str | None = None
        usage: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            payload = line[5:].strip()
            if payload == "[DONE]":
                break
            try:
                event = json.loads(payload)
            except ValueError as error:
                raise BackendFailed(f"upstream sent a malformed stream event: {payload[:200]}") from error
            if "error" in event:
                message = event["error"].get("message") if isinstance(event["error"], dict) else event["error"]
                raise BackendFailed(f"upstream failed mid-stream: {message}")
            usage = event.get("usage") or usage
            for choice in event.get("choices") or []:
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                if text:
                    pieces += 1
                    yield Chunk(text)
                finish = choice.get("finish_reason") or finish
        if finish is None:
            raise BackendFailed("upstream closed the stream before finishing")
        # Real counts arrive once, in the usage event; without one, each
        # content event is taken as one token (what vLLM and OpenAI send).
        completion_tokens = int(usage.get("completion_tokens") or pieces)
        yield Chunk("", completion_tokens, int(usage.get("prompt_tokens") or 0), "length" if finish == "length" else "stop")

    async def embed(self, texts: list[str]) -> Embeddings:
        try:
            response = await self.client.post(self.base + "/embeddings", json={"model": self.model, "input": texts})
        except httpx.TransportError as error:
            raise BackendUnavailable(f"upstream {self.base} is unreachable: {error!r}") from error
        _raise_for_status(response, self.base)
        try:
            data = response.json()
            vectors = [item["embedding"] for item in sorted(data["data"], key=lambda item: item["index"])]
        except (ValueError, KeyError, TypeError) as error:
            raise BackendFailed(f"upstream {self.base} sent an unexpected answer: {response.text[:200]}") from error
        if vectors and isinstance(vectors[0], str):
            raise BackendFailed("upstream answered base64 embeddings to a float request")
        return Embeddings(vectors, int((data.get("usage") or {}).get("prompt_tokens") or 0), len(vectors[0]) if vectors else 0)

    async def health(self) -> Health:
        try:
            response = await self.client.get(self.base + "/models", timeout=10)
            _raise_for_status(response, self.base)
            ids = [item.get("id") for item in response.json().get("data", [])]
        except InferenceError as error:
            return Health(False, error.message)
        except httpx.HTTPError as error:
            return Health(False, f"upstream {self.base} is unreachable: {error!r}")
        except ValueError:
            return Health(False, f"upstream {self.base}/models did not answer JSON")
        if self.model and ids and self.model not in ids:
            return Health(False, f"upstream serves {', '.join(map(str, ids[:5]))} but not {self.model!r}")
        return Health(True, f"{len(ids)} model(s) upstream")

    async def close(self) -> None:
        await self.client.aclose()
