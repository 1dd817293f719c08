"""REST /api/evaluations/: create (JSON and multipart), the report's exact
shape, the question table and exports, cancel/resume/delete, owner scoping
(another user's evaluation is 404 everywhere) and the write-only judge key."""
from __future__ import annotations

import csv
import io
import json

import pytest
from rest_framework.test import APIClient

from tests.evaluations.conftest import (
    EXPECTED_SCORE_REPORT, JUDGE_KEY, QUESTIONS, answers_jsonl, answer_text, assert_report, planned_script,
)
from tests.evaluations.scripted_judge import scripted_judge
from webapp.evaluations.judging.prompts import default_templates
from webapp.evaluations.models import EvalItem, Evaluation
from webapp.evaluations.services import evaluation_run

pytestmark = pytest.mark.django_db
QIDS = [qid for qid, _ in QUESTIONS]
JUDGE = "http://127.0.0.1:9/v1"


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def body(dataset, judge_url: str = JUDGE, **overrides) -> dict:
    """A JSON create body with both candidates' answers inline."""
    data = {
        "name": "A vs B", "dataset": dataset.pk, "judge_base_url": judge_url, "judge_model": "scripted-judge",
        "judge_api_key": JUDGE_KEY, "mode": "score", "language": "en", "concurrency": 4, "max_retries": 1,
        "a_answers": [{"id": q, "answer": answer_text("a", q)} for q in QIDS],
        "b_answers": [{"id": q, "answer": answer_text("b", q)} for q in QIDS],
    }
    data.update(overrides)
    return data


def endpoints(pk: int) -> list[tuple[str, str]]:
    base = f"/api/evaluations/{pk}"
    return [("get", f"{base}/"), ("get", f"{base}/report"), ("get", f"{base}/questions"), ("get", f"{base}/export.csv"),
            ("get", f"{base}/export.json"), ("post", f"{base}/cancel/"), ("post", f"{base}/resume/"), ("delete", f"{base}/")]


@pytest.fixture
def finished(alice, evalset) -> Evaluation:
    """alice's evaluation of the planned script, run to its end."""
    with scripted_judge(planned_script("score")) as judge:
        created = as_user(alice).post("/api/evaluations/", body(evalset, judge.base_url), format="json")
        assert created.status_code == 201, created.content
        done = evaluation_run(evaluation_id=created.json()["id"], worker="test@here")
    assert done is not None and done.status == "succeeded", done.error if done else None
    return done


