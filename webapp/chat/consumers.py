"""The chat socket, /ws/chat/: streams answers (chat turns and arena
battles) as JSON frames. The protocol is documented in webapp/chat/README.md.

Each generation runs in its own task so the socket keeps reading frames
(stop, other sends) while tokens stream; an error is a frame, never a close.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync, database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import transaction

from webapp.api.lookups import TtlCache
from webapp.chat import services
from webapp.chat.markdown import render_markdown
from webapp.chat.streaming import AnswerRun, Outcome
from webapp.core.errors import DomainError
from webapp.deployments.models import Deployment
from webapp.deployments.serving import backend_for

logger = logging.getLogger(__name__)

MAX_RUNNING = 4  # generations in flight per socket (an arena battle counts once)
MAX_REQUEST_ID = 64
DISCONNECT_GRACE_S = 10.0  # stopped answers are stored before the consumer goes
TURNS: dict[str, Callable[..., services.Turn]] = {
    "send": services.chat_turn_send,
    "regenerate": services.chat_turn_regenerate,
    "edit": services.chat_turn_edit,
}


# The consumer's reads (turn previews, model lookups) run in a pool of their
# own rather than in asgiref's single thread-sensitive thread: there, 200
# sockets starting a turn at once queued behind each other before any
# backend was asked. Writes stay in that one thread (`TurnWriter` batches
# them): on SQLite, two transactions of one process that read and then write
# would otherwise deadlock ("database is locked"), and tests that hold a
# transaction open would block every writer.
_DB_POOL = ThreadPoolExecutor(max_workers=settings.CHAT_DB_THREADS, thread_name_prefix="chat-db")


def in_db_pool(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """For reads only (see above)."""
    return DatabaseSyncToAsync(function, thread_sensitive=False, executor=_DB_POOL)


# (user id, model name) → the deployment, for V1_LOOKUP_CACHE_S (as /v1):
# a turn that starts a conversation is then previewed without a query. A
# model removed meanwhile is still refused, by the turn's write.
_models: TtlCache[Deployment] = TtlCache()
# Lookups in flight: 200 sockets that miss the cache at once wait for one
# query instead of sending 200 (each a new connection on PostgreSQL).
_lookups: dict[tuple[Any, str], asyncio.Future[Deployment]] = {}


def _write_batch(calls: list[tuple[Callable[..., Any], dict[str, Any]]]) -> list[Any]:
    """Every call in one transaction, each in a savepoint of its own (the
    services are atomic): one refused turn rolls back alone."""
    results: list[Any] = []
    with transaction.atomic():
        for function, fields in calls:
            try:
                results.append(function(**fields))
            except Exception as error:  # noqa: BLE001 - handed to its caller as is
                results.append(error)
    return results


class TurnWriter:
    """Group commit for the socket's writes (turns, answers, arena battles):
    what arrives while a batch is being stored goes in the next batch, in
    one transaction, one batch at a time. 200 sockets starting at once each
    waited for a transaction of their own before (~2 s for the last of 200
    on SQLite); a batch stores them in tens of ms."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], dict[str, Any], asyncio.Future[Any]]] = []
        self.draining = False

    async def write(self, function: Callable[..., Any], **fields: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending.append((function, fields, future))
        if not self.draining:
            self.draining = True
            asyncio.ensure_future(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending, []
                try:
                    results = await database_sync_to_async(_write_batch)([(function, fields) for function, fields, _ in batch])
                except Exception as error:  # noqa: BLE001 - the database itself failed: every caller hears it
                    results = [error] * len(batch)
                for (_, _, future), result in zip(batch, results):
                    if future.done():
                        continue  # its caller was cancelled
                    if isinstance(result, BaseException):
                        future.set_exception(result)
                    else:
                        future.set_result(result)
        finally:
            self.draining = False


_writers: dict[asyncio.AbstractEventLoop, TurnWriter] = {}


def turn_writer() -> TurnWriter:
    """The event loop's writer (one per web process; tests run several loops)."""
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        for old in [other for other in _writers if other.is_closed()]:
            del _writers[old]
        writer = _writers[loop] = TurnWriter()
    return writer


async def _finish(run: AnswerRun, task: asyncio.Future[Outcome]) -> None:
    """Stop a speculative answer run and wait for it to let the backend go."""
    run.stop()
    try:
        await task
    except asyncio.CancelledError:
        pass


@dataclass(eq=False)
class Generation:
    """One client request in flight: its task and its answer runs."""

    request: Any
    conversation: Any = None
    runs: list[AnswerRun] = field(default_factory=list)
    stopped: bool = False
    task: asyncio.Task[None] | None = None

    def add(self, run: AnswerRun) -> AnswerRun:
        if self.stopped:
            run.stop()  # stop came while the turn was being planned
        self.runs.append(run)
        return run

    def stop(self) -> None:
        self.stopped = True
        for run in self.runs:
            run.stop()


async def _html(text: str) -> str:
    """The answer as sanitised HTML, off the event loop: a few ms for a
    usual answer, but ~2 s for a 400 KB one (a long generation stopped late),
    which would stall every socket of the process."""
    return await asyncio.to_thread(render_markdown, text)


def _usage(outcome: Outcome) -> dict[str, int]:
    return {"prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens}


class ChatConsumer(AsyncJsonWebsocketConsumer):
    # No channel layer: the socket uses no groups, and a layer would open a
    # Redis channel and a blocking read per socket for nothing (an alias
    # that is not configured gives None, see channels.layers.get_channel_layer).
    channel_layer_alias = "chat-sockets-have-no-layer"

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)  # as the notifications socket: "log in"
            return
        self.user = user
        self.running: dict[Any, Generation] = {}
        self.gone = False
        await self.accept()

    async def dispatch(self, message: dict[str, Any]) -> None:
        """As channels' dispatch, less its close_old_connections before every
        frame: that call runs in asgiref's single thread-sensitive thread,
        where 200 sockets' frames queued behind each other. This consumer's
        ORM calls all go through channels' DatabaseSyncToAsync, which closes
        stale connections around each call."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        """A dropped connection stops its generations; their answers are
        stored (status stopped) so a reconnecting page finds them."""
        self.gone = True
        generations = list(getattr(self, "running", {}).values())
        for generation in generations:
            generation.stop()
        tasks = [g.task for g in generations if g.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=DISCONNECT_GRACE_S)
            for task in late:
                task.cancel()

    # -- frames in -------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        try:
            frame = json.loads(text_data) if text_data is not None else None
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            await self.error(None, "a frame must be a JSON object (text)", code="invalid_frame")
            return
        await self.receive_json(frame)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        kind = content.get("type")
        if kind == "ping":
            await self.reply({"type": "pong"})
        elif kind == "stop":
            await self.stop(content.get("request"))
        elif kind in TURNS:
            await self.begin(content, lambda g: self.chat_turn(g, kind, content))
        elif kind == "arena.start":
            await self.begin(content, lambda g: self.arena(g, content))
        else:
            known = ", ".join(["send", "regenerate", "edit", "stop", "arena.start", "ping"])
            await self.error(content.get("request"), f"unknown frame type {kind!r} (one of {known})", param="type",
                             code="invalid_frame")

    async def stop(self, request: Any) -> None:
        """Stop one request, or every running one when `request` is absent."""
        if request is None:
            for generation in list(self.running.values()):
                generation.stop()
            return
        generation = self.running.get(request) if _hashable(request) else None
        if generation is None:
            await self.error(request, f"no running request {request!r}", param="request", code="not_found")
            return
        generation.stop()

    async def begin(self, content: dict[str, Any], work: Callable[[Generation], Awaitable[None]]) -> None:
        request = content.get("request")
        if request is None:
            request = uuid.uuid4().hex[:12]
        elif isinstance(request, bool) or not isinstance(request, (str, int)) or len(str(request)) > MAX_REQUEST_ID:
            await self.error(None, f"'request' must be a string or integer of at most {MAX_REQUEST_ID} characters",
                             param="request", code="invalid_frame")
            return
        if request in self.running:
            await self.error(request, f"request {request!r} is already running", param="request", code="conflict")
            return
        if len(self.running) >= MAX_RUNNING:
            await self.error(request, f"{MAX_RUNNING} answers are already streaming on this connection; stop one first",
                             code="too_many_requests", retryable=True)
            return
        conversation = content.get("conversation")
        if conversation is not None and any(g.conversation == conversation for g in self.running.values()):
            await self.error(request, f"conversation {conversation} is already answering; stop it first",
                             param="conversation", code="conflict")
            return
        generation = Generation(request, conversation)
        self.running[request] = generation
        generation.task = asyncio.create_task(self.guarded(generation, work))

    async def guarded(self, generation: Generation, work: Callable[[Generation], Awaitable[None]]) -> None:
        try:
            await work(generation)
        except DomainError as error:
            await self.error(generation.request, error.message, param=error.field, code=error.code)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a bug in one request must not close the socket
            logger.exception("chat request failed")
            await self.error(generation.request, "internal error", code="internal_error", retryable=True)
        finally:
            if self.running.get(generation.request) is generation:
                del self.running[generation.request]

    # -- the work ----------------------------------------------------------------

    async def chat_turn(self, generation: Generation, kind: str, content: dict[str, Any]) -> None:
        """The turn is previewed from reads, then `start` goes out and the
        backend stream opens at once; the turn is stored meanwhile (`stored`
        carries its ids). So the first token waits for neither the database
        write nor the other sockets' writes. The write refuses the turn when
        the conversation changed since the preview (`expect`): the client
        then gets an `error` before `stored`, and nothing is kept."""
        fields: dict[str, Any] = {
            "user": self.user, "conversation_id": content.get("conversation"), "model": content.get("model"),
            "params": content.get("params"), "system_prompt": content.get("system"),
        }
        if kind != "regenerate":
            fields["content"] = content.get("content")
        request = generation.request
        if kind == "send" and fields["conversation_id"] is None:
            deployment = await self.model(fields["model"])
            preview = services.chat_turn_preview(kind=kind, deployment=deployment, **fields)  # no query
        else:
            preview = await in_db_pool(services.chat_turn_preview)(kind=kind, **fields)
        await self.reply({
            "type": "start", "request": request, "conversation": fields["conversation_id"],
            "model": preview.deployment.name, "replaces": list(preview.replaces),
        })

        async def delta(text: str, index: int) -> None:
            await self.reply({"type": "delta", "request": request, "index": index, "text": text})

        run = generation.add(AnswerRun(backend_for(preview.deployment), preview.request, delta))
        answer = asyncio.ensure_future(run.run())
        try:
            turn = await turn_writer().write(TURNS[kind], expect=preview.request, **fields)
        except BaseException:
            # Refused by the write, or this task cancelled: the backend stops too.
            await asyncio.shield(_finish(run, answer))
            raise
        generation.conversation = turn.conversation.pk
        await self.reply({
            "type": "stored", "request": request, "conversation": turn.conversation.pk,
            "title": turn.conversation.title, "created": turn.created, "user_message": turn.user_message.pk,
            "replaces": list(turn.superseded),
        })
        try:
            outcome = await answer
        except BaseException:
            await asyncio.shield(_finish(run, answer))
            raise
        message = await turn_writer().write(services.answer_store, turn=turn, outcome=outcome)
        html = await _html(outcome.text)
        if outcome.error is not None:
            await self.error(request, outcome.error.message, param=outcome.error.param, code=outcome.error.code,
                             retryable=outcome.retryable)
        await self.reply({
            "type": "done", "request": request, "conversation": turn.conversation.pk,
            "message": message.pk if message else None, "status": outcome.status,
            "finish_reason": outcome.finish_reason, "usage": _usage(outcome),
            "latency_ms": outcome.latency_ms, "ttft_ms": outcome.ttft_ms, "html": html,
        })

    async def model(self, name: Any) -> Deployment | None:
        """The deployment named `name` for this user, from the lookup cache;
        None for no name (the preview then says one is required)."""
        if not isinstance(name, str) or not name:
            return None
        key = (self.user.pk, name)
        deployment = _models.get(key)
        if deployment is not None:
            return deployment
        lookup = _lookups.get(key)
        if lookup is None or lookup.get_loop() is not asyncio.get_running_loop():
            lookup = _lookups[key] = asyncio.ensure_future(in_db_pool(services.resolve_model)(user=self.user, name=name))
            lookup.add_done_callback(lambda done: _lookups.pop(key) if _lookups.get(key) is done else None)
        # Shielded: a socket that goes away does not cancel the others' lookup.
        deployment = await asyncio.shield(lookup)
        _models.put(key, deployment)
        return deployment

    async def arena(self, generation: Generation, content: dict[str, Any]) -> None:
        plan = await turn_writer().write(
            services.arena_start, owner=self.user, prompt=content.get("prompt"), models=content.get("models"),
            params=content.get("params"), system_prompt=content.get("system"),
        )
        battle, request = plan.battle, generation.request
        await self.reply({
            "type": "start", "request": request, "battle": battle.pk, "anonymous": battle.anonymous,
            "models": {"a": None, "b": None} if battle.anonymous else {"a": battle.model_a, "b": battle.model_b},
        })

        async def side(plan_side: services.ArenaSide) -> None:
            name = plan_side.side

            async def delta(text: str, index: int) -> None:
                await self.reply({"type": "delta", "request": request, "side": name, "index": index, "text": text})

            run = generation.add(AnswerRun(backend_for(plan_side.deployment), plan_side.request, delta))
            outcome = await run.run()
            await turn_writer().write(services.arena_side_store, battle_id=battle.pk, side=name, outcome=outcome)
            html = await _html(outcome.text)
            if outcome.error is not None:
                await self.error(request, outcome.error.message, param=outcome.error.param, code=outcome.error.code,
                                 retryable=outcome.retryable, side=name)
            # No model names here: an anonymous battle is revealed by the vote only.
            await self.reply({
                "type": "done", "request": request, "battle": battle.pk, "side": name, "status": outcome.status,
                "finish_reason": outcome.finish_reason, "usage": _usage(outcome),
                "latency_ms": outcome.latency_ms, "ttft_ms": outcome.ttft_ms, "html": html,
            })

        results = await asyncio.gather(*(side(s) for s in plan.sides), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # -- frames out ---------------------------------------------------------------

    async def reply(self, frame: dict[str, Any]) -> None:
        if self.gone:
            return
        text = await self.encode_json(frame)
        try:
            await self.send(text_data=text)
        except Exception:  # noqa: BLE001 - whatever the server raises for a closed connection
            # The client went away and a generation noticed before
            # disconnect() ran (uvicorn raises ClientDisconnected on the send):
            # stop them all now, so the answers are stored as stopped, not
            # as failed by the send.
            self.gone = True
            for generation in list(getattr(self, "running", {}).values()):
                generation.stop()

    async def error(
        self, request: Any, message: str, *, param: str | None = None, code: str | None = None,
        retryable: bool = False, side: str | None = None,
    ) -> None:
        frame: dict[str, Any] = {"type": "error", "request": request, "message": message, "param": param,
                                 "code": code, "retryable": retryable}
        if side is not None:
            frame["side"] = side
        await self.reply(frame)


def _hashable(value: Any) -> bool:
    return isinstance(value, (str, int)) and not isinstance(value, bool)
