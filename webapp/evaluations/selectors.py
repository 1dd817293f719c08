"""Reads for evaluations: lists, the report (live while running), the
per-question table, the leaderboard and the exports.

The report is always computed the same way, from the stored rows
(`evaluation_report`): the runner stores its result in `Evaluation.report`
when it ends, and the pages call it directly for a live partial report."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404

from webapp.core.errors import ValidationFailed
from webapp.datasets.models import Dataset
from webapp.evaluations.judging.outcome import ItemOutcome, OrderResult, combine
from webapp.evaluations.judging.report import ReportItem, build_report
from webapp.evaluations.models import EvalItem, Evaluation, EvaluationStatus, Judgment
from webapp.lib.ownership import visible_to

User = AbstractBaseUser | AnonymousUser
OUTCOMES = ("win", "tie", "loss", "unparsed")
MAX_QUESTIONS_PAGE = 200


def evaluation_list(*, user: User, dataset: Dataset | None = None, status: str | None = None) -> QuerySet[Evaluation]:
    evaluations = visible_to(Evaluation.objects.select_related("owner", "dataset"), user)
    if dataset is not None:
        evaluations = evaluations.filter(dataset=dataset)
    if status:
        if status not in EvaluationStatus.values:
            raise ValidationFailed(f"status must be one of {', '.join(EvaluationStatus.values)}", field="status")
        evaluations = evaluations.filter(status=status)
    return evaluations


def evaluation_get(*, user: User, pk: int) -> Evaluation:
    """Another user's evaluation reads as missing (404), never forbidden."""
    return get_object_or_404(evaluation_list(user=user), pk=pk)


# ---------------------------------------------------------------- outcomes


def order_result(judgment: Judgment | None) -> OrderResult | None:
    """A stored judgment as the swap logic reads it; a failed call gives nothing."""
    if judgment is None or judgment.error:
        return None
    return OrderResult(parsed=judgment.parsed, score_a=judgment.score_a, score_b=judgment.score_b,
                       verdict=judgment.verdict or None)


def item_outcomes(*, evaluation: Evaluation) -> Iterator[tuple[int, str, ItemOutcome]]:
    """(item pk, category, outcome) for every item, in sample order; only the
    columns the outcome needs are read (not prompts or replies)."""
    results: dict[tuple[int, str], OrderResult | None] = {}
    rows = Judgment.objects.filter(item__evaluation=evaluation).values_list(
        "item_id", "order", "parsed", "score_a", "score_b", "verdict", "error")
    for item_id, order, parsed, score_a, score_b, verdict, error in rows:
        results[(item_id, order)] = None if error else OrderResult(parsed, score_a, score_b, verdict or None)
    for item_id, category in EvalItem.objects.filter(evaluation=evaluation).order_by("position").values_list("pk", "category"):
        yield item_id, category, combine(results.get((item_id, "ab")), results.get((item_id, "ba")))


def evaluation_report(*, evaluation: Evaluation) -> dict[str, Any]:
    """GET /api/evaluations/{id}/report: per category n, a_mean, b_mean, win,
    tie, loss, inconsistent; micro and macro means; totals (see
    judging.report). Questions not judged yet count as unparsed."""
    return build_report(ReportItem(category, outcome) for _, category, outcome in item_outcomes(evaluation=evaluation))


# ---------------------------------------------------------------- questions


def _judgments_prefetch() -> Prefetch:
    return Prefetch("judgments", queryset=Judgment.objects.order_by("order"))


def question_rows(
    *, evaluation: Evaluation, category: str | None = None, outcome: str | None = None, search: str | None = None,
    offset: int = 0, limit: int = 50,
) -> tuple[list[dict[str, Any]], int]:
    """The per-question table, filtered, one page: (rows, total matching).
    `outcome` is win | tie | loss | unparsed | inconsistent (from A's side)."""
    if outcome and outcome not in (*OUTCOMES, "inconsistent"):
        raise ValidationFailed(f"outcome must be one of {', '.join((*OUTCOMES, 'inconsistent'))}", field="outcome")
    items = EvalItem.objects.filter(evaluation=evaluation).order_by("position")
    if category:
        items = items.filter(category=category)
    if search:
        items = items.filter(Q(question__icontains=search) | Q(question_id=search) | Q(answer_a__icontains=search)
                             | Q(answer_b__icontains=search))
    if outcome:
        wanted = {
            pk for pk, _, result in item_outcomes(evaluation=evaluation)
            if (result.inconsistent if outcome == "inconsistent" else result.outcome == outcome)
        }
        items = items.filter(pk__in=wanted)
    total = items.count()
    offset, limit = max(0, offset), max(1, min(limit, MAX_QUESTIONS_PAGE))
    page = list(items.prefetch_related(_judgments_prefetch())[offset: offset + limit])
    return [question_dict(item) for item in page], total


def judgment_dict(judgment: Judgment) -> dict[str, Any]:
    return {
        "order": judgment.order, "prompt": judgment.prompt, "raw": judgment.raw, "parsed": judgment.parsed,
        "parse_error": judgment.parse_error, "score_a": judgment.score_a, "score_b": judgment.score_b,
        "verdict": judgment.verdict or None, "error": judgment.error, "prompt_tokens": judgment.prompt_tokens,
        "completion_tokens": judgment.completion_tokens, "latency_ms": judgment.latency_ms,
    }


