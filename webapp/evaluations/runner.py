"""Running one evaluation: answers → rewards → judging, with bounded
concurrency, resumable (only what has no row yet is done).

The Celery task claims the row (services.evaluation_run → `claim`) and calls
`run_claimed`, which runs `EvaluationRun` on an event loop of its own
(async_to_sync: the ORM calls, wrapped in sync_to_async, run in the task's
thread). Calls go out concurrently (`concurrency` at a time); their results
are collected in memory and written by one "tick" every PROGRESS_EVERY_S:
new judgments in one bulk insert, retried ones and answers in one bulk
update, then the counters and heartbeat in one UPDATE that is conditional on
the row still being this attempt's running row. When that UPDATE matches
nothing — the user cancelled or deleted the evaluation, or the stale sweep
gave it to another attempt — the run cancels its calls and stops: a cancel
takes effect within ~0.5 s plus the time to abort the calls in flight.

Outcome policy. A run that judged everything it could ends `succeeded`.
Unparseable replies are not failures (they are stored, counted as unparsed
and shown). Failures are: judge calls that failed after every retry, answers
a deployment could not generate (their questions are not judged), a chosen
reward model that could not score the answers. Any of
those ends the run `failed`, with an error saying how many and the first
reason (e.g. "12 judge calls failed: the judge answered HTTP 500 (after 6
attempts): …"); the report is still built from what was judged, and resume
redoes only the failed calls and missing answers.

The judge's API key is decrypted here and only here; every text this module
stores or logs is passed through `_scrub` first."""
from __future__ import annotations

import asyncio
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from inference.base import Backend, GenerationRequest, InferenceError, SamplingParams
from inference.config import create_backend
from inference.params import sampling_params
from webapp.core.consumers import user_group
from webapp.deployments.models import BackendKind, Deployment
from webapp.deployments.serving import backend_for, generation_stream
from webapp.deployments.services import artifact_path, backend_config
from webapp.evaluations.judging.client import JudgeClient, JudgeFailed
from webapp.evaluations.judging.outcome import to_candidate_terms
from webapp.evaluations.judging.parsing import parse_scores, parse_verdict
from webapp.evaluations.judging.prompts import render_prompt, template_for
from webapp.evaluations.models import CandidateSource, EvalItem, Evaluation, EvaluationStatus, JudgeMode, Judgment
from webapp.lib.secrets import SecretUnreadable, decrypt

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 0.5
ORDERS = ("ab", "ba")
SIDES = ("a", "b")
JUDGE_MAX_TOKENS = 1024
# Answers: retries of a deployment's transient errors (429, 5xx), with
# exponential backoff from ANSWER_BACKOFF_S up to ANSWER_BACKOFF_MAX_S.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
ANSWER_BACKOFF_S = 1.0
ANSWER_BACKOFF_MAX_S = 30.0
MAX_ERROR_CHARS = 2000
JUDGMENT_FIELDS = [
    "prompt", "raw", "parsed", "parse_error", "score_a", "score_b", "verdict", "error",
    "prompt_tokens", "completion_tokens", "latency_ms", "created_at",
]
ITEM_FIELDS = ["answer_a", "answer_b", "answer_a_error", "answer_b_error", "reward_a", "reward_b"]

T = TypeVar("T")
Key = tuple[int, str]  # (item pk, order)


def claim(*, evaluation_id: int) -> Evaluation | None:
    """queued → running, attempt + 1; None when another caller got there
    first or the row is not queued (cancelled, deleted, finished)."""
    now = timezone.now()
    claimed = Evaluation.objects.filter(pk=evaluation_id, status=EvaluationStatus.QUEUED).update(
        status=EvaluationStatus.RUNNING, attempt=F("attempt") + 1, started_at=now, heartbeat_at=now, phase="",
        error="", finished_at=None,
    )
    return Evaluation.objects.filter(pk=evaluation_id).first() if claimed else None


def run_claimed(evaluation: Evaluation, *, worker: str) -> None:
    async_to_sync(EvaluationRun(evaluation, worker=worker).run)()


@dataclass
class Pending:
    """Results not yet written (swapped out whole by each tick)."""

    new: list[Judgment] = field(default_factory=list)
    retried: list[Judgment] = field(default_factory=list)
    items: dict[int, EvalItem] = field(default_factory=dict)


