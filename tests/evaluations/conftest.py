"""Shared fixtures for the evaluation service, API, runner and worker tests:
a small eval set whose questions carry their id, answers files whose text
says which candidate wrote them, and a judge script that reads both back
from the prompt so each question gets a planned verdict in either order.

The plan (SCORES) and the report it must give (EXPECTED_*) are written out
by hand, not computed with the code under test."""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.conftest import Roots
from tests.evaluations.scripted_judge import Reply, Script
from tests.support import ready_dataset
from webapp.datasets.models import Dataset
from webapp.deployments.models import Deployment
from webapp.evaluations.services import EvaluationSpec

JUDGE_KEY = "sk-judge-TOPSECRET-5f3a9c1e7b"
_QID = re.compile(r"QID\[([^\]]+)\]")

# BELLE rows: class "code" → coding, "math" → math, anything else → general.
QUESTIONS = [
    ("g1", "open qa"), ("g2", "brainstorming"), ("g3", "open qa"), ("g4", "generation"), ("g5", "open qa"),
    ("g6", "rewrite"), ("c1", "code"), ("c2", "code"), ("m1", "math"), ("m2", "math"),
]

# The judge's plan per question: (A's score, B's score) whichever order they
# are shown in; "bias": the judge gives the first-shown answer 9 and the
# second 5 (position bias → the orders disagree); "malformed_ab": A-then-B
# gets an unreadable reply, B-then-A reads A 6, B 4.
SCORES: dict[str, Any] = {
    "g1": (8, 4), "g2": (8, 4), "g3": (8, 4), "g4": (3, 9), "g5": (6, 6), "g6": "bias",
    "c1": (10, 2), "c2": "malformed_ab", "m1": (9, 1), "m2": (2, 8),
}

# By hand from SCORES. general: A 8+8+8+3+6+7 = 40 → 40/6, B 4+4+4+9+6+7 = 34 → 34/6;
# coding: A (10+6)/2 = 8, B (2+4)/2 = 3 (c2 from its parsed order only); math: A 5.5, B 4.5.
# micro A = (40+16+11)/10 = 6.7, B = (34+6+9)/10 = 4.9; macro A = (40/6+8+5.5)/3, B = (34/6+3+4.5)/3.
EXPECTED_SCORE_REPORT = {
    "categories": {
        "general": {"n": 6, "a_mean": 40 / 6, "b_mean": 34 / 6, "win": 3, "tie": 2, "loss": 1, "inconsistent": 1},
        "coding": {"n": 2, "a_mean": 8.0, "b_mean": 3.0, "win": 1, "tie": 0, "loss": 0, "inconsistent": 0},
        "math": {"n": 2, "a_mean": 5.5, "b_mean": 4.5, "win": 1, "tie": 0, "loss": 1, "inconsistent": 0},
    },
    "micro": {"a": 6.7, "b": 4.9},
    "macro": {"a": (40 / 6 + 8 + 5.5) / 3, "b": (34 / 6 + 3 + 4.5) / 3},
    "n": 10, "win": 5, "tie": 2, "loss": 2, "unparsed": 1, "inconsistent": 1,
}
EXPECTED_VERDICT_REPORT = {
    "categories": {
        "general": {"n": 6, "a_mean": None, "b_mean": None, "win": 3, "tie": 2, "loss": 1, "inconsistent": 1},
        "coding": {"n": 2, "a_mean": None, "b_mean": None, "win": 1, "tie": 0, "loss": 0, "inconsistent": 0},
        "math": {"n": 2, "a_mean": None, "b_mean": None, "win": 1, "tie": 0, "loss": 1, "inconsistent": 0},
    },
    "micro": {"a": None, "b": None},
    "macro": {"a": None, "b": None},
    "n": 10, "win": 5, "tie": 2, "loss": 2, "unparsed": 1, "inconsistent": 1,
}


def question_text(qid: str) -> str:
    return f"QID[{qid}] 请回答这个问题。"


def answer_text(side: str, qid: str) -> str:
    return f"ANSWER-{side.upper()} for {qid}"


def eval_rows(questions: list[tuple[str, str]] = QUESTIONS, *, reference: bool = True) -> list[dict[str, Any]]:
    return [{"id": qid, "question": question_text(qid), "class": cls, "std_answer": f"reference {qid}" if reference else ""}
            for qid, cls in questions]


