"""One streamed answer, stoppable: the chat consumer's unit of work (a chat
turn runs one, an arena battle two at once). Nothing here touches the
database; the caller stores the `Outcome`."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from inference.base import Backend, BackendFailed, GenerationRequest, InferenceError
from webapp.chat.models import MessageStatus
from webapp.deployments.serving import generation_stream

logger = logging.getLogger(__name__)

OnDelta = Callable[[str, int], Awaitable[None]]


@dataclass
class Outcome:
    """What an answer came to. `status` is complete (the backend finished),
    stopped (stop() or cancellation; `text` is what arrived until then) or
    error (`error` says why; `text` may hold what came before it)."""

    text: str = ""
    status: str = MessageStatus.COMPLETE
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: int = 0
    ttft_ms: int | None = None
    error: InferenceError | None = None

    @property
    def retryable(self) -> bool:
        """Worth retrying unchanged: the engine was down, failed or throttled;
        a 400 (prompt too long, a parameter the backend refuses) is not."""
        return self.error is not None and (self.error.status >= 500 or self.error.status == 429)


class AnswerRun:
    """Streams one request through a backend, calling `on_delta(text, index)`
    for every piece of text (index 0, 1, 2, … in order).

    `stop()` may be called at any time from the same event loop: before
    `run()` starts (nothing is asked of the backend), while streaming (the
    running task is cancelled, which closes the backend stream — the local
    engine drops the row, network backends drop the connection), or after
    the stream ended (no effect). `run()` then returns a stopped outcome
    instead of raising. A cancellation that did not come from `stop()` (the
    server shutting down) still propagates after the outcome is recorded in
    `self.outcome`."""

    def __init__(self, backend: Backend, request: GenerationRequest, on_delta: OnDelta) -> None:
        self.backend = backend
        self.request = request
        self.on_delta = on_delta
        self.outcome = Outcome()
        self._task: asyncio.Task[object] | None = None
        self._stop_requested = False
        self._streaming_over = False

    def stop(self) -> None:
        if self._stop_requested or self._streaming_over:
            return
        self._stop_requested = True
        if self._task is not None:
            self._task.cancel()

    async def run(self) -> Outcome:
        outcome = self.outcome
        started = time.monotonic()
        if self._stop_requested:
            self._streaming_over = True
            outcome.status = MessageStatus.STOPPED
            return outcome
        self._task = asyncio.current_task()
        stream = generation_stream(self.backend, self.request)
        parts: list[str] = []
        index = 0
        foreign_cancel: asyncio.CancelledError | None = None
        try:
            async for chunk in stream:
                outcome.prompt_tokens = chunk.prompt_tokens or outcome.prompt_tokens
                outcome.completion_tokens += chunk.tokens
                if chunk.finish_reason:
                    outcome.finish_reason = chunk.finish_reason
                if chunk.text:
                    if outcome.ttft_ms is None:
                        outcome.ttft_ms = _ms(started)
                    parts.append(chunk.text)
                    await self.on_delta(chunk.text, index)
                    index += 1
            outcome.status = MessageStatus.COMPLETE
        except InferenceError as error:
            outcome.status, outcome.error = MessageStatus.ERROR, error
        except asyncio.CancelledError as cancel:
            outcome.status = MessageStatus.STOPPED
            if self._stop_requested:
                # Ours: stopping is a normal end of the answer, not of the task.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
            else:
                foreign_cancel = cancel
        except Exception as error:  # noqa: BLE001 - a bug must not take the socket down
            logger.exception("chat generation failed")
            outcome.status = MessageStatus.ERROR
            outcome.error = BackendFailed(f"internal error while generating: {type(error).__name__}")
        finally:
            # No await between the loop's last step and here: stop() cannot
            # cancel anything past this point.
            self._streaming_over = True
            await stream.aclose()  # type: ignore[attr-defined]
        outcome.text = "".join(parts)
        outcome.latency_ms = _ms(started)
        if foreign_cancel is not None:
            raise foreign_cancel
        return outcome


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)
