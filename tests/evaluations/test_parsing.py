from __future__ import annotations

import pytest

from webapp.evaluations.judging.parsing import parse_scores, parse_verdict


@pytest.mark.parametrize(("text", "first", "second"), [
    ("8 6", 8, 6),
    ("  8   6\nexplanation", 8, 6),
    ("\n\n8 6\n2 9 is what a worse judge would say", 8, 6),  # first NON-EMPTY line
    ("８　６", 8, 6),  # full-width digits and ideographic space
    ("8/10 6/10", 8, 6),
    ("8 / 10, 6 / 10", 8, 6),
    ("评分：8分，6分", 8, 6),
    ("助手1：8 助手2：6", 8, 6),
    ("助手１：８分；助手２：６分\n理由……", 8, 6),
    ("Assistant 1: 8/10, Assistant 2: 6/10", 8, 6),
    ("Assistant A: 9  Assistant B: 4", 9, 4),
    ("评分如下（满分10分）：8 6", 8, 6),
    ("Scores (out of 10): 3 and 10", 3, 10),
    ("**8 6**", 8, 6),
    ("7.5 8", 7.5, 8),
    ("10 1", 10, 1),
])
def test_score_pair_read_from_the_first_line(text: str, first: float, second: float) -> None:
    parsed = parse_scores(text, category="general")
    assert (parsed.ok, parsed.first, parsed.second, parsed.error) == (True, first, second, "")


def test_coding_uses_the_first_line_rule_too() -> None:
    parsed = parse_scores("9 2\nThe second program never terminates (3, 4).", category="coding")
    assert (parsed.first, parsed.second) == (9, 2)


@pytest.mark.parametrize(("text", "error"), [
    ("11 3", "score 11 on the first line is outside 1–10"),
    ("0 5", "score 0 on the first line is outside 1–10"),
    ("8", "expected two scores on the first line, found one number"),
    ("8 6 7", "expected two scores on the first line, found 3 numbers"),
    ("", "the reply is empty"),
    ("  \n\t\n", "the reply is empty"),
    ("Both answers are fine, the first is clearer.", "found no number"),
    ("评分如下：\n8 6", "found no number"),  # the scores must be on the first line
])
def test_score_pair_not_ok_says_why(text: str, error: str) -> None:
    parsed = parse_scores(text, category="general")
    assert not parsed.ok
    assert (parsed.first, parsed.second) == (None, None)
    assert error in parsed.error


def test_error_quotes_a_shortened_first_line() -> None:
    parsed = parse_scores("no scores here " * 20, category="general")
    assert '"no scores here' in parsed.error and parsed.error.endswith('…"')
    assert len(parsed.error) < 150


@pytest.mark.parametrize(("text", "first", "second"), [
    ("解：2x = 6，所以 x = 3。助手1答错，助手2答对。\n所以 (3, 9)", 3, 9),
    ("最终评分：（3，9）", 3, 9),
    ("Final: (3 ,  9)\n", 3, 9),
    ("(8/10, 6/10)", 8, 6),
    ("(助手1：3分，助手2：9分)", 3, 9),
    ("(7.5, 2)", 7.5, 2),
    # the working has a tuple of its own; the LAST one is the score
    ("The line passes (1, 2) and (4, 8), so the slope is 2.\nAssistant 1 is wrong.\n(2, 10)", 2, 10),
])
def test_math_reads_the_last_tuple(text: str, first: float, second: float) -> None:
    parsed = parse_scores(text, category="math")
    assert (parsed.ok, parsed.first, parsed.second) == (True, first, second)


@pytest.mark.parametrize(("text", "error"), [
    ("8 6\nI solved it: x = 4.", "no score tuple"),  # no first-line fallback: it is usually working
    ("The answer is (1, 2, 3).", "no score tuple"),
    ("points (1, 2) then the scores (11, 3)", "score 11 in the final tuple is outside 1–10"),
    ("", "the reply is empty"),
])
def test_math_not_ok_says_why(text: str, error: str) -> None:
    parsed = parse_scores(text, category="math")
    assert not parsed.ok and error in parsed.error


@pytest.mark.parametrize(("text", "verdict"), [
    ("Assistant A is more accurate.\n[[A]]", "first"),
    ("[[ B ]]", "second"),  # spaces inside the brackets are tolerated
    ("两者相当。[[C]]", "tie"),
    ("［［A］］", "first"),  # full-width brackets
    ("[[b]]", "second"),
    # several markers: the last wins (the judge quoted the format first)
    ("Answer [[A]] if A is better, [[B]] if B is better, [[C]] for a tie.\nHere A is better.\n[[A]]", "first"),
    ("[[A]] ... on reflection [[B]]", "second"),
])
def test_verdict_markers(text: str, verdict: str) -> None:
    parsed = parse_verdict(text)
    assert (parsed.ok, parsed.verdict, parsed.error) == (True, verdict, "")


@pytest.mark.parametrize(("text", "error"), [
    ("Assistant A is better.", "no verdict marker"),
    ("[[D]]", "no verdict marker"),
    ("[A]", "no verdict marker"),
    ("", "the reply is empty"),
])
def test_verdict_not_ok_says_why(text: str, error: str) -> None:
    parsed = parse_verdict(text)
    assert (parsed.ok, parsed.verdict) == (False, None)
    assert error in parsed.error