def answers_jsonl(side: str, qids: list[str]) -> bytes:
    return "".join(json.dumps({"id": qid, "answer": answer_text(side, qid)}) + "\n" for qid in qids).encode()


def answers_upload(side: str, qids: list[str], name: str | None = None) -> SimpleUploadedFile:
    return SimpleUploadedFile(name or f"model-{side}.jsonl", answers_jsonl(side, qids))


def read_prompt(prompt: str) -> tuple[str, str]:
    """(question id, order) of a judge prompt: which candidate's answer
    comes first in the text."""
    qid = _QID.search(prompt)
    assert qid is not None, prompt[:200]
    first_a = prompt.index(f"ANSWER-A for {qid[1]}") < prompt.index(f"ANSWER-B for {qid[1]}")
    return qid[1], "ab" if first_a else "ba"


def planned_reply(qid: str, order: str, *, mode: str) -> str:
    """The reply SCORES plans for `qid` shown in `order`."""
    plan = SCORES.get(qid, (8, 4))
    category = "math" if qid.startswith("m") else "other"
    if plan == "malformed_ab" and order == "ab":
        return "I cannot decide between these answers."
    if plan == "malformed_ab":
        plan = (6, 4)
    if plan == "bias":
        first, second = 9, 5
    else:
        first, second = plan if order == "ab" else plan[::-1]
    if mode == "verdict":
        marker = "A" if first > second else "B" if first < second else "C"
        return f"Both answers were read carefully.\n[[{marker}]]"
    if category == "math":
        return f"Let me solve it first: 3 + 5 = 8, so the answer is 8.\nScores: ({first}, {second})"
    return f"{first} {second}\nThe first answer is {'better' if first > second else 'worse or equal'}."


def planned_script(mode: str = "score") -> Script:
    def script(prompt: str, call: int) -> Reply:
        qid, order = read_prompt(prompt)
        return Reply(planned_reply(qid, order, mode=mode))

    return script


def assert_report(actual: dict[str, Any], expected: dict[str, Any], *, ordered: bool = False) -> None:
    """Equal, means compared to 1e-9 (they are computed, not rounded).
    `ordered`: the categories in the report's order too — for a computed
    report (selectors, API); one read back from Evaluation.report has the
    database's key order (PostgreSQL's jsonb sorts keys)."""
    assert set(actual) == set(expected)
    if ordered:
        assert list(actual["categories"]) == list(expected["categories"])

    def close(a: Any, b: Any, where: str) -> None:
        if isinstance(b, dict):
            assert set(a) == set(b), where
            for key in b:
                close(a[key], b[key], f"{where}.{key}")
        elif isinstance(b, float):
            assert a is not None and abs(a - b) < 1e-9, f"{where}: {a} != {b}"
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"

    close(actual, expected, "report")


@pytest.fixture
def make_eval_dataset(roots: Roots) -> Callable[..., Dataset]:
    def make(owner, rows: list[dict[str, Any]] | None = None, *, name: str = "evalset", kind: str = "eval") -> Dataset:
        return ready_dataset(owner, kind=kind, rows=eval_rows() if rows is None else rows, name=name)

    return make


@pytest.fixture
def evalset(alice, make_eval_dataset) -> Dataset:
    """alice's ready eval set of QUESTIONS."""
    return make_eval_dataset(alice)


def spec_for(dataset: Dataset, judge_url: str, **overrides: Any) -> EvaluationSpec:
    """An evaluation of answers files A and B over every question of `dataset`."""
    qids = [qid for qid, _ in QUESTIONS]
    fields: dict[str, Any] = {
        "name": "A vs B", "dataset": dataset, "judge_base_url": judge_url, "judge_model": "scripted-judge",
        "judge_api_key": JUDGE_KEY, "a_answers": answers_upload("a", qids), "b_answers": answers_upload("b", qids),
        "concurrency": 4, "max_retries": 2, "request_timeout_s": 10.0, "mode": "score", "language": "en",
    }
    fields.update(overrides)
    return EvaluationSpec(**fields)


def local_deployment(owner, name: str, model_dir: Path, **fields: Any) -> Deployment:
    return Deployment.objects.create(owner=owner, name=name, kind="local", model_path=str(model_dir), **fields)


@pytest.fixture
def authed_client(api_client, alice):
    """The REST API as alice."""
    api_client.force_authenticate(user=alice)
    return api_client
