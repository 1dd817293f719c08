"""Serving building blocks shared by /v1 (`webapp.api.gateway`) and the chat
console (`webapp.chat`): one pooled backend per deployment in this process,
and a generation stream with the request's stop strings applied."""
from __future__ import annotations

from collections.abc import AsyncIterator

from inference.base import Backend, Chunk, GenerationRequest
from inference.pool import pool
from inference.text import apply_stop_strings
from webapp.deployments.models import Deployment
from webapp.deployments.services import backend_config


def backend_for(deployment: Deployment) -> Backend:
    return pool.get(f"deployment:{deployment.pk}", backend_config(deployment))


def generation_stream(backend: Backend, request: GenerationRequest) -> AsyncIterator[Chunk]:
    """The backend's stream cut at the first stop string. Closing it early
    (aclose) closes the backend's stream, and every backend then stops its
    work (inference/README.md)."""
    return apply_stop_strings(backend.stream(request), request.params.stop)
