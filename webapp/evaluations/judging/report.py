"""The report of an evaluation, in the shape of GET /api/evaluations/{id}/report:

  {"categories": {name: {"n", "a_mean", "b_mean", "win", "tie", "loss", "inconsistent"}},
   "micro": {"a", "b"}, "macro": {"a", "b"},
   "n", "win", "tie", "loss", "unparsed", "inconsistent"}

n counts every question (a category's unparsed = n − win − tie − loss);
"inconsistent" counts the ties that came from the two orders disagreeing.
micro = mean over the questions that have a score; macro = mean of the
category means (each category weighs the same, however small). Means are
None where nothing has a score (verdict mode, or nothing parsed) and are not
rounded here: rounding is for display. The seed's table — General 6.91 /
Math 1.43 / Coding 7.0 on 89 / 7 / 4 questions — gives micro 6.53 and
macro 5.11."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from webapp.evaluations.judging.outcome import ItemOutcome
from webapp.evaluations.judging.prompts import CATEGORIES


@dataclass(frozen=True)
class ReportItem:
    category: str
    outcome: ItemOutcome


@dataclass
class _Tally:
    n: int = 0
    win: int = 0
    tie: int = 0
    loss: int = 0
    unparsed: int = 0
    inconsistent: int = 0
    a_scores: list[float] = field(default_factory=list)
    b_scores: list[float] = field(default_factory=list)

    def add(self, outcome: ItemOutcome) -> None:
        self.n += 1
        setattr(self, outcome.outcome, getattr(self, outcome.outcome) + 1)
        self.inconsistent += outcome.inconsistent
        if outcome.score_a is not None:
            self.a_scores.append(outcome.score_a)
        if outcome.score_b is not None:
            self.b_scores.append(outcome.score_b)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _category_order(name: str) -> tuple[int, str]:
    """The judge's categories first, in their usual order, then any others by name."""
    return (CATEGORIES.index(name), "") if name in CATEGORIES else (len(CATEGORIES), name)


def build_report(items: Iterable[ReportItem]) -> dict[str, Any]:
    tallies: dict[str, _Tally] = {}
    total = _Tally()
    for item in items:
        tallies.setdefault(item.category, _Tally()).add(item.outcome)
        total.add(item.outcome)
    categories: dict[str, dict[str, Any]] = {}
    for name in sorted(tallies, key=_category_order):
        tally = tallies[name]
        categories[name] = {
            "n": tally.n,
            "a_mean": _mean(tally.a_scores),
            "b_mean": _mean(tally.b_scores),
            "win": tally.win,
            "tie": tally.tie,
            "loss": tally.loss,
            "inconsistent": tally.inconsistent,
        }
    a_means = [c["a_mean"] for c in categories.values() if c["a_mean"] is not None]
    b_means = [c["b_mean"] for c in categories.values() if c["b_mean"] is not None]
    return {
        "categories": categories,
        "micro": {"a": _mean(total.a_scores), "b": _mean(total.b_scores)},
        "macro": {"a": _mean(a_means), "b": _mean(b_means)},
        "n": total.n,
        "win": total.win,
        "tie": total.tie,
        "loss": total.loss,
        "unparsed": total.unparsed,
        "inconsistent": total.inconsistent,
    }
