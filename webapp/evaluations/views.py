"""Pages for evaluations. The live parts (progress polled from the REST API,
cancel/resume, the results fragment swapped in when the run ends, the
charts) are the page script static/js/evaluation_detail.js; everything it
shows is rendered here first, so the pages read without it."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from webapp.core.errors import ValidationFailed
from webapp.datasets.models import Dataset, DatasetKind
from webapp.evaluations import selectors, services
from webapp.evaluations.forms import EvaluationForm, default_template_sets
from webapp.evaluations.models import Evaluation, EvaluationStatus, JudgeMode
from webapp.lib.ownership import visible_to

QUESTIONS_PER_PAGE = 20
OUTCOME_CHOICES = (("win", "A wins"), ("tie", "tie"), ("loss", "B wins"), ("unparsed", "unparsed"),
                   ("inconsistent", "inconsistent (orders disagree)"))


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value else default
    except ValueError:
        return default


@require_GET
def evaluation_list(request: HttpRequest) -> HttpResponse:
    return render(request, "evaluations/evaluation_list.html", {"evaluations": selectors.evaluation_list(user=request.user)})


@require_http_methods(["GET", "POST"])
def evaluation_new(request: HttpRequest) -> HttpResponse:
    form = EvaluationForm(request.POST or None, request.FILES or None, user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            evaluation = services.evaluation_create(owner=request.user, spec=form.spec())
        except services.EvaluationInvalid as error:
            form.add_service_errors(error.errors)
        else:
            messages.success(request, f"Evaluation “{evaluation.name}” queued: {evaluation.items_total} questions, "
                                      f"{evaluation.judgments_total} judge calls.")
            return redirect("evaluations:detail", pk=evaluation.pk)
    return render(request, "evaluations/evaluation_form.html", {"form": form, "default_templates": default_template_sets()})


def _report_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's categories as table rows, with what the table adds: the
    questions left out of win/tie/loss (unparsed or not judged yet) and the
    inconsistency rate over the questions both orders judged."""
    rows = []
    for name, stats in report.get("categories", {}).items():
        judged = stats["win"] + stats["tie"] + stats["loss"]
        rows.append({"name": name, **stats, "unparsed": stats["n"] - judged,
                     "inconsistent_rate": stats["inconsistent"] / judged if judged else None})
    return rows


OUTCOME_LABELS = {"win": "A wins", "tie": "tie", "loss": "B wins", "unparsed": "unparsed"}
VERDICT_LABELS = {"a": "A is better", "b": "B is better", "t": "tie"}


def _question_view(question: dict[str, Any], evaluation: Evaluation) -> dict[str, Any]:
    """selectors.question_rows' row with what the template shows as is:
    both sides side by side and both orders' judgments with their titles."""
    sides = [{"key": side, "title": side.upper(), "label": getattr(evaluation, f"{side}_label"),
              "answer": question[f"answer_{side}"], "error": question[f"answer_{side}_error"],
              "reward": question[f"reward_{side}"]} for side in ("a", "b")]
    titles = {"ab": "Judgment 1: A's answer shown first", "ba": "Judgment 2: B's answer shown first"}
    judgments = []
    for order in ("ab", "ba"):
        data = question["judgments"].get(order)
        judgments.append({"order": order, "title": titles[order], "data": data,
                          "verdict_label": VERDICT_LABELS.get((data or {}).get("verdict") or "", "")})
    return {**question, "outcome_label": OUTCOME_LABELS.get(question["outcome"], question["outcome"]),
            "sides": sides, "judgment_list": judgments}


def _filters(request: HttpRequest) -> dict[str, Any]:
    outcome = request.GET.get("outcome") or ""
    return {
        "category": request.GET.get("category") or "",
        "outcome": outcome if outcome in dict(OUTCOME_CHOICES) else "",
        "q": (request.GET.get("q") or "").strip()[:200],
        "page": max(1, _int(request.GET.get("page"), 1)),
    }


