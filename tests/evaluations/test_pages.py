"""The evaluation pages with the Django test client: the list, the form
(defaults, errors on their fields, the judge key never echoed), the detail
page's report and question table, the results fragment and the leaderboard;
another user's evaluation is a 404. No worker runs: judgments are stored
here as the runner stores them (candidate terms), following the conftest's
hand-written plan, so the report numbers are known in advance."""
from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from django.utils.html import escape

from tests.evaluations.conftest import (
    JUDGE_KEY, QUESTIONS, SCORES, answers_jsonl, local_deployment, planned_reply, spec_for,
)
from webapp.evaluations.judging.prompts import default_templates
from webapp.evaluations.models import EvalItem, Evaluation, Judgment
from webapp.evaluations.selectors import evaluation_report
from webapp.evaluations.services import evaluation_create

pytestmark = pytest.mark.django_db
JUDGE = "http://127.0.0.1:9/v1"  # never called: no worker runs
QIDS = [qid for qid, _ in QUESTIONS]
UNREADABLE = "I cannot decide between these answers."


@pytest.fixture
def web(client, alice):
    client.force_login(alice)
    return client


def judged(evaluation: Evaluation, *, finish: bool = True) -> Evaluation:
    """Store both orders' judgments of every item per conftest.SCORES, as
    the runner would (scores in candidate terms), and end the run."""
    rows = []
    for item in EvalItem.objects.filter(evaluation=evaluation):
        plan = SCORES[item.question_id]
        for order in ("ab", "ba"):
            raw = planned_reply(item.question_id, order, mode="score")
            if plan == "malformed_ab" and order == "ab":
                rows.append(Judgment(item=item, order=order, prompt=f"prompt {order}", raw=raw, parsed=False,
                                     parse_error="no score pair on the first line"))
                continue
            if plan == "bias":  # the first-shown answer gets 9
                a, b = (9, 5) if order == "ab" else (5, 9)
            else:
                a, b = (6, 4) if plan == "malformed_ab" else plan
            verdict = "a" if a > b else "b" if a < b else "t"
            rows.append(Judgment(item=item, order=order, prompt=f"prompt {order}", raw=raw, parsed=True,
                                 score_a=a, score_b=b, verdict=verdict, prompt_tokens=100, completion_tokens=10))
    Judgment.objects.bulk_create(rows)
    if finish:
        Evaluation.objects.filter(pk=evaluation.pk).update(
            status="succeeded", judgments_done=len(rows), prompt_tokens=2000, completion_tokens=200,
            price_prompt_per_1k=0.03, price_completion_per_1k=0.06,
            finished_at=timezone.now(), report=evaluation_report(evaluation=evaluation))
    evaluation.refresh_from_db()
    return evaluation


def form_body(dataset, **overrides: Any) -> dict[str, Any]:
    """What the browser submits: answers files for A and B, the defaults."""
    templates = default_templates("score", "en")
    body: dict[str, Any] = {
        "name": "files A vs B", "dataset": dataset.pk,
        "a_source": "answers", "a_answers": SimpleUploadedFile("model-a.jsonl", answers_jsonl("a", QIDS)),
        "b_source": "answers", "b_answers": SimpleUploadedFile("model-b.jsonl", answers_jsonl("b", QIDS)),
        "max_tokens": 256, "temperature": 0.7, "top_p": 0.9,
        "judge_base_url": JUDGE, "judge_model": "gpt-4", "judge_api_key": JUDGE_KEY, "mode": "score", "language": "en",
        **{f"template_{category}": text for category, text in templates.items()},
        "concurrency": 4, "max_retries": 2, "request_timeout_s": 30, "sample_size": "", "seed": 0, "reward_model": "",
        "price_prompt_per_1k": 0.03, "price_completion_per_1k": 0.06,
    }
    body.update(overrides)
    return body


def row_cells(page: str, category: str) -> dict[str, str]:
    """The report table's cells of one row, by data-col."""
    match = re.search(rf'<tr[^>]*data-category="{category}"[^>]*>(.*?)</tr>', page, re.S)
    assert match, f"no report row {category}"
    return {col: value.strip() for col, value in re.findall(r'data-col="(\w+)">([^<]*)', match[1])}


