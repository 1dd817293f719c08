"""evaluation_create's checks (all problems at once, nothing half-stored),
what it stores, the lifecycle services and the secrets helper."""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import override_settings
from django.utils import timezone

from tests.evaluations.conftest import (
    JUDGE_KEY, QUESTIONS, answers_jsonl, answers_upload, eval_rows, local_deployment, spec_for,
)
from webapp.core.errors import Conflict
from webapp.evaluations.judging.prompts import default_templates
from webapp.evaluations.models import EvalItem, Evaluation, Judgment
from webapp.evaluations.services import (
    EvaluationInvalid, evaluation_cancel, evaluation_create, evaluation_delete, evaluation_resume, evaluation_sweep_stale,
)
from webapp.lib.config import ConfigError, load_config
from webapp.lib.secrets import SecretUnreadable, decrypt, encrypt

pytestmark = pytest.mark.django_db
JUDGE = "http://127.0.0.1:9/v1"  # never called here
QIDS = [qid for qid, _ in QUESTIONS]


def invalid(owner, spec) -> dict[str, str]:
    with pytest.raises(EvaluationInvalid) as caught:
        evaluation_create(owner=owner, spec=spec)
    assert not Evaluation.objects.exists() and not EvalItem.objects.exists()
    return caught.value.errors


def test_create_stores_items_answers_encrypted_key_and_enqueues_on_commit(
    alice, evalset, django_capture_on_commit_callbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        evaluation = evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE, mode="verdict", language="zh"))
    assert len(callbacks) == 1  # run_evaluation.delay, sent after commit
    evaluation.refresh_from_db()
    assert (evaluation.status, evaluation.items_total, evaluation.judgments_total, evaluation.answers_done) == ("queued", 10, 20, 20)
    assert (evaluation.a_source, evaluation.a_label, evaluation.b_label) == ("answers", "model-a.jsonl", "model-b.jsonl")
    assert evaluation.templates == default_templates("verdict", "zh")
    assert JUDGE_KEY not in evaluation.judge_api_key_encrypted and decrypt(evaluation.judge_api_key_encrypted) == JUDGE_KEY
    items = list(evaluation.items.order_by("position"))
    assert [i.question_id for i in items] == QIDS
    assert [i.category for i in items] == ["general"] * 6 + ["coding"] * 2 + ["math"] * 2
    assert items[0].answer_a == "ANSWER-A for g1" and items[0].answer_b == "ANSWER-B for g1"
    assert items[0].reference == "reference g1" and not Judgment.objects.exists()


def test_sample_is_stratified_and_seeded(alice, make_eval_dataset) -> None:
    rows = eval_rows([(f"q{i:03d}", "math" if i % 10 == 0 else "code" if i % 10 == 1 else "open qa") for i in range(100)])
    dataset = make_eval_dataset(alice, rows)
    all_ids = [r["id"] for r in rows]

    def sampled(seed: int) -> list[str]:
        spec = spec_for(dataset, JUDGE, sample_size=20, seed=seed, a_answers=answers_upload("a", all_ids),
                        b_answers=answers_upload("b", all_ids))
        return list(evaluation_create(owner=alice, spec=spec).items.order_by("position").values_list("question_id", flat=True))

    first, again, other = sampled(1), sampled(1), sampled(2)
    assert len(first) == 20 and first == again and first != other
    assert first == sorted(first)  # the dataset's order
    categories = Counter("math" if int(q[1:]) % 10 == 0 else "coding" if int(q[1:]) % 10 == 1 else "general" for q in first)
    assert categories == {"general": 16, "math": 2, "coding": 2}


def test_an_answers_file_needs_answers_only_for_the_sample(alice, make_eval_dataset) -> None:
    rows = eval_rows([(f"q{i:02d}", "open qa") for i in range(10)])
    dataset = make_eval_dataset(alice, rows)
    probe = evaluation_create(owner=alice, spec=spec_for(dataset, JUDGE, sample_size=3, seed=5, a_answers=answers_upload(
        "a", [r["id"] for r in rows]), b_answers=answers_upload("b", [r["id"] for r in rows])))
    chosen = list(probe.items.values_list("question_id", flat=True))
    spec = spec_for(dataset, JUDGE, sample_size=3, seed=5, a_answers=answers_upload("a", chosen),
                    b_answers=answers_upload("b", chosen))
    assert evaluation_create(owner=alice, spec=spec).items_total == 3


