from __future__ import annotations

import pytest

from webapp.evaluations.judging.outcome import ItemOutcome, OrderResult, combine, to_candidate_terms


def test_scores_in_ab_order_stay_put_and_decide_the_verdict() -> None:
    assert to_candidate_terms("ab", first=8, second=6) == (8, 6, "a")
    assert to_candidate_terms("ab", first=3, second=9) == (3, 9, "b")
    assert to_candidate_terms("ab", first=7, second=7) == (7, 7, "t")


def test_scores_in_ba_order_are_swapped_back_to_candidates() -> None:
    # B's answer was shown first and scored 8; A's was second and scored 6
    assert to_candidate_terms("ba", first=8, second=6) == (6, 8, "b")
    assert to_candidate_terms("ba", first=2, second=9) == (9, 2, "a")
    assert to_candidate_terms("ba", first=5.5, second=5.5) == (5.5, 5.5, "t")


def test_positional_verdicts_become_candidate_verdicts() -> None:
    assert to_candidate_terms("ab", verdict="first") == (None, None, "a")
    assert to_candidate_terms("ab", verdict="second") == (None, None, "b")
    assert to_candidate_terms("ba", verdict="first") == (None, None, "b")
    assert to_candidate_terms("ba", verdict="second") == (None, None, "a")
    assert to_candidate_terms("ba", verdict="tie") == (None, None, "t")


def test_to_candidate_terms_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="order"):
        to_candidate_terms("ba ", first=1, second=2)
    with pytest.raises(ValueError, match="verdict"):
        to_candidate_terms("ab", verdict="a")
    with pytest.raises(ValueError, match="scores or a verdict"):
        to_candidate_terms("ab", first=3)


def _scored(order: str, first: float, second: float) -> OrderResult:
    score_a, score_b, verdict = to_candidate_terms(order, first=first, second=second)
    return OrderResult(parsed=True, score_a=score_a, score_b=score_b, verdict=verdict)


def _verdict(order: str, verdict: str) -> OrderResult:
    return OrderResult(parsed=True, verdict=to_candidate_terms(order, verdict=verdict)[2])


UNPARSED = OrderResult(parsed=False)


def test_both_orders_prefer_a_is_a_win_with_mean_scores() -> None:
    # ab: A 8, B 6; ba: B shown first gets 5, A second gets 9
    assert combine(_scored("ab", 8, 6), _scored("ba", 5, 9)) == ItemOutcome("win", False, 8.5, 5.5)


def test_both_orders_prefer_b_is_a_loss() -> None:
    assert combine(_scored("ab", 3, 7), _scored("ba", 9, 4)) == ItemOutcome("loss", False, 3.5, 8.0)


def test_both_orders_tie_is_a_consistent_tie() -> None:
    assert combine(_scored("ab", 6, 6), _scored("ba", 7, 7)) == ItemOutcome("tie", False, 6.5, 6.5)


def test_position_bias_disagreement_is_an_inconsistent_tie() -> None:
    # The judge prefers whichever answer comes first.
    assert combine(_scored("ab", 8, 5), _scored("ba", 8, 5)) == ItemOutcome("tie", True, 6.5, 6.5)


def test_a_preference_against_a_tie_is_inconsistent_too() -> None:
    assert combine(_scored("ab", 8, 5), _scored("ba", 6, 6)) == ItemOutcome("tie", True, 7.0, 5.5)


def test_verdict_mode_agreement_and_disagreement_without_scores() -> None:
    assert combine(_verdict("ab", "first"), _verdict("ba", "second")) == ItemOutcome("win", False, None, None)
    assert combine(_verdict("ab", "second"), _verdict("ba", "first")) == ItemOutcome("loss", False, None, None)
    assert combine(_verdict("ab", "tie"), _verdict("ba", "tie")) == ItemOutcome("tie", False, None, None)
    assert combine(_verdict("ab", "first"), _verdict("ba", "first")) == ItemOutcome("tie", True, None, None)


def test_one_unparsed_order_is_unparsed_but_keeps_the_parsed_scores() -> None:
    assert combine(_scored("ab", 8, 6), UNPARSED) == ItemOutcome("unparsed", False, 8.0, 6.0)
    assert combine(UNPARSED, _scored("ba", 8, 6)) == ItemOutcome("unparsed", False, 6.0, 8.0)


def test_a_missing_order_counts_as_unparsed() -> None:
    assert combine(_scored("ab", 8, 6), None) == ItemOutcome("unparsed", False, 8.0, 6.0)
    assert combine(None, _verdict("ba", "first")) == ItemOutcome("unparsed", False, None, None)


def test_nothing_parsed_gives_no_scores() -> None:
    assert combine(UNPARSED, UNPARSED) == ItemOutcome("unparsed", False, None, None)
    assert combine(None, None) == ItemOutcome("unparsed", False, None, None)


def test_unparsed_order_scores_are_ignored_even_if_present() -> None:
    stale = OrderResult(parsed=False, score_a=1.0, score_b=10.0, verdict="b")
    assert combine(_scored("ab", 8, 6), stale) == ItemOutcome("unparsed", False, 8.0, 6.0)