def test_list_shows_only_the_owners_evaluations(web, alice, bob, evalset, make_eval_dataset) -> None:
    mine = evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE, name="mine"))
    theirs = evaluation_create(owner=bob, spec=spec_for(make_eval_dataset(bob), JUDGE, name="theirs"))
    response = web.get("/evaluations/")
    page = response.content.decode()
    assert response.status_code == 200
    assert f'data-evaluation="{mine.pk}"' in page and f'data-evaluation="{theirs.pk}"' not in page
    assert "model-a.jsonl" in page and "0 / 20 judgments" in page and 'href="/evaluations/new/"' in page


def test_another_users_evaluation_is_404_on_every_page(web, bob, make_eval_dataset) -> None:
    dataset = make_eval_dataset(bob)
    theirs = judged(evaluation_create(owner=bob, spec=spec_for(dataset, JUDGE)))
    assert web.get(f"/evaluations/{theirs.pk}/").status_code == 404
    assert web.get(f"/evaluations/{theirs.pk}/results/").status_code == 404
    assert web.get(f"/evaluations/leaderboard/?dataset={dataset.pk}").status_code == 404
    assert web.get("/evaluations/999999/").status_code == 404


def test_form_offers_own_ready_eval_sets_and_the_default_prompts(web, alice, bob, evalset, make_eval_dataset) -> None:
    corpus = make_eval_dataset(alice, [{"text": "not questions"}], name="corpus", kind="corpus")
    foreign = make_eval_dataset(bob, name="bobs-set")
    response = web.get("/evaluations/new/")
    assert response.status_code == 200
    form = response.context["form"]
    offered = {d.pk for d in form.fields["dataset"].queryset}
    assert evalset.pk in offered and corpus.pk not in offered and foreign.pk not in offered
    page = response.content.decode()
    zh = default_templates("score", "zh")
    assert escape(zh["math"]) in page  # the textarea is prefilled (zh, score mode)
    assert form["judge_model"].value() == "gpt-4" and 'type="password"' in page
    # Every mode/language's set is in the page for the script to swap in.
    assert "verdict/en" in page and '"score/zh"' in page


def test_a_valid_post_stores_the_evaluation_and_never_shows_the_key(web, alice, evalset) -> None:
    response = web.post("/evaluations/new/", form_body(evalset))
    evaluation = Evaluation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/evaluations/{evaluation.pk}/"
    assert (evaluation.owner, evaluation.items_total, evaluation.a_label, evaluation.mode) == (alice, 10, "model-a.jsonl", "score")
    assert evaluation.templates == default_templates("score", "en")
    assert evaluation.generation_params == {}  # no deployment generates: nothing to record
    assert JUDGE_KEY not in evaluation.judge_api_key_encrypted
    page = web.get(response["Location"]).content.decode()
    assert "Queued" in page and f"/api/evaluations/{evaluation.pk}/" in page and JUDGE_KEY not in page


def test_errors_land_on_their_fields_and_the_key_must_be_retyped(web, evalset) -> None:
    broken = default_templates("score", "en")["math"].replace("{answer_2}", "")
    body = form_body(
        evalset, template_math=broken, judge_base_url="ftp://judge",
        b_answers=SimpleUploadedFile("short.jsonl", answers_jsonl("b", QIDS[:-1])),
    )
    response = web.post("/evaluations/new/", body)
    assert response.status_code == 200 and not Evaluation.objects.exists()
    errors = response.context["form"].errors
    assert "answer_2" in " ".join(errors["template_math"])
    assert "m2" in " ".join(errors["b_answers"]) and "http" in " ".join(errors["judge_base_url"])
    assert set(errors) == {"template_math", "b_answers", "judge_base_url"}
    page = response.content.decode()
    assert 'id="id_template_math_error"' in page and 'id="id_b_answers_error"' in page
    assert JUDGE_KEY not in page and "type the key again" in page and "choose the answers file again" in page
    # The edited prompt comes back as typed.
    assert response.context["form"]["template_math"].value() == broken


