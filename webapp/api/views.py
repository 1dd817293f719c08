"""/v1: OpenAI-compatible endpoints as async views (DRF cannot stream SSE).
Each view authenticates, takes a concurrency slot and hands the body to
`webapp.api.gateway`; errors come back in OpenAI's envelope."""
from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from webapp.accounts.authentication import bearer_token
from webapp.accounts.models import ApiKey
from webapp.api import gateway, limits, lookups
from webapp.api.gateway import CallLog, GatewayError
from webapp.deployments.selectors import servable_deployments

logger = logging.getLogger(__name__)

Handler = Callable[[ApiKey, dict[str, Any], CallLog, limits.Slot], Awaitable[HttpResponse]]


def error_response(error: GatewayError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    if error.status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="v1"'
    return response


async def authenticate(request: HttpRequest) -> ApiKey:
    token = bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        raise GatewayError(401, "Missing API key: send 'Authorization: Bearer <key>' (create one on the API keys page).",
                           "invalid_request_error", "invalid_api_key")
    api_key = await lookups.api_key_for(token)
    if api_key is None:
        raise GatewayError(401, "Incorrect or revoked API key.", "invalid_request_error", "invalid_api_key")
    return api_key


def read_body(request: HttpRequest) -> dict[str, Any]:
    declared = int(request.headers.get("Content-Length") or 0)
    too_big = GatewayError(413, f"request body is over the {settings.V1_MAX_BODY_BYTES}-byte limit",
                           "invalid_request_error", "request_too_large")
    if declared > settings.V1_MAX_BODY_BYTES:
        raise too_big
    try:
        return gateway.parse_body(request.body)
    except RequestDataTooBig:
        raise too_big from None


async def serve(request: HttpRequest, endpoint: str, handler: Handler) -> HttpResponse:
    log = CallLog(endpoint=endpoint)
    slot: limits.Slot | None = None
    handed_over = False
    try:
        if request.method != "POST":
            raise GatewayError(405, f"{endpoint} takes POST", "invalid_request_error", "method_not_allowed")
        log.api_key = await authenticate(request)
        body = read_body(request)
        log.model = body["model"] if isinstance(body.get("model"), str) else ""
        log.stream = body.get("stream") is True
        try:
            slot = await limits.acquire(log.api_key)
        except limits.LimiterUnavailable as error:
            raise GatewayError(503, f"the gateway cannot count requests in flight: {error}", "api_error", "service_unavailable") from None
        if slot is None:
            raise GatewayError(429, f"this key already has {limits.limit_for(log.api_key)} requests in flight; retry when one finishes",
                               "rate_limit_error", "concurrency_limit_exceeded")
        response = await handler(log.api_key, body, log, slot)
        handed_over = isinstance(response, StreamingHttpResponse)
        return response
    except GatewayError as error:
        log.fail(error.status, error.message)
        return error_response(error)
    except Exception as error:  # a bug: still answer in the envelope SDKs parse
        logger.exception("unhandled error in %s", endpoint)
        log.fail(500, f"{type(error).__name__}: {error}")
        return error_response(GatewayError(500, "internal error", "api_error", "internal_error"))
    finally:
        if not handed_over:
            if slot is not None:
                await slot.release()
            if log.api_key is not None:
                gateway.save_log(log)


async def _generation(plan: gateway.Plan, log: CallLog, slot: limits.Slot) -> HttpResponse:
    log.model = plan.deployment.name
    if not plan.stream:
        return JsonResponse(await gateway.complete(plan, log), json_dumps_params={"ensure_ascii": False})
    started = await gateway.start_streams(plan)

    async def close() -> None:
        await slot.release()
        gateway.save_log(log)

    response = StreamingHttpResponse(gateway.stream_events(plan, started, log, close), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
    return response


async def _chat(api_key: ApiKey, body: dict[str, Any], log: CallLog, slot: limits.Slot) -> HttpResponse:
    return await _generation(await gateway.plan_chat(api_key, body), log, slot)


async def _completion(api_key: ApiKey, body: dict[str, Any], log: CallLog, slot: limits.Slot) -> HttpResponse:
    return await _generation(await gateway.plan_completion(api_key, body), log, slot)


async def _embeddings(api_key: ApiKey, body: dict[str, Any], log: CallLog, slot: limits.Slot) -> HttpResponse:
    return JsonResponse(await gateway.embed(api_key, body, log))


@csrf_exempt
async def chat_completions(request: HttpRequest) -> HttpResponse:
    return await serve(request, "chat.completions", _chat)


@csrf_exempt
async def completions(request: HttpRequest) -> HttpResponse:
    return await serve(request, "completions", _completion)


@csrf_exempt
async def embeddings(request: HttpRequest) -> HttpResponse:
    return await serve(request, "embeddings", _embeddings)


async def models(request: HttpRequest) -> HttpResponse:
    try:
        api_key = await authenticate(request)
    except GatewayError as error:
        return error_response(error)
    deployments = await sync_to_async(lambda: list(servable_deployments(user=api_key.owner)))()
    return JsonResponse(gateway.model_list(deployments))


async def model_detail(request: HttpRequest, model: str) -> HttpResponse:
    try:
        api_key = await authenticate(request)
    except GatewayError as error:
        return error_response(error)
    deployments = await sync_to_async(lambda: list(servable_deployments(user=api_key.owner).filter(name=model)))()
    if not deployments:
        return error_response(GatewayError(404, f"The model '{model}' does not exist or you do not have access to it.",
                                           "invalid_request_error", "model_not_found", "model"))
    return JsonResponse(gateway.model_list(deployments)["data"][0])


async def not_found(request: HttpRequest, rest: str) -> HttpResponse:
    return error_response(GatewayError(404, f"no such endpoint: /v1/{rest}", "invalid_request_error", "unknown_url"))