def question_dict(item: EvalItem) -> dict[str, Any]:
    """One question with both answers and both judgments (`judgments` must
    be prefetched, ordered by order)."""
    judgments = {j.order: j for j in item.judgments.all()}
    result = combine(order_result(judgments.get("ab")), order_result(judgments.get("ba")))
    return {
        "id": item.question_id, "position": item.position, "category": item.category, "question": item.question,
        "reference": item.reference, "answer_a": item.answer_a, "answer_b": item.answer_b,
        "answer_a_error": item.answer_a_error, "answer_b_error": item.answer_b_error,
        "reward_a": item.reward_a, "reward_b": item.reward_b,
        "outcome": result.outcome, "inconsistent": result.inconsistent,
        "score_a": result.score_a, "score_b": result.score_b,
        "judgments": {order: judgment_dict(judgments[order]) if order in judgments else None for order in ("ab", "ba")},
    }


# ---------------------------------------------------------------- leaderboard


def leaderboard(*, user: User, dataset: Dataset) -> list[dict[str, Any]]:
    """Every candidate of the user's succeeded evaluations on `dataset`, best
    first: one row per (evaluation, side) with its micro/macro mean (score
    mode), and its win rate = (wins + ties / 2) / decided questions, where
    a candidate's wins are the other side's losses."""
    rows: list[dict[str, Any]] = []
    for evaluation in evaluation_list(user=user, dataset=dataset, status=EvaluationStatus.SUCCEEDED):
        report = evaluation.report or {}
        decided = sum(report.get(k, 0) for k in ("win", "tie", "loss"))
        for side, other in (("a", "b"), ("b", "a")):
            wins = report.get("win" if side == "a" else "loss", 0)
            rows.append({
                "evaluation": evaluation.pk, "evaluation_name": evaluation.name, "side": side,
                "candidate": getattr(evaluation, f"{side}_label"),
                "opponent": getattr(evaluation, f"{other}_label"),
                "mode": evaluation.mode, "judge_model": evaluation.judge_model, "n": report.get("n", 0),
                "micro": (report.get("micro") or {}).get(side), "macro": (report.get("macro") or {}).get(side),
                "wins": wins, "ties": report.get("tie", 0), "losses": report.get("loss" if side == "a" else "win", 0),
                "win_rate": (wins + report.get("tie", 0) / 2) / decided if decided else None,
                "finished_at": evaluation.finished_at,
            })
    # Score means first (higher is better), then win rate; None sorts last.
    rows.sort(key=lambda r: (r["micro"] is None, -(r["micro"] or 0), r["win_rate"] is None, -(r["win_rate"] or 0)))
    return rows


# ---------------------------------------------------------------- exports

EXPORT_COLUMNS = [
    "id", "category", "question", "reference", "answer_a", "answer_b", "outcome", "inconsistent", "score_a", "score_b",
    "reward_a", "reward_b", "ab_score_a", "ab_score_b", "ab_verdict", "ab_raw", "ab_error",
    "ba_score_a", "ba_score_b", "ba_verdict", "ba_raw", "ba_error",
]


def _export_items(evaluation: Evaluation) -> Iterator[dict[str, Any]]:
    items = EvalItem.objects.filter(evaluation=evaluation).order_by("position").prefetch_related(_judgments_prefetch())
    for item in items.iterator(chunk_size=500):
        yield question_dict(item)


def export_json(*, evaluation: Evaluation) -> dict[str, Any]:
    """Settings (never the judge key), templates, the report and every question."""
    return {
        "evaluation": {
            "id": evaluation.pk, "name": evaluation.name, "dataset": evaluation.dataset_id,
            "a": evaluation.a_label, "b": evaluation.b_label, "a_source": evaluation.a_source, "b_source": evaluation.b_source,
            "generation_params": evaluation.generation_params, "judge_base_url": evaluation.judge_base_url,
            "judge_model": evaluation.judge_model, "mode": evaluation.mode, "language": evaluation.language,
            "sample_size": evaluation.sample_size, "seed": evaluation.seed, "status": evaluation.status,
            "prompt_tokens": evaluation.prompt_tokens, "completion_tokens": evaluation.completion_tokens,
            "estimated_cost": evaluation.estimated_cost,
        },
        "templates": evaluation.templates,
        "report": evaluation_report(evaluation=evaluation),
        "questions": list(_export_items(evaluation)),
    }


def export_json_bytes(*, evaluation: Evaluation) -> bytes:
    return json.dumps(export_json(evaluation=evaluation), ensure_ascii=False, indent=1, default=str).encode()


def export_csv(*, evaluation: Evaluation) -> Iterator[str]:
    """CSV lines (header first), one question per row, both orders' judgments
    flattened; streamed so a big evaluation is not built in memory."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=EXPORT_COLUMNS, extrasaction="ignore")

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writeheader()
    yield flush()
    for row in _export_items(evaluation):
        for order in ("ab", "ba"):
            judgment = row["judgments"][order] or {}
            row[f"{order}_score_a"], row[f"{order}_score_b"] = judgment.get("score_a"), judgment.get("score_b")
            row[f"{order}_verdict"], row[f"{order}_raw"] = judgment.get("verdict"), judgment.get("raw")
            row[f"{order}_error"] = judgment.get("error") or judgment.get("parse_error")
        writer.writerow(row)
        yield flush()
