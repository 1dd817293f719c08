"""Position swap: every question is judged as A-then-B ("ab") and as
B-then-A ("ba"). The parser speaks of the answer shown first and second;
`to_candidate_terms` turns that into A and B, and `combine` merges the two
orders into one outcome for A.

Rules (issue 9): a win or a loss needs both orders to agree; any
disagreement — including one order preferring an answer and the other
calling a tie — is a tie, flagged inconsistent. An order that is missing or
unparsed makes the question "unparsed" (out of win/tie/loss), but the orders
that did parse still count towards the score means."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Order = Literal["ab", "ba"]
CandidateVerdict = Literal["a", "b", "t"]
Outcome = Literal["win", "tie", "loss", "unparsed"]

_SWAP: dict[str, CandidateVerdict] = {"first": "b", "second": "a", "tie": "t"}
_KEEP: dict[str, CandidateVerdict] = {"first": "a", "second": "b", "tie": "t"}
_OUTCOME: dict[CandidateVerdict, Outcome] = {"a": "win", "b": "loss", "t": "tie"}


@dataclass(frozen=True)
class OrderResult:
    """One order's judgment in candidate terms (as stored on a Judgment row).
    `parsed` False (or a failed call) means the order gives nothing."""

    parsed: bool
    score_a: float | None = None
    score_b: float | None = None
    verdict: CandidateVerdict | None = None


@dataclass(frozen=True)
class ItemOutcome:
    outcome: Outcome
    inconsistent: bool = False
    score_a: float | None = None  # mean over the parsed orders; None in verdict mode
    score_b: float | None = None


def to_candidate_terms(
    order: str, *, first: float | None = None, second: float | None = None, verdict: str | None = None,
) -> tuple[float | None, float | None, CandidateVerdict]:
    """(score_a, score_b, verdict) from the judge's positional reading.

    Score mode passes `first` and `second` (the verdict follows from them:
    the higher score wins, equal scores tie); verdict mode passes `verdict`
    ("first" | "second" | "tie")."""
    if order not in ("ab", "ba"):
        raise ValueError(f"order must be 'ab' or 'ba', got {order!r}")
    swapped = order == "ba"
    if first is not None and second is not None:
        score_a, score_b = (second, first) if swapped else (first, second)
        derived: CandidateVerdict = "a" if score_a > score_b else "b" if score_a < score_b else "t"
        return score_a, score_b, derived
    if verdict is not None:
        table = _SWAP if swapped else _KEEP
        if verdict not in table:
            raise ValueError(f"verdict must be 'first', 'second' or 'tie', got {verdict!r}")
        return None, None, table[verdict]
    raise ValueError("give both scores or a verdict")


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def combine(ab: OrderResult | None, ba: OrderResult | None) -> ItemOutcome:
    """One question's outcome for candidate A from its two orders."""
    parsed = [result for result in (ab, ba) if result is not None and result.parsed]
    score_a = _mean([r.score_a for r in parsed if r.score_a is not None])
    score_b = _mean([r.score_b for r in parsed if r.score_b is not None])
    if len(parsed) < 2:
        return ItemOutcome("unparsed", False, score_a, score_b)
    first, second = parsed[0].verdict, parsed[1].verdict
    if first is None or second is None:
        raise ValueError("a parsed order needs a verdict")
    if first != second:
        return ItemOutcome("tie", True, score_a, score_b)
    return ItemOutcome(_OUTCOME[first], False, score_a, score_b)