def test_create_json_returns_the_evaluation_without_the_key(alice, evalset) -> None:
    response = as_user(alice).post("/api/evaluations/", body(evalset), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert JUDGE_KEY not in response.content.decode() and "judge_api_key" not in data
    assert not any("key" in name for name in data)
    assert (data["status"], data["items_total"], data["judgments_total"], data["owner"]) == ("queued", 10, 20, "alice")
    assert data["templates"] == default_templates("score", "en") and data["progress"] == 0.0
    evaluation = Evaluation.objects.get(pk=data["id"])
    assert evaluation.items.get(question_id="g2").answer_b == answer_text("b", "g2")
    assert (evaluation.a_label, evaluation.b_label) == ("a_answers.jsonl", "b_answers.jsonl")


def test_create_multipart_with_answers_files(alice, evalset) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    data = body(evalset, sample_size=4, seed=3, templates=json.dumps({"general": "Q {question} 1 {answer_1} 2 {answer_2}"}))
    data["a_answers"] = SimpleUploadedFile("mine.jsonl", answers_jsonl("a", QIDS))
    data["b_answers"] = SimpleUploadedFile("theirs.jsonl", answers_jsonl("b", QIDS))
    response = as_user(alice).post("/api/evaluations/", data, format="multipart")
    assert response.status_code == 201, response.content
    evaluation = Evaluation.objects.get(pk=response.json()["id"])
    assert (evaluation.items_total, evaluation.a_label, evaluation.b_label) == (4, "mine.jsonl", "theirs.jsonl")
    assert evaluation.templates["general"] == "Q {question} 1 {answer_1} 2 {answer_2}"
    assert evaluation.templates["math"] == default_templates("score", "en")["math"]


def test_bad_answers_file_is_400_naming_line_and_field_and_stores_nothing(alice, evalset) -> None:
    lines = answers_jsonl("b", QIDS).decode().splitlines()
    lines[6] = json.dumps({"id": "c1", "text": "no answer field"})
    data = body(evalset, b_answers="\n".join(lines))
    response = as_user(alice).post("/api/evaluations/", data, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["param"] == "b_answers" and "b_answers.jsonl line 7: field 'answer' must be a string" in error["message"]
    assert not Evaluation.objects.exists() and not EvalItem.objects.exists()


@pytest.mark.parametrize("overrides, param", [
    ({"judge_base_url": "judge.example.com"}, "judge_base_url"),
    ({"judge_api_key": ""}, "judge_api_key"),
    ({"concurrency": 65}, "concurrency"),
    ({"sample_size": 0}, "sample_size"),
    ({"mode": "elo"}, "mode"),
    ({"templates": {"coding": "{question} only"}}, "templates.coding"),
    ({"dataset": 999999}, "dataset"),
])
def test_invalid_input_is_400_naming_the_field(alice, evalset, overrides: dict, param: str) -> None:
    response = as_user(alice).post("/api/evaluations/", {**body(evalset), **overrides}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param and JUDGE_KEY not in response.content.decode()
    assert not Evaluation.objects.exists()


def test_report_has_exactly_the_issues_shape(alice, finished) -> None:
    report = as_user(alice).get(f"/api/evaluations/{finished.pk}/report")
    assert report.status_code == 200
    data = report.json()
    assert set(data) == {"categories", "micro", "macro", "n", "win", "tie", "loss", "unparsed", "inconsistent"}
    assert all(set(c) == {"n", "a_mean", "b_mean", "win", "tie", "loss", "inconsistent"} for c in data["categories"].values())
    assert set(data["micro"]) == set(data["macro"]) == {"a", "b"}
    assert_report(data, EXPECTED_SCORE_REPORT, ordered=True)


def test_a_queued_evaluations_report_is_all_unparsed(alice, evalset) -> None:
    pk = as_user(alice).post("/api/evaluations/", body(evalset), format="json").json()["id"]
    data = as_user(alice).get(f"/api/evaluations/{pk}/report").json()
    assert (data["n"], data["unparsed"], data["win"], data["micro"]) == (10, 10, 0, {"a": None, "b": None})


def test_questions_filter_and_page(alice, finished) -> None:
    client = as_user(alice)
    wins = client.get(f"/api/evaluations/{finished.pk}/questions?outcome=win").json()
    assert wins["total"] == 5 and sorted(r["id"] for r in wins["data"]) == ["c1", "g1", "g2", "g3", "m1"]
    inconsistent = client.get(f"/api/evaluations/{finished.pk}/questions?outcome=inconsistent").json()["data"]
    assert [r["id"] for r in inconsistent] == ["g6"] and inconsistent[0]["outcome"] == "tie"
    row = inconsistent[0]
    assert (row["score_a"], row["score_b"]) == (7.0, 7.0)
    assert row["judgments"]["ab"]["raw"].startswith("9 5") and row["judgments"]["ba"]["score_a"] == 5.0
    math = client.get(f"/api/evaluations/{finished.pk}/questions?category=math&limit=1&offset=1").json()
    assert (math["total"], [r["id"] for r in math["data"]]) == (2, ["m2"])
    found = client.get(f"/api/evaluations/{finished.pk}/questions?search=QID[c2]").json()["data"]
    assert [r["id"] for r in found] == ["c2"] and found[0]["outcome"] == "unparsed"
    bad = client.get(f"/api/evaluations/{finished.pk}/questions?outcome=great")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "outcome"


def test_exports(alice, finished) -> None:
    client = as_user(alice)
    response = client.get(f"/api/evaluations/{finished.pk}/export.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["id"] for r in rows] == QIDS
    g4 = next(r for r in rows if r["id"] == "g4")
    assert (g4["outcome"], g4["ab_score_a"], g4["ba_score_a"], g4["ba_verdict"]) == ("loss", "3.0", "3.0", "b")
    data = json.loads(client.get(f"/api/evaluations/{finished.pk}/export.json").content)
    assert data["evaluation"]["judge_model"] == "scripted-judge" and "judge_api_key" not in data["evaluation"]
    assert len(data["questions"]) == 10 and data["templates"] == finished.templates
    assert_report(data["report"], EXPECTED_SCORE_REPORT, ordered=True)


def test_the_key_appears_in_no_response(alice, finished) -> None:
    client = as_user(alice)
    responses = [client.get("/api/evaluations/"), client.get("/api/evaluations/templates?mode=verdict&language=zh")]
    for method, url in endpoints(finished.pk)[:5]:
        response = getattr(client, method)(url)
        responses.append(response)
        assert response.status_code == 200, url
    for response in responses:
        content = b"".join(response.streaming_content) if response.streaming else response.content
        assert JUDGE_KEY.encode() not in content and finished.judge_api_key_encrypted.encode() not in content


def test_another_users_evaluation_is_404_everywhere(alice, bob, finished) -> None:
    client = as_user(bob)
    for method, url in endpoints(finished.pk):
        response = getattr(client, method)(url)
        assert response.status_code == 404, (method, url, response.status_code)
    listed = client.get("/api/evaluations/").json()
    assert listed["results"] == []
    assert Evaluation.objects.get(pk=finished.pk).status == "succeeded"


def test_cancel_resume_and_delete(alice, evalset) -> None:
    client = as_user(alice)
    pk = client.post("/api/evaluations/", body(evalset), format="json").json()["id"]
    cancelled = client.post(f"/api/evaluations/{pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert client.post(f"/api/evaluations/{pk}/cancel").status_code == 409
    resumed = client.post(f"/api/evaluations/{pk}/resume")
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    assert client.post(f"/api/evaluations/{pk}/resume/").status_code == 409
    assert client.delete(f"/api/evaluations/{pk}/").status_code == 204
    assert not Evaluation.objects.exists() and not EvalItem.objects.exists()


def test_list_filters_and_templates(alice, evalset) -> None:
    client = as_user(alice)
    pk = client.post("/api/evaluations/", body(evalset), format="json").json()["id"]
    assert [e["id"] for e in client.get("/api/evaluations/?status=queued").json()["results"]] == [pk]
    assert client.get("/api/evaluations/?status=succeeded").json()["results"] == []
    assert client.get(f"/api/evaluations/?dataset={evalset.pk + 1}").json()["results"] == []
    templates = client.get("/api/evaluations/templates?mode=verdict&language=zh").json()
    assert templates == {"mode": "verdict", "language": "zh", "templates": default_templates("verdict", "zh")}
    assert client.get("/api/evaluations/templates?mode=elo").status_code == 400
    assert APIClient().get("/api/evaluations/").status_code == 401
