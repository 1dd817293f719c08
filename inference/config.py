"""What a deployment tells the inference layer, and the one place that turns
it into a backend. `webapp.deployments` builds a `BackendConfig` from a row;
nothing here knows about Django."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inference.base import Backend, InvalidParameter
from inference.prompts import SEED_TEMPLATE

KINDS = ("local", "triton", "openai", "embedding")
TRITON_PROTOCOLS = ("fastertransformer", "tensorrtllm")
TRITON_TRANSPORTS = ("http", "grpc")


@dataclass(frozen=True)
class BackendConfig:
    """kind: local | triton | openai | embedding.

    - model_path: folder with the model (local, embedding) or the tokenizer
      (triton FasterTransformer tokenises client-side; openai optional, used
      for `max_length`).
    - endpoint: base URL (triton `http://host:8000` or `host:8001` for gRPC,
      openai `http://host:port/v1`).
    - server_model: the model's name on the server (triton model, upstream id).
    - options: per kind — triton: protocol, transport, stream (gRPC decoupled);
      local: max_batch_size, batch_wait_ms, device, dtype; openai: api_key.
    """

    kind: str
    model_path: str | None = None
    endpoint: str | None = None
    server_model: str | None = None
    prompt_template: str = SEED_TEMPLATE
    options: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 120.0

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)


def create_backend(config: BackendConfig) -> Backend:
    """A new backend for the config (callers cache it, see inference.pool)."""
    if config.kind == "local":
        from inference.local import LocalBackend

        return LocalBackend(config)
    if config.kind == "triton":
        from inference.triton import TritonBackend

        return TritonBackend(config)
    if config.kind == "openai":
        from inference.upstream import OpenAIUpstreamBackend

        return OpenAIUpstreamBackend(config)
    if config.kind == "embedding":
        from inference.embeddings import EmbeddingBackend

        return EmbeddingBackend(config)
    raise InvalidParameter(f"unknown backend kind {config.kind!r}; expected one of {', '.join(KINDS)}", param="kind")
