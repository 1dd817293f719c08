"""Reading the judge's reply. Nothing here guesses: a reply that does not
follow the format is "not ok" with an error saying why, and the caller keeps
the raw text and leaves it out of the means (never scored 0).

Score pair (`parse_scores`):
  general, coding — the first non-empty line holds the two scores, "s1 s2";
  math            — the judge works the problem first, so the LAST "(s1, s2)"
                    tuple in the reply is the score (earlier ones may be
                    coordinates or intervals in its working).
  Tolerated: any whitespace, full-width digits and punctuation ("８　６",
  "（3，9）"), a "/10" after a score, labels such as "助手1：" or
  "Assistant 2:" and other words around the numbers, decimals ("7.5").
  Scores must lie within 1–10. A math reply without a tuple is not read
  from its first line: that line is usually working ("3 + 5 = 8").

Verdict (`parse_verdict`): [[A]] = the answer shown first, [[B]] = second,
[[C]] = tie; spaces inside the brackets and lower case are tolerated. When
several markers appear the LAST one wins: judges often quote the format
("[[A]] if …, [[B]] if …") before ending with their verdict, as the prompt
asks them to."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

MIN_SCORE = 1.0
MAX_SCORE = 10.0

Verdict = Literal["first", "second", "tie"]


@dataclass(frozen=True)
class ParsedScores:
    ok: bool
    first: float | None = None   # the score of the answer shown first
    second: float | None = None
    error: str = ""


@dataclass(frozen=True)
class ParsedVerdict:
    ok: bool
    verdict: Verdict | None = None
    error: str = ""


_NUMBER = r"-?\d+(?:\.\d+)?"
# A label that carries a digit or letter of its own ("助手1", "Assistant 2",
# "回答B"): removed before counting numbers so its 1/2 is not read as a score.
_LABEL = re.compile(
    r"(?:助手|回答|答案|模型|候选|assistant|answer|response|model|candidate)\s*(?:no\.?|#)?\s*"
    r"(?:[12](?![\d.])|[一二]|[ab](?![a-z]))",
    re.IGNORECASE,
)
# "/10", "/ 10.0", "满分10分", "out of 10": a scale, not a score.
_SCALE = re.compile(r"\s*/\s*10(?:\.0+)?(?![\d.])|满分\s*10\s*分?|\(?\s*out of 10(?:\.0+)?\s*\)?", re.IGNORECASE)
# After labels are removed "(助手1：3分，助手2：9分)" reads "(: 3分, : 9分)".
_TUPLE = re.compile(rf"\([:\s]*({_NUMBER})\s*分?\s*[,;、][:\s]*({_NUMBER})\s*分?\s*\)")
_VERDICT = re.compile(r"\[\[\s*([abc])\s*\]\]", re.IGNORECASE)
_VERDICTS: dict[str, Verdict] = {"a": "first", "b": "second", "c": "tie"}


def normalise(text: str) -> str:
    """NFKC folds full-width digits, letters and punctuation to ASCII
    ("８" → "8", "（" → "(", "，" → ",", "：" → ":", ideographic space → " ")."""
    return unicodedata.normalize("NFKC", text)


def _excerpt(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _numbers(text: str) -> list[float]:
    cleaned = _SCALE.sub(" ", _LABEL.sub(" ", text))
    return [float(match) for match in re.findall(_NUMBER, cleaned)]


def _checked(first: float, second: float, where: str) -> ParsedScores:
    for value in (first, second):
        if not MIN_SCORE <= value <= MAX_SCORE:
            return ParsedScores(ok=False, error=f"score {value:g} {where} is outside 1–10")
    return ParsedScores(ok=True, first=first, second=second)


def parse_scores(text: str, *, category: str) -> ParsedScores:
    """The two scores (first-shown answer's first); see the module docstring."""
    text = normalise(text or "")
    if not text.strip():
        return ParsedScores(ok=False, error="the reply is empty")
    if category == "math":
        matches = list(_TUPLE.finditer(_SCALE.sub("", _LABEL.sub("", text))))
        if not matches:
            return ParsedScores(ok=False, error="no score tuple \"(s1, s2)\" in the reply")
        last = matches[-1]
        return _checked(float(last.group(1)), float(last.group(2)), "in the final tuple")
    first_line = next(line for line in text.splitlines() if line.strip())
    numbers = _numbers(first_line)
    if len(numbers) != 2:
        found = {0: "no number", 1: "one number"}.get(len(numbers), f"{len(numbers)} numbers")
        return ParsedScores(ok=False, error=f"expected two scores on the first line, found {found}: "
                                            f"\"{_excerpt(first_line)}\"")
    return _checked(numbers[0], numbers[1], "on the first line")


def parse_verdict(text: str) -> ParsedVerdict:
    """[[A]] / [[B]] / [[C]] → first / second / tie; the last marker wins."""
    text = normalise(text or "")
    if not text.strip():
        return ParsedVerdict(ok=False, error="the reply is empty")
    markers = _VERDICT.findall(text)
    if not markers:
        return ParsedVerdict(ok=False, error="no verdict marker [[A]], [[B]] or [[C]] in the reply")
    return ParsedVerdict(ok=True, verdict=_VERDICTS[markers[-1].lower()])