def test_a_form_type_error_also_keeps_the_key_out(web, evalset) -> None:
    response = web.post("/evaluations/new/", form_body(evalset, concurrency="many", a_source="carrier-pigeon"))
    errors = response.context["form"].errors
    assert response.status_code == 200 and "concurrency" in errors and "a_source" in errors
    assert JUDGE_KEY not in response.content.decode() and not Evaluation.objects.exists()
    keyless = web.post("/evaluations/new/", form_body(evalset, judge_api_key=""))
    assert "required" in " ".join(keyless.context["form"].errors["judge_api_key"]) and not Evaluation.objects.exists()


def test_a_deployment_candidate_records_the_generation_parameters(web, alice, bob, evalset, tiny_bloom) -> None:
    mine = local_deployment(alice, "tiny-a", tiny_bloom)
    theirs = local_deployment(bob, "bobs-model", tiny_bloom)
    offered = {d.pk for d in web.get("/evaluations/new/").context["form"].fields["a_deployment"].queryset}
    assert mine.pk in offered and theirs.pk not in offered
    refused = web.post("/evaluations/new/", form_body(evalset, a_source="deployment", a_deployment=theirs.pk))
    assert "a_deployment" in refused.context["form"].errors and not Evaluation.objects.exists()
    response = web.post("/evaluations/new/", form_body(evalset, a_source="deployment", a_deployment=mine.pk, top_p=""))
    evaluation = Evaluation.objects.get()
    assert response.status_code == 302
    assert (evaluation.a_source, evaluation.a_deployment, evaluation.a_label) == ("deployment", mine, "tiny-a")
    assert evaluation.generation_params == {"max_tokens": 256, "temperature": 0.7}  # blank top_p: the deployment's
    assert evaluation.items.filter(answer_a__isnull=True).count() == 10  # to be generated by the run


def test_report_numbers_charts_and_judgments_are_rendered(web, alice, evalset) -> None:
    evaluation = judged(evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE)))
    response = web.get(f"/evaluations/{evaluation.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    # conftest's hand-computed report: general A 40/6, B 34/6; coding 8 / 3; math 5.5 / 4.5.
    assert row_cells(page, "general") == {"a_mean": "6.67", "b_mean": "5.67", "win": "3", "tie": "2", "loss": "1",
                                          "unparsed": "0", "inconsistent": "1"}
    assert row_cells(page, "coding") == {"a_mean": "8.00", "b_mean": "3.00", "win": "1", "tie": "0", "loss": "0",
                                         "unparsed": "1", "inconsistent": "0"}
    assert row_cells(page, "math")["a_mean"] == "5.50" and row_cells(page, "math")["b_mean"] == "4.50"
    assert row_cells(page, "micro") == {"a_mean": "6.70", "b_mean": "4.90"}
    # macro A = (40/6 + 8 + 5.5) / 3 = 6.72, B = (34/6 + 3 + 4.5) / 3 = 4.39
    assert row_cells(page, "macro") == {"a_mean": "6.72", "b_mean": "4.39"}
    assert row_cells(page, "total") == {"win": "5", "tie": "2", "loss": "2", "unparsed": "1", "inconsistent": "1"}
    assert 'id="chart-data"' in page and 'id="chart-means"' in page and 'id="chart-outcomes"' in page
    # The unparsed judgment is shown, raw text visible and marked.
    c2 = re.search(r'<details class="question" data-question="c2".*?</details>\s*</li>', page, re.S)[0]
    assert 'data-outcome="unparsed"' in c2 and "is-unparsed" in c2 and UNREADABLE in c2
    assert "no score pair on the first line" in c2 and "ANSWER-A for c2" in c2 and "reference c2" in c2
    # The settings show the prompts exactly as stored; exports are linked; no key anywhere.
    assert escape(evaluation.templates["general"]) in page
    assert f"/api/evaluations/{evaluation.pk}/export.csv" in page and f"/api/evaluations/{evaluation.pk}/export.json" in page
    assert JUDGE_KEY not in page and "$0.0720" in page  # 2000 × 0.03 / 1k + 200 × 0.06 / 1k


def test_question_filters_and_pages(web, alice, evalset) -> None:
    evaluation = judged(evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE)))
    url = f"/evaluations/{evaluation.pk}/results/"

    def shown(query: str) -> list[str]:
        response = web.get(url + query)
        assert response.status_code == 200
        return re.findall(r'data-question="([^"]+)"', response.content.decode())

    assert shown("") == QIDS
    assert shown("?category=math") == ["m1", "m2"]
    assert shown("?outcome=unparsed") == ["c2"]
    assert shown("?outcome=inconsistent") == ["g6"]
    assert shown("?outcome=loss&category=general") == ["g4"]
    assert shown("?q=QID[m1]") == ["m1"]
    assert shown("?outcome=bogus") == QIDS  # an unknown filter is ignored, not an error
    assert shown("?page=2") == []  # 10 questions fit on one page
    page = web.get(f"/evaluations/{evaluation.pk}/?category=coding").content.decode()
    assert re.findall(r'data-question="([^"]+)"', page) == ["c1", "c2"]