class EvaluationRun:
    def __init__(self, evaluation: Evaluation, *, worker: str) -> None:
        self.evaluation = evaluation
        self.worker = worker
        self.attempt = evaluation.attempt
        self.items: list[EvalItem] = []
        self.ok: set[Key] = set()
        self.failed: dict[Key, str] = {}  # key → error, rows stored with an error
        self.failed_pks: dict[Key, int] = {}  # such rows from earlier attempts, to update when retried
        self.answer_errors: dict[str, str] = {}  # side → first error of this attempt
        self.reward_error = ""
        self.prompt_tokens = evaluation.prompt_tokens
        self.completion_tokens = evaluation.completion_tokens
        self.phase = ""
        self.pending = Pending()
        self.write_lock = asyncio.Lock()
        self.stopped = False
        self.work: asyncio.Task[None] | None = None
        self.key = ""
        self.last_progress: tuple[Any, ...] = ()

    # ------------------------------------------------------------ the run

    async def run(self) -> None:
        pk = self.evaluation.pk
        failure: str | None = None
        try:
            await sync_to_async(self._load)()
            self.key = decrypt(self.evaluation.judge_api_key_encrypted)
        except SecretUnreadable as error:
            failure = str(error)
        except Exception:  # noqa: BLE001 - anything at all: the row must not stay running
            failure = self._crash("loading the evaluation")
        if failure is None:
            await self._notify({"event": "evaluation.status", "id": pk, "status": EvaluationStatus.RUNNING})
            self.work = asyncio.create_task(self._phases())
            ticker = asyncio.create_task(self._tick())
            try:
                await self.work
            except asyncio.CancelledError:
                if not self.stopped:
                    raise
            except Exception:  # noqa: BLE001
                failure = self._crash(f"the {self.phase or 'run'}")
            finally:
                ticker.cancel()
                await asyncio.gather(ticker, return_exceptions=True)
            # What finished before a stop or a crash is kept.
            ours = await self._write()
            if self.stopped or not ours:
                logger.info("evaluation %s attempt %s stopped: cancelled, deleted or taken over", pk, self.attempt)
                return
        await self._finish(failure)

    async def _phases(self) -> None:
        await self._answers()
        await self._rewards()
        await self._judging()

    def _crash(self, where: str) -> str:
        logger.error("evaluation %s failed in %s:\n%s", self.evaluation.pk, where, self._scrub(traceback.format_exc()))
        error = sys.exc_info()[1]
        return self._scrub(f"internal error in {where}: {type(error).__name__}: {error}")

    def _scrub(self, text: str) -> str:
        if self.key:
            text = text.replace(self.key, "***")
        return text[:MAX_ERROR_CHARS]

    # ------------------------------------------------------------ loading

    def _load(self) -> None:
        self.evaluation = Evaluation.objects.select_related("a_deployment", "b_deployment", "reward_model").get(
            pk=self.evaluation.pk)
        self.items = list(EvalItem.objects.filter(evaluation=self.evaluation).order_by("position"))
        rows = Judgment.objects.filter(item__evaluation=self.evaluation).values_list("pk", "item_id", "order", "error")
        for judgment_pk, item_pk, order, error in rows:
            if error:
                self.failed[(item_pk, order)] = error
                self.failed_pks[(item_pk, order)] = judgment_pk
            else:
                self.ok.add((item_pk, order))

    # ------------------------------------------------------------ concurrency

    async def _each(self, jobs: list[T], handle: Callable[[T], Awaitable[None]]) -> None:
        """`handle` every job, `concurrency` at a time. A TaskGroup: an
        unexpected error cancels the rest instead of leaving them running."""
        iterator = iter(jobs)

        async def worker() -> None:
            for job in iterator:  # shared: each job is taken by one worker
                await handle(job)

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self.evaluation.concurrency, len(jobs))):
                group.create_task(worker())

    # ------------------------------------------------------------ answers

    async def _answers(self) -> None:
        self.phase = "answers"
        backends: dict[str, tuple[Backend, SamplingParams]] = {}
        owned: list[Backend] = []
        for side in SIDES:
            if getattr(self.evaluation, f"{side}_source") != CandidateSource.DEPLOYMENT:
                continue
            missing = [item for item in self.items if getattr(item, f"answer_{side}") is None]
            if not missing:
                continue
            deployment: Deployment | None = getattr(self.evaluation, f"{side}_deployment")
            if deployment is None:
                self._answer_failed(side, missing, f"candidate {side.upper()}'s deployment was deleted")
                continue
            try:
                params = sampling_params(self.evaluation.generation_params, deployment.default_params)
            except InferenceError as error:
                self._answer_failed(side, missing, f"generation parameters: {error.message}")
                continue
            # A local model is shared with the rest of this process (loaded
            # once); a network backend's client belongs to this event loop.
            if deployment.kind == BackendKind.LOCAL:
                backend = backend_for(deployment)
            else:
                backend = create_backend(backend_config(deployment))
                owned.append(backend)
            backends[side] = (backend, params)
        # Question by question, both sides: the two deployments (two engines,
        # two servers) work at the same time instead of A's all, then B's.
        jobs = [(side, item) for item in self.items for side in backends if getattr(item, f"answer_{side}") is None]
        try:
            await self._each(jobs, lambda job: self._answer(job[0], job[1], *backends[job[0]]))
        finally:
            for backend in owned:
                await backend.close()

    async def _answer(self, side: str, item: EvalItem, backend: Backend, params: SamplingParams) -> None:
        request = GenerationRequest(params=params, messages=({"role": "user", "content": item.question},))
        delay = ANSWER_BACKOFF_S
        for attempt in range(self.evaluation.max_retries + 1):
            try:
                parts = [chunk.text async for chunk in generation_stream(backend, request)]
            except InferenceError as error:
                if error.status in RETRIED_STATUSES and attempt < self.evaluation.max_retries:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, ANSWER_BACKOFF_MAX_S)
                    continue
                self._answer_failed(side, [item], f"{error.message} (HTTP {error.status})")
                return
            setattr(item, f"answer_{side}", "".join(parts))
            setattr(item, f"answer_{side}_error", "")
            self.pending.items[item.pk] = item
            return

    def _answer_failed(self, side: str, items: Iterable[EvalItem], message: str) -> None:
        message = self._scrub(message)
        self.answer_errors.setdefault(side, message)
        for item in items:
            setattr(item, f"answer_{side}_error", message)
            self.pending.items[item.pk] = item

    # ------------------------------------------------------------ rewards

    async def _rewards(self) -> None:
        artifact = self.evaluation.reward_model
        if artifact is None:
            return
        self.phase = "rewards"
        folder = str(artifact_path(artifact))
        for side in SIDES:
            todo = [item for item in self.items
                    if getattr(item, f"answer_{side}") is not None and getattr(item, f"reward_{side}") is None]
            if not todo:
                continue
            try:
                # CPU-bound (a forward pass per batch): in a thread, so the
                # tick keeps beating and watching for a cancel meanwhile.
                values = await asyncio.to_thread(
                    _score, folder, [item.question for item in todo], [getattr(item, f"answer_{side}") for item in todo])
            except Exception as error:  # noqa: BLE001 - a broken reward model fails this phase, not the judging
                logger.warning("evaluation %s: reward model failed: %s", self.evaluation.pk, error)
                self.reward_error = self._scrub(f"the reward model could not score the answers: {type(error).__name__}: {error}")
                return
            for item, value in zip(todo, values):
                setattr(item, f"reward_{side}", value)
                self.pending.items[item.pk] = item

    # ------------------------------------------------------------ judging

    async def _judging(self) -> None:
        self.phase = "judging"
        jobs = [
            (item, order) for item in self.items for order in ORDERS
            if (item.pk, order) not in self.ok and item.answer_a is not None and item.answer_b is not None
        ]
        if not jobs:
            return
        client = JudgeClient(
            self.evaluation.judge_base_url, self.evaluation.judge_model, self.key,
            timeout_s=self.evaluation.request_timeout_s, max_retries=self.evaluation.max_retries,
        )
        try:
            await self._each(jobs, lambda job: self._judge(client, *job))
        finally:
            await client.close()

    async def _judge(self, client: JudgeClient, item: EvalItem, order: str) -> None:
        first, second = (item.answer_a, item.answer_b) if order == "ab" else (item.answer_b, item.answer_a)
        prompt = render_prompt(
            template_for(self.evaluation.templates, item.category),
            question=item.question, reference=item.reference, answer_1=first or "", answer_2=second or "",
        )
        key = (item.pk, order)
        row = Judgment(item=item, order=order, prompt=prompt, created_at=timezone.now())
        try:
            reply = await client.judge(prompt, max_tokens=JUDGE_MAX_TOKENS)
        except JudgeFailed as error:
            row.error = self._scrub(error.message)
            self.failed[key] = row.error
        else:
            row.raw = reply.text
            row.prompt_tokens, row.completion_tokens, row.latency_ms = reply.prompt_tokens, reply.completion_tokens, reply.latency_ms
            self.prompt_tokens += reply.prompt_tokens
            self.completion_tokens += reply.completion_tokens
            self._read_reply(row, item.category, order)
            self.failed.pop(key, None)
            self.ok.add(key)
        previous = self.failed_pks.pop(key, None)
        if previous is not None:
            row.pk = previous
            self.pending.retried.append(row)
        else:
            self.pending.new.append(row)

    def _read_reply(self, row: Judgment, category: str, order: str) -> None:
        """Parse per the evaluation's mode; store in candidate terms."""
        if self.evaluation.mode == JudgeMode.VERDICT:
            verdict = parse_verdict(row.raw)
            if not verdict.ok:
                row.parsed, row.parse_error = False, verdict.error[:300]
                return
            _, _, row.verdict = to_candidate_terms(order, verdict=verdict.verdict)
        else:
            scores = parse_scores(row.raw, category=category)
            if not scores.ok:
                row.parsed, row.parse_error = False, scores.error[:300]
                return
            row.score_a, row.score_b, row.verdict = to_candidate_terms(order, first=scores.first, second=scores.second)
        row.parsed = True

    # ------------------------------------------------------------ writing

    def _counters(self) -> dict[str, Any]:
        answers = sum(getattr(item, f"answer_{side}") is not None for item in self.items for side in SIDES)
        return {
            "phase": self.phase, "answers_done": answers, "judgments_done": len(self.ok),
            "judge_failures": len(self.failed), "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            try:
                ours = await self._write()
            except Exception as error:  # noqa: BLE001 - a passing database hiccup: the next tick retries
                logger.warning("evaluation %s: progress write failed: %s", self.evaluation.pk, error)
                continue
            if not ours:
                self.stopped = True
                if self.work is not None:
                    self.work.cancel()
                return
            counters = self._counters()
            progress = tuple(counters.values())
            if progress != self.last_progress:
                self.last_progress = progress
                await self._notify({"event": "evaluation.progress", "id": self.evaluation.pk, **counters})

    async def _write(self, final: dict[str, Any] | None = None) -> bool:
        """Store pending results, then the counters and heartbeat (and
        `final` fields) if the row is still ours; returns whether it was."""
        async with self.write_lock:
            pending, self.pending = self.pending, Pending()
            counters = {**self._counters(), **(final or {})}
            try:
                return await sync_to_async(self._store)(pending, counters)
            except BaseException:
                # Not stored: keep the results for the next write.
                self.pending.new[:0] = pending.new
                self.pending.retried[:0] = pending.retried
                self.pending.items = {**pending.items, **self.pending.items}
                raise

    def _store(self, pending: Pending, counters: dict[str, Any]) -> bool:
        try:
            with transaction.atomic():
                if pending.new:
                    # ignore_conflicts: a row another attempt stored meanwhile wins.
                    Judgment.objects.bulk_create(pending.new, ignore_conflicts=True)
                if pending.retried:
                    Judgment.objects.bulk_update(pending.retried, JUDGMENT_FIELDS)
                if pending.items:
                    EvalItem.objects.bulk_update(list(pending.items.values()), ITEM_FIELDS)
                return bool(Evaluation.objects.filter(
                    pk=self.evaluation.pk, status=EvaluationStatus.RUNNING, attempt=self.attempt,
                ).update(heartbeat_at=timezone.now(), **counters))
        except IntegrityError:
            # The evaluation (and its items) was deleted under us.
            return False

    # ------------------------------------------------------------ the end

    def _summary(self) -> str:
        """Why the run is incomplete ("" when it is not)."""
        problems = []
        for side in SIDES:
            missing = sum(getattr(item, f"answer_{side}") is None for item in self.items)
            if missing:
                reason = self.answer_errors.get(side) or next(
                    (getattr(item, f"answer_{side}_error") for item in self.items if getattr(item, f"answer_{side}_error")), "")
                problems.append(f"{missing} answers of candidate {side.upper()} could not be generated"
                                + (f": {reason}" if reason else "") + " (their questions were not judged)")
        if self.failed:
            problems.append(f"{len(self.failed)} judge calls failed: {next(iter(self.failed.values()))}")
        if self.reward_error:
            problems.append(self.reward_error)
        return self._scrub("; ".join(problems))

    async def _finish(self, failure: str | None) -> None:
        from webapp.evaluations.selectors import evaluation_report

        problems = failure or self._summary()
        report = await sync_to_async(evaluation_report)(evaluation=self.evaluation)
        status = EvaluationStatus.FAILED if problems else EvaluationStatus.SUCCEEDED
        final = {"status": status, "error": problems, "report": report, "finished_at": timezone.now(), "phase": ""}
        if await self._write(final):
            logger.info("evaluation %s attempt %s %s on %s", self.evaluation.pk, self.attempt, status, self.worker)
            await self._notify({"event": "evaluation.status", "id": self.evaluation.pk, "status": status})

    async def _notify(self, payload: dict[str, Any]) -> None:
        """Live updates for the owner's open pages; best effort (a page that
        misses one reads the row on its next poll)."""
        try:
            await get_channel_layer().group_send(user_group(self.evaluation.owner_id), {"type": "notify", "payload": payload})
        except Exception as error:  # noqa: BLE001 - never let a push break the run
            logger.warning("evaluation %s: could not push an update: %s", self.evaluation.pk, error)


def _score(folder: str, prompts: list[str], responses: list[str]) -> list[float]:
    import torch

    from training_jobs.reward import score

    with torch.no_grad():
        return score(folder, prompts, responses)
