"""Writes for deployments, the deployment → backend mapping and health checks."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from inference.base import Health, InferenceError
from inference.config import TRITON_PROTOCOLS, TRITON_TRANSPORTS, BackendConfig, create_backend
from inference.params import sampling_params
from inference.prompts import CHAT_TEMPLATE
from webapp.core.errors import Conflict, UpstreamFailed, ValidationFailed
from webapp.core.notify import notify_user
from webapp.deployments.models import MODEL_ID, BackendKind, Deployment, HealthStatus
from webapp.registry.models import ModelArtifact

EDITABLE = (
    "name", "kind", "endpoint_url", "server_model", "artifact", "model_path", "prompt_template",
    "default_params", "options", "upstream_api_key", "shared", "enabled", "description",
)


@dataclass
class DeploymentSpec:
    """The editable fields of a deployment, checked by `check_spec`."""

    name: str
    kind: str
    endpoint_url: str = ""
    server_model: str = ""
    artifact: ModelArtifact | None = None
    model_path: str = ""
    prompt_template: str = "User: {prompt}\n\nBot: "
    default_params: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    upstream_api_key: str = ""
    shared: bool = False
    enabled: bool = True
    description: str = ""


def artifact_path(artifact: ModelArtifact) -> Path:
    return Path(settings.ARTIFACTS_ROOT) / artifact.folder


def _folder(spec: DeploymentSpec) -> str | None:
    if spec.artifact is not None:
        return str(artifact_path(spec.artifact))
    return spec.model_path or None


def check_spec(spec: DeploymentSpec) -> DeploymentSpec:
    """Every rule a deployment must meet, each error naming its field."""
    spec.name = (spec.name or "").strip()
    try:
        MODEL_ID(spec.name)
    except DjangoValidationError:
        raise ValidationFailed(f"name {spec.name!r}: use letters, digits and . _ : / - (the id clients send)", field="name") from None
    if spec.kind not in BackendKind.values:
        raise ValidationFailed(f"kind must be one of {', '.join(BackendKind.values)}", field="kind")
    if not isinstance(spec.default_params, dict):
        raise ValidationFailed("default_params must be a JSON object", field="default_params")
    if not isinstance(spec.options, dict):
        raise ValidationFailed("options must be a JSON object", field="options")
    try:
        sampling_params(spec.default_params)
    except InferenceError as error:
        raise ValidationFailed(f"default_params: {error.message}", field="default_params") from None
    if spec.prompt_template != CHAT_TEMPLATE and "{prompt}" not in spec.prompt_template:
        raise ValidationFailed("prompt_template must contain {prompt} or be 'chat_template'", field="prompt_template")
    folder = _folder(spec)
    if folder and not Path(folder).is_dir():
        raise ValidationFailed(f"folder {folder} does not exist", field="model_path")
    if spec.kind == BackendKind.LOCAL and not folder:
        raise ValidationFailed("a local deployment needs a registry model or a model folder", field="artifact")
    if spec.kind in (BackendKind.TRITON, BackendKind.OPENAI):
        if not spec.endpoint_url.strip():
            raise ValidationFailed(f"a {spec.kind} deployment needs an endpoint URL", field="endpoint_url")
        if not spec.server_model.strip():
            raise ValidationFailed("name the model as the server knows it", field="server_model")
    if spec.kind == BackendKind.TRITON:
        protocol = spec.options.setdefault("protocol", "fastertransformer")
        if protocol not in TRITON_PROTOCOLS:
            raise ValidationFailed(f"options.protocol must be one of {', '.join(TRITON_PROTOCOLS)}", field="options")
        if spec.options.get("transport", "grpc") not in TRITON_TRANSPORTS:
            raise ValidationFailed(f"options.transport must be one of {', '.join(TRITON_TRANSPORTS)}", field="options")
        if protocol == "fastertransformer" and not folder:
            raise ValidationFailed("FasterTransformer models are tokenised here: choose the registry model or a tokenizer folder", field="artifact")
    return spec


def backend_config(deployment: Deployment | DeploymentSpec) -> BackendConfig:
    spec = deployment
    options = dict(spec.options)
    if spec.upstream_api_key:
        options["api_key"] = spec.upstream_api_key
    folder = str(artifact_path(spec.artifact)) if spec.artifact is not None else (spec.model_path or None)
    return BackendConfig(
        kind=spec.kind,
        model_path=folder,
        endpoint=spec.endpoint_url or None,
        server_model=spec.server_model or None,
        prompt_template=spec.prompt_template,
        options=options,
        timeout_s=float(options.get("timeout_s", settings.SERVING_BACKEND_TIMEOUT_S)),
    )


def _save(deployment: Deployment) -> Deployment:
    try:
        with transaction.atomic():
            deployment.save()
    except IntegrityError:
        raise Conflict(f"a deployment named {deployment.name!r} already exists", field="name") from None
    return deployment


def deployment_create(*, owner: AbstractBaseUser, spec: DeploymentSpec) -> Deployment:
    check_spec(spec)
    return _save(Deployment(owner=owner, **{name: getattr(spec, name) for name in EDITABLE}))


def deployment_update(*, deployment: Deployment, changes: dict[str, Any]) -> Deployment:
    current = {name: getattr(deployment, name) for name in EDITABLE}
    if changes.get("upstream_api_key") in ("", None):
        changes.pop("upstream_api_key", None)  # blank keeps the stored secret
    spec = check_spec(DeploymentSpec(**{**current, **{k: v for k, v in changes.items() if k in EDITABLE}}))
    for name in EDITABLE:
        setattr(deployment, name, getattr(spec, name))
    deployment.status, deployment.status_detail, deployment.checked_at = HealthStatus.UNKNOWN, "", None
    return _save(deployment)


def deployment_delete(*, deployment: Deployment) -> None:
    deployment.delete()


def _unique_name(base: str) -> str:
    name, counter = base, 2
    while Deployment.objects.filter(name=name).exists():
        name, counter = f"{base}-{counter}", counter + 1
    return name


def deployment_serve_locally(*, owner: AbstractBaseUser, artifact: ModelArtifact) -> Deployment:
    """One click on a registry model: a local deployment named after it."""
    if artifact.kind == "reward":
        raise ValidationFailed("a reward model scores answers; it does not generate text", field="artifact")
    base = f"{artifact.name}-v{artifact.version}".replace(" ", "-")
    spec = DeploymentSpec(name=_unique_name(base[:120]), kind=BackendKind.LOCAL, artifact=artifact,
                          description=f"Served locally from the registry model {artifact}.")
    return deployment_create(owner=owner, spec=spec)


def probe(config: BackendConfig) -> Health:
    """Ask a fresh backend for its health (from sync code: views, Celery)."""

    async def ask() -> Health:
        try:
            backend = create_backend(config)
        except InferenceError as error:
            return Health(False, error.message)
        try:
            return await asyncio.wait_for(backend.health(), timeout=settings.SERVING_HEALTH_TIMEOUT_S)
        except asyncio.TimeoutError:
            return Health(False, f"no answer within {settings.SERVING_HEALTH_TIMEOUT_S:g} s")
        except Exception as error:  # a health check reports, it never raises
            return Health(False, f"{type(error).__name__}: {error}")
        finally:
            await backend.close()

    return asyncio.run(ask())


def deployment_test_connection(*, spec: DeploymentSpec) -> Health:
    """The form's "test connection" button: checks an unsaved spec."""
    return probe(backend_config(check_spec(spec)))