def test_user_text_is_escaped(web, alice, make_eval_dataset) -> None:
    hostile = '<script>alert("q")</script>'
    dataset = make_eval_dataset(alice, [{"id": "x1", "question": hostile, "class": "open qa", "std_answer": "<b>ref</b>"}])
    spec = spec_for(dataset, JUDGE, a_answers=SimpleUploadedFile("<img src=x onerror=alert(1)>.jsonl",
                                                                  b'{"id": "x1", "answer": "<iframe>a</iframe>"}\n'),
                    b_answers=SimpleUploadedFile("b.jsonl", b'{"id": "x1", "answer": "b"}\n'))
    evaluation = evaluation_create(owner=alice, spec=spec)
    item = evaluation.items.get()
    Judgment.objects.create(item=item, order="ab", prompt="p", raw="<svg onload=alert(2)>", parsed=False, parse_error="x")
    page = web.get(f"/evaluations/{evaluation.pk}/").content.decode()
    for raw in (hostile, "<b>ref</b>", "<iframe>", "<svg onload", "<img src=x"):
        assert raw not in page
    assert escape(hostile) in page
    assert "&lt;svg onload=alert(2)&gt;" in page
    assert "<img src=x" not in web.get("/evaluations/").content.decode()


def test_leaderboard_sums_each_candidate_over_the_eval_set(web, alice, evalset, make_eval_dataset) -> None:
    judged(evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE, name="first")))
    judged(evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE, name="second")))
    evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE, name="still queued"))
    other = make_eval_dataset(alice, name="other-set")
    judged(evaluation_create(owner=alice, spec=spec_for(other, JUDGE, name="elsewhere")))
    response = web.get(f"/evaluations/leaderboard/?dataset={evalset.pk}")
    assert response.status_code == 200
    page = response.content.decode()
    a = re.search(r'<tr data-candidate="model-a.jsonl">(.*?)</tr>', page, re.S)[1]
    b = re.search(r'<tr data-candidate="model-b.jsonl">(.*?)</tr>', page, re.S)[1]
    # Two succeeded runs of 5 / 2 / 2 from A's side; the queued one and the other set's are not counted.
    assert 'data-col="wins">10<' in a and 'data-col="ties">4<' in a and 'data-col="losses">4<' in a
    assert 'data-col="wins">4<' in b and 'data-col="losses">10<' in b
    assert 'data-col="mean">6.70<' in a and 'data-col="mean">4.90<' in b
    # Win rate A = (10 + 4/2) / 18 = 67 %.
    assert 'data-col="win_rate">67%<' in a
    assert "still queued" not in page and "elsewhere" not in page and "second" in page
    assert JUDGE_KEY not in page
    assert f'value="{other.pk}"' in page  # the menu offers every eval set evaluated on
    assert web.get("/evaluations/leaderboard/").status_code == 200


def test_the_section_is_live_in_the_navigation(web) -> None:
    page = web.get("/evaluations/").content.decode()
    assert "not available in this build" not in page and 'aria-current="page">Evaluations' in page
