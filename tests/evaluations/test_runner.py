"""The runner in this process (services.evaluation_run: claim + run) against
a scripted judge over real HTTP: the report a planned script must give in
both modes, position swap stored in candidate terms, retries, unparseable
replies, failed calls and their resume, timeouts, rewards."""
from __future__ import annotations

import logging

import pytest

from tests.evaluations.conftest import (
    EXPECTED_SCORE_REPORT, EXPECTED_VERDICT_REPORT, JUDGE_KEY, QUESTIONS, assert_report, planned_script, read_prompt, spec_for,
)
from tests.evaluations.scripted_judge import Reply, malformed, rate_limited, scripted_judge, too_slow
from webapp.evaluations.models import Evaluation, Judgment
from webapp.evaluations.selectors import evaluation_report
from webapp.evaluations.services import evaluation_create, evaluation_resume, evaluation_run

pytestmark = pytest.mark.django_db


def run(evaluation: Evaluation) -> Evaluation:
    done = evaluation_run(evaluation_id=evaluation.pk, worker="test@here")
    assert done is not None
    return done


def test_score_mode_report_and_position_swap(alice, evalset) -> None:
    with scripted_judge(planned_script("score")) as judge:
        evaluation = evaluation_create(owner=alice, spec=spec_for(evalset, judge.base_url))
        done = run(evaluation)
    assert done.status == "succeeded", done.error
    assert (done.attempt, done.phase, done.error, done.judgments_done, done.judge_failures) == (1, "", "", 20, 0)
    assert_report(done.report, EXPECTED_SCORE_REPORT)
    assert_report(evaluation_report(evaluation=done), EXPECTED_SCORE_REPORT, ordered=True)
    # Each question judged once per order, sent with the key.
    assert sorted(read_prompt(r.prompt) for r in judge.requests) == sorted(
        (qid, order) for qid, _ in QUESTIONS for order in ("ab", "ba"))
    assert {r.authorization for r in judge.requests} == {f"Bearer {JUDGE_KEY}"}
    assert {r.body["temperature"] for r in judge.requests} == {0}
    # B-then-A for g1: the judge wrote "4 8" (B first); stored as A 8, B 4.
    ba = Judgment.objects.get(item__evaluation=done, item__question_id="g1", order="ba")
    assert ba.raw.startswith("4 8") and (ba.score_a, ba.score_b, ba.verdict, ba.parsed) == (8, 4, "a", True)
    assert ba.prompt.index("ANSWER-B for g1") < ba.prompt.index("ANSWER-A for g1")
    assert "reference g1" in ba.prompt and ba.prompt in [r.prompt for r in judge.requests]
    assert done.prompt_tokens == sum(max(1, len(r.prompt) // 4) for r in judge.requests) and done.completion_tokens > 0
    unparsed = Judgment.objects.get(item__evaluation=done, item__question_id="c2", order="ab")
    assert not unparsed.parsed and unparsed.raw == "I cannot decide between these answers." and unparsed.parse_error
    # A late duplicate delivery does nothing.
    assert evaluation_run(evaluation_id=done.pk, worker="late@here") is None


def test_verdict_mode_report(alice, evalset) -> None:
    with scripted_judge(planned_script("verdict")) as judge:
        done = run(evaluation_create(owner=alice, spec=spec_for(evalset, judge.base_url, mode="verdict")))
    assert done.status == "succeeded", done.error
    assert_report(done.report, EXPECTED_VERDICT_REPORT)
    ba = Judgment.objects.get(item__evaluation=done, item__question_id="g4", order="ba")
    assert ba.raw.endswith("[[A]]") and ba.verdict == "b" and ba.score_a is None  # B shown first and preferred


def test_rate_limited_calls_are_retried(alice, evalset) -> None:
    with scripted_judge(rate_limited(2, then=planned_script("score"))) as judge:
        done = run(evaluation_create(owner=alice, spec=spec_for(evalset, judge.base_url, concurrency=1)))
    assert done.status == "succeeded", done.error
    assert judge.calls == 22 and done.judge_failures == 0 and Judgment.objects.filter(item__evaluation=done).count() == 20
    assert_report(done.report, EXPECTED_SCORE_REPORT)


def test_unparseable_replies_are_stored_counted_and_not_scored(alice, evalset) -> None:
    with scripted_judge(malformed()) as judge:
        done = run(evaluation_create(owner=alice, spec=spec_for(evalset, judge.base_url)))
    assert done.status == "succeeded" and done.judge_failures == 0
    assert (done.report["unparsed"], done.report["win"], done.report["micro"]) == (10, 0, {"a": None, "b": None})
    rows = Judgment.objects.filter(item__evaluation=done)
    assert rows.count() == 20 and not rows.filter(parsed=True).exists()
    assert all(row.parse_error and row.score_a is None for row in rows)
    assert {row.raw for row in rows} == {"I cannot decide between these answers.", "", "Scores: ten and nine", "[[D]]"}


def test_failed_calls_fail_the_run_and_resume_redoes_only_them(alice, evalset, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    state = {"broken": True}
    planned = planned_script("score")

    def script(prompt: str, call: int) -> Reply:
        qid, _ = read_prompt(prompt)
        if state["broken"] and qid.startswith("m"):
            # A server that echoes the key back in its error message.
            return Reply(f"upstream exploded (key {JUDGE_KEY})", status=500, headers={"retry-after-ms": "1"})
        return planned(prompt, call)

    with scripted_judge(script) as judge:
        evaluation = evaluation_create(owner=alice, spec=spec_for(evalset, judge.base_url, max_retries=1))
        failed = run(evaluation)
        assert failed.status == "failed" and failed.judge_failures == 4 and failed.judgments_done == 16
        assert failed.error.startswith("4 judge calls failed: the judge answered HTTP 500 (after 2 attempts)")
        assert judge.calls == 16 + 4 * 2
        stored = Judgment.objects.filter(item__evaluation=failed).exclude(error="")
        assert stored.count() == 4 and all("upstream exploded" in row.error for row in stored)
        # The partial report leaves the unjudged math questions unparsed.
        assert failed.report["categories"]["math"]["n"] == 2 and failed.report["unparsed"] == 3
        for text in [failed.error, *stored.values_list("error", flat=True), caplog.text]:
            assert JUDGE_KEY not in text

        state["broken"] = False
        before = judge.calls
        evaluation_resume(evaluation=failed)
        done = run(failed)
    assert done.status == "succeeded" and done.attempt == 2 and done.judge_failures == 0
    assert sorted(read_prompt(r.prompt) for r in judge.requests[before:]) == [
        ("m1", "ab"), ("m1", "ba"), ("m2", "ab"), ("m2", "ba")]
    assert Judgment.objects.filter(item__evaluation=done).count() == 20
    assert_report(done.report, EXPECTED_SCORE_REPORT)


def test_a_judge_slower_than_the_timeout_is_a_failed_call(alice, evalset) -> None:
    with scripted_judge(too_slow(3.0)) as judge:
        spec = spec_for(evalset, judge.base_url, sample_size=2, max_retries=0, request_timeout_s=1.0)
        done = run(evaluation_create(owner=alice, spec=spec))
    assert done.status == "failed" and done.judge_failures == 4
    assert "did not answer within the 1 s timeout" in done.error


def test_reward_model_scores_every_answer(alice, evalset, roots, tiny_bloom) -> None:
    import torch

    from training_jobs.reward import build_reward_model, save_reward_model, score
    from webapp.registry.services import artifact_register

    folder = roots.artifacts / "reward"
    model = build_reward_model(tiny_bloom)
    torch.manual_seed(0)
    torch.nn.init.normal_(model.v_head.weight, std=1.0)  # a fresh head scores 0 everywhere
    from transformers import AutoTokenizer

    save_reward_model(model, AutoTokenizer.from_pretrained(tiny_bloom), folder, prompt_template="{prompt}", max_length=64)
    artifact = artifact_register(owner=alice, name="rm", architecture="BloomForCausalLM", kind="reward", folder=folder)
    with scripted_judge(planned_script("score")) as judge:
        done = run(evaluation_create(owner=alice, spec=spec_for(evalset, judge.base_url, reward_model=artifact)))
    assert done.status == "succeeded", done.error
    items = list(done.items.order_by("position"))
    expected = score(folder, [i.question for i in items], [i.answer_a for i in items])
    assert [i.reward_a for i in items] == pytest.approx(expected, abs=1e-5)
    assert all(i.reward_b is not None for i in items) and len({i.reward_a for i in items}) > 1