def deployment_record_health(*, deployment: Deployment, health: Health) -> Deployment:
    status = HealthStatus.HEALTHY if health.ok else HealthStatus.UNHEALTHY
    changed = status != deployment.status or health.detail != deployment.status_detail
    deployment.status, deployment.status_detail, deployment.checked_at = status, health.detail[:2000], timezone.now()
    Deployment.objects.filter(pk=deployment.pk).update(
        status=deployment.status, status_detail=deployment.status_detail, checked_at=deployment.checked_at
    )
    if changed:
        notify_user(user_id=deployment.owner_id, payload={
            "event": "deployment.status", "id": deployment.pk, "status": deployment.status,
            "detail": deployment.status_detail, "checked_at": deployment.checked_at.isoformat(),
        })
    return deployment


def deployment_check_health(*, deployment: Deployment) -> Deployment:
    return deployment_record_health(deployment=deployment, health=probe(backend_config(deployment)))


def deployments_check_all() -> int:
    count = 0
    for deployment in Deployment.objects.filter(enabled=True).select_related("artifact"):
        deployment_check_health(deployment=deployment)
        count += 1
    return count


def deployment_try(*, deployment: Deployment, prompt: str, max_tokens: int = 64, temperature: float | None = None) -> dict[str, Any]:
    """The detail page's quick prompt: one chat turn, non-streaming."""
    import time

    from inference.base import GenerationRequest
    from inference.pool import pool

    if deployment.kind == BackendKind.EMBEDDING:
        raise ValidationFailed("an embedding model does not generate text; call /v1/embeddings", field="prompt")
    body: dict[str, Any] = {"max_tokens": max_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    try:
        params = sampling_params(body, deployment.default_params)
    except InferenceError as error:
        raise ValidationFailed(error.message, field=error.param) from None
    request = GenerationRequest(params=params, messages=({"role": "user", "content": prompt},))
    config = backend_config(deployment)
    # A local model stays loaded in this process (shared with /v1); network
    # backends get a client for this call only (their clients belong to a loop).
    shared = deployment.kind == BackendKind.LOCAL

    async def run() -> Any:
        backend = pool.get(f"deployment:{deployment.pk}", config) if shared else create_backend(config)
        try:
            return await backend.generate(request)
        finally:
            if not shared:
                await backend.close()

    started = time.monotonic()
    try:
        completion = asyncio.run(run())
    except InferenceError as error:
        if error.status == 400:
            raise ValidationFailed(error.message, field=error.param) from None
        raise UpstreamFailed(f"the backend failed: {error.message}") from None
    return {
        "text": completion.text, "finish_reason": completion.finish_reason,
        "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
        "latency_ms": int((time.monotonic() - started) * 1000),
    }