def _results_context(request: HttpRequest, evaluation: Evaluation) -> dict[str, Any]:
    report = selectors.evaluation_report(evaluation=evaluation)
    rows = _report_rows(report)
    decided = report["win"] + report["tie"] + report["loss"]
    filters = _filters(request)
    try:
        questions, total = selectors.question_rows(
            evaluation=evaluation, category=filters["category"] or None, outcome=filters["outcome"] or None,
            search=filters["q"] or None, offset=(filters["page"] - 1) * QUESTIONS_PER_PAGE, limit=QUESTIONS_PER_PAGE,
        )
    except ValidationFailed:
        questions, total = [], 0
    pages = max(1, -(-total // QUESTIONS_PER_PAGE))
    kept = {key: filters[key] for key in ("category", "outcome", "q") if filters[key]}

    def page_query(number: int) -> str:
        return "?" + urlencode({**kept, "page": number})

    chart = {
        "labels": {"a": evaluation.a_label, "b": evaluation.b_label},
        "scored": evaluation.mode == JudgeMode.SCORE_PAIR,
        "categories": [{key: row[key] for key in ("name", "a_mean", "b_mean", "win", "tie", "loss", "unparsed")} for row in rows],
    }
    return {
        "evaluation": evaluation, "report": report, "report_rows": rows, "chart": chart,
        "scored": evaluation.mode == JudgeMode.SCORE_PAIR,
        "inconsistent_rate": report["inconsistent"] / decided if decided else None,
        "questions": [_question_view(q, evaluation) for q in questions], "questions_total": total, "filters": filters, "filtered": bool(kept),
        "outcome_choices": OUTCOME_CHOICES, "categories": [row["name"] for row in rows],
        "page": filters["page"], "pages": pages,
        "previous_query": page_query(filters["page"] - 1) if filters["page"] > 1 else "",
        "next_query": page_query(filters["page"] + 1) if filters["page"] < pages else "",
    }


@require_GET
def evaluation_detail(request: HttpRequest, pk: int) -> HttpResponse:
    evaluation = selectors.evaluation_get(user=request.user, pk=pk)
    can_resume = evaluation.status in (EvaluationStatus.FAILED, EvaluationStatus.CANCELLED)
    return render(request, "evaluations/evaluation_detail.html", {
        **_results_context(request, evaluation), "can_resume": can_resume,
        "templates": sorted(evaluation.templates.items()),
    })


@require_GET
def evaluation_results(request: HttpRequest, pk: int) -> HttpResponse:
    """The report and question table alone: the page swaps it in when the
    run ends and when the question filters change."""
    evaluation = selectors.evaluation_get(user=request.user, pk=pk)
    return render(request, "evaluations/_results.html", _results_context(request, evaluation))


def _by_candidate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """selectors.leaderboard's rows (one per evaluation and side) summed per
    candidate label: wins/ties/losses over all its comparisons, and its mean
    score weighted by each evaluation's questions."""
    table: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = table.setdefault(row["candidate"], {"candidate": row["candidate"], "evaluations": 0, "wins": 0, "ties": 0,
                                                    "losses": 0, "_score_sum": 0.0, "_score_n": 0, "opponents": set()})
        entry["evaluations"] += 1
        entry["opponents"].add(row["opponent"])
        for key in ("wins", "ties", "losses"):
            entry[key] += row[key]
        if row["micro"] is not None and row["n"]:
            entry["_score_sum"] += row["micro"] * row["n"]
            entry["_score_n"] += row["n"]
    result = []
    for entry in table.values():
        decided = entry["wins"] + entry["ties"] + entry["losses"]
        result.append({
            **entry, "opponents": sorted(entry["opponents"]),
            "mean": entry["_score_sum"] / entry["_score_n"] if entry["_score_n"] else None,
            "win_rate": (entry["wins"] + entry["ties"] / 2) / decided if decided else None,
        })
    result.sort(key=lambda r: (r["win_rate"] is None, -(r["win_rate"] or 0), r["mean"] is None, -(r["mean"] or 0)))
    return result


@require_GET
def leaderboard(request: HttpRequest) -> HttpResponse:
    datasets = list(visible_to(Dataset.objects.filter(kind=DatasetKind.EVAL), request.user)
                    .filter(evaluations__isnull=False).distinct().order_by("name", "-version"))
    wanted = _int(request.GET.get("dataset"), 0)
    dataset = next((d for d in datasets if d.pk == wanted), None)
    if wanted and dataset is None:
        raise Http404("no such eval dataset among yours")
    if dataset is None and datasets:
        dataset = datasets[0]
    rows = selectors.leaderboard(user=request.user, dataset=dataset) if dataset is not None else []
    return render(request, "evaluations/leaderboard.html", {
        "datasets": datasets, "dataset": dataset, "rows": rows, "candidates": _by_candidate(rows),
    })