def test_every_problem_is_reported_at_once_and_nothing_is_stored(alice, evalset) -> None:
    spec = spec_for(
        evalset, "ftp://judge.example/v1", judge_api_key="  ", judge_model="", concurrency=0, sample_size=0, max_retries=11,
        request_timeout_s=0.5, templates={"math": "Compare {answer_1} with {answer_2}: {unknown}"},
        generation_params={"temprature": 1},
    )
    errors = invalid(alice, spec)
    assert set(errors) >= {"judge_base_url", "judge_api_key", "judge_model", "concurrency", "sample_size", "max_retries",
                           "request_timeout_s", "templates.math", "generation_params.temprature"}
    assert "http" in errors["judge_base_url"] and "64" in errors["concurrency"]


def test_bad_answers_file_names_the_file_line_and_field(alice, evalset) -> None:
    lines = answers_jsonl("a", QIDS).decode().splitlines()
    lines[2] = '{"id": "g3", "answer": 7}'
    lines[4] = "{not json"
    upload = SimpleUploadedFile("answers-a.jsonl", ("\n".join(lines) + "\n").encode())
    errors = invalid(alice, spec_for(evalset, JUDGE, a_answers=upload))
    assert "answers-a.jsonl line 3: field 'answer' must be a string" in errors["a_answers"]
    assert "answers-a.jsonl line 5: not valid JSON" in errors["a_answers"]
    assert "b_answers" not in errors


def test_unknown_and_missing_ids_are_listed(alice, evalset) -> None:
    unknown = answers_upload("a", [*QIDS, "zz1", "zz2"], name="extra.jsonl")
    missing = answers_upload("b", QIDS[:7], name="short.jsonl")
    errors = invalid(alice, spec_for(evalset, JUDGE, a_answers=unknown, b_answers=missing))
    assert errors["a_answers"] == "extra.jsonl: 2 ids are not in the dataset: zz1, zz2"
    assert errors["b_answers"] == "short.jsonl: no answer for 3 of the 10 sampled questions: ids c2, m1, m2"


def test_a_candidate_needs_exactly_one_source(alice, evalset, tiny_bloom) -> None:
    mine = local_deployment(alice, "mine", tiny_bloom)
    errors = invalid(alice, spec_for(evalset, JUDGE, a_answers=None))
    assert "one of them" in errors["a_deployment"]
    errors = invalid(alice, spec_for(evalset, JUDGE, a_deployment=mine))
    assert "one of them" in errors["a_deployment"]


def test_other_users_objects_read_as_missing(alice, bob, make_eval_dataset, tiny_bloom) -> None:
    bobs_set = make_eval_dataset(bob, name="bobs")
    bobs_private = local_deployment(bob, "bobs-model", tiny_bloom)
    bobs_shared = local_deployment(bob, "bobs-shared", tiny_bloom, shared=True)
    errors = invalid(alice, spec_for(bobs_set, JUDGE))
    assert errors["dataset"] == f"no dataset with id {bobs_set.pk}"
    mine = make_eval_dataset(alice)
    errors = invalid(alice, spec_for(mine, JUDGE, a_answers=None, a_deployment=bobs_private))
    assert errors == {"a_deployment": f"no deployment with id {bobs_private.pk}"}
    # A shared deployment may be called by everyone (as through /v1).
    evaluation = evaluation_create(owner=alice, spec=spec_for(mine, JUDGE, a_answers=None, a_deployment=bobs_shared))
    assert (evaluation.a_source, evaluation.a_label, evaluation.answers_done) == ("deployment", "bobs-shared", 10)
    assert evaluation.items.filter(answer_a__isnull=True).count() == 10


def test_only_a_ready_eval_set_is_accepted(alice, make_eval_dataset) -> None:
    instructions = make_eval_dataset(alice, [{"instruction": "hi", "output": "hello"}], kind="instruction", name="sft")
    errors = invalid(alice, spec_for(instructions, JUDGE))
    assert errors["dataset"] == f"{instructions} is not an eval set of questions (its kind is instruction)"


def test_generation_params_are_checked_over_the_deployments_defaults(alice, evalset, tiny_bloom) -> None:
    deployment = local_deployment(alice, "tiny", tiny_bloom)
    errors = invalid(alice, spec_for(evalset, JUDGE, a_answers=None, a_deployment=deployment, generation_params={"temperature": 5}))
    assert "'temperature' must be between 0 and 2" in errors["generation_params.temperature"]


def test_cancel_resume_and_delete(alice, evalset, django_capture_on_commit_callbacks) -> None:
    evaluation = evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE))
    with pytest.raises(Conflict):
        evaluation_resume(evaluation=evaluation)  # queued
    assert evaluation_cancel(evaluation=evaluation).status == "cancelled"
    assert evaluation.finished_at is not None
    with pytest.raises(Conflict, match="already cancelled"):
        evaluation_cancel(evaluation=evaluation)
    with django_capture_on_commit_callbacks() as callbacks:
        resumed = evaluation_resume(evaluation=evaluation)
    assert (resumed.status, resumed.finished_at, len(callbacks)) == ("queued", None, 1)
    Evaluation.objects.filter(pk=evaluation.pk).update(status="succeeded")
    evaluation.refresh_from_db()
    with pytest.raises(Conflict):
        evaluation_resume(evaluation=evaluation)
    evaluation_delete(evaluation=evaluation)
    assert not Evaluation.objects.exists() and not EvalItem.objects.exists()


def test_sweep_requeues_only_silent_running_evaluations(alice, evalset, django_capture_on_commit_callbacks) -> None:
    silent = evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE))
    beating = evaluation_create(owner=alice, spec=spec_for(evalset, JUDGE))
    now = timezone.now()
    Evaluation.objects.filter(pk=silent.pk).update(status="running", heartbeat_at=now - timedelta(seconds=120), attempt=1)
    Evaluation.objects.filter(pk=beating.pk).update(status="running", heartbeat_at=now, attempt=1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert evaluation_sweep_stale(silent_for=timedelta(seconds=60)) == [silent.pk]
    assert len(callbacks) == 1
    assert Evaluation.objects.get(pk=silent.pk).status == "queued" and Evaluation.objects.get(pk=beating.pk).status == "running"


# ---------------------------------------------------------------- secrets


def test_secrets_round_trip_and_refuse_foreign_tokens() -> None:
    token = encrypt(JUDGE_KEY)
    assert token != encrypt(JUDGE_KEY) and JUDGE_KEY not in token and decrypt(token) == JUDGE_KEY
    with override_settings(SECRET_KEY="another-secret-key-of-at-least-32-characters"):
        with pytest.raises(SecretUnreadable) as caught:
            decrypt(token)
    assert token not in str(caught.value)
    with pytest.raises(SecretUnreadable):
        decrypt(token[:-4] + "AAAA")


def test_field_encryption_keys_rotate_and_are_validated(tmp_path) -> None:
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(FIELD_ENCRYPTION_KEYS=(old,)):
        token = encrypt("k")
    with override_settings(FIELD_ENCRYPTION_KEYS=(new, old)):
        assert decrypt(token) == "k"  # the old key still decrypts
        assert Fernet(new.encode()).decrypt(encrypt("k").encode()) == b"k"  # the first one encrypts
    config = load_config({"VAR_DIR": str(tmp_path), "FIELD_ENCRYPTION_KEY": f"{new}, {old}"}, tmp_path)
    assert config.field_encryption_keys == (new, old)
    with pytest.raises(ConfigError, match="FIELD_ENCRYPTION_KEY: key 1 is not a Fernet key"):
        load_config({"VAR_DIR": str(tmp_path), "FIELD_ENCRYPTION_KEY": "short"}, tmp_path)
