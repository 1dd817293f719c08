"""Writes for evaluations: create (check everything, sample, store, enqueue),
run, cancel, resume, delete and the stale sweep.

Lifecycle (each arrow one conditional UPDATE, so a duplicate task delivery,
a cancel racing a claim, or the sweep racing a late heartbeat change a row at
most once):

    queued ──claim──► running ──everything judged──► succeeded
      │                  ├──cancel──► cancelled ──resume──► queued
      └──cancel──► cancelled  ├──failed calls / answers, error──► failed ──resume──► queued
                              └──no heartbeat (sweep)──► queued (the next attempt resumes)

A run only does what has no row yet (answers on the items, one Judgment per
item and order), so a requeued or resumed evaluation picks up where it was.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.db import transaction
from django.utils import timezone

from inference.base import InferenceError
from inference.params import sampling_params
from webapp.chat.services import PARAM_FIELDS
from webapp.core.errors import Conflict, ValidationFailed
from webapp.datasets.models import Dataset, DatasetKind, DatasetStatus
from webapp.datasets.selectors import MAX_PAGE, dataset_rows
from webapp.datasets.services import safe_display_name
from webapp.deployments.models import BackendKind, Deployment
from webapp.deployments.selectors import servable_deployments
from webapp.evaluations.judging.prompts import TemplateError, check_templates, default_templates
from webapp.evaluations.judging.sampling import stratified_sample
from webapp.evaluations.models import (
    CandidateSource, EvalItem, Evaluation, EvaluationStatus, JudgeLanguage, JudgeMode,
)
from webapp.lib.ownership import visible_to
from webapp.lib.secrets import encrypt
from webapp.registry.models import ArtifactKind, ModelArtifact

MAX_CONCURRENCY = 64
MAX_RETRIES = 10
MAX_TIMEOUT_S = 600.0
# One evaluation stores its items in one transaction; larger eval sets are
# sampled (sample_size) rather than judged whole.
MAX_QUESTIONS = 20_000
MAX_ANSWERS_BYTES = 64 * 1024 * 1024
MAX_KEY_CHARS = 500
# Line problems listed in one message before "… and N more".
MAX_LISTED = 5
CANDIDATES = ("a", "b")


class EvaluationInvalid(ValidationFailed):
    """Every problem found by `check_evaluation`, as {field: message}. Fields
    are EvaluationSpec's names; `templates.<category>` and
    `generation_params.<name>` point inside those. The API answers 400 with
    the first one (message and param); the page shows them all."""

    def __init__(self, errors: dict[str, str]) -> None:
        first_field, first_message = next(iter(errors.items()))
        super().__init__(first_message, field=first_field)
        self.errors = errors


@dataclass
class EvaluationSpec:
    """What a user asks for. Per candidate (`a_…`, `b_…`): a deployment that
    generates answers, or an answers file (JSONL `{"id", "answer"}`); `source`
    None means "whichever of the two is given". `templates` None: the
    defaults for mode and language; a partial dict is completed with them."""

    name: str
    dataset: Dataset | None
    judge_base_url: str
    judge_model: str
    judge_api_key: str
    a_source: str | None = None
    a_deployment: Deployment | None = None
    a_answers: File | None = None
    b_source: str | None = None
    b_deployment: Deployment | None = None
    b_answers: File | None = None
    generation_params: dict[str, Any] = field(default_factory=dict)
    mode: str = JudgeMode.SCORE_PAIR
    language: str = JudgeLanguage.ZH
    templates: dict[str, str] | None = None
    concurrency: int = 8
    max_retries: int = 5
    request_timeout_s: float = 120.0
    sample_size: int | None = None
    seed: int = 0
    reward_model: ModelArtifact | None = None
    price_prompt_per_1k: float = 0.0
    price_completion_per_1k: float = 0.0


@dataclass
class Candidate:
    source: str
    label: str
    deployment: Deployment | None = None
    answers: dict[str, str] | None = None  # question id → answer, from the file


@dataclass
class EvaluationPlan:
    """A checked spec: what evaluation_create stores."""

    name: str
    dataset: Dataset
    candidates: dict[str, Candidate]
    sample: list[dict[str, Any]]  # canonical rows, `id` made a non-empty string
    templates: dict[str, str]
    generation_params: dict[str, Any]


# ---------------------------------------------------------------- checks


def question_id(row: dict[str, Any], line: int) -> str:
    """A row's id as text; rows without one (BELLE's file has none) are
    known by their 1-based row number in the dataset, which is also what an
    answers file must use for them."""
    raw = row.get("id")
    return str(line) if raw is None or (isinstance(raw, str) and not raw.strip()) else str(raw).strip()


def eval_rows(dataset: Dataset) -> list[dict[str, Any]]:
    """Every canonical row of an eval dataset, with `id` set (question_id)."""
    rows: list[dict[str, Any]] = []
    offset = 0
    while offset < dataset.rows:
        page = dataset_rows(dataset=dataset, offset=offset, limit=MAX_PAGE)
        if not page:
            break
        for index, row in enumerate(page, start=offset + 1):
            rows.append({**row, "id": question_id(row, index), "category": str(row.get("category") or "general"),
                         "reference": str(row.get("reference") or "")})
        offset += len(page)
    return rows


def _check_dataset(owner: AbstractBaseUser, dataset: Dataset | None, errors: dict[str, str]) -> list[dict[str, Any]] | None:
    if dataset is None:
        errors["dataset"] = "choose an eval dataset"
        return None
    if not visible_to(Dataset.objects.filter(pk=dataset.pk), owner).exists():
        errors["dataset"] = f"no dataset with id {dataset.pk}"
        return None
    if dataset.kind != DatasetKind.EVAL:
        errors["dataset"] = f"{dataset} is not an eval set of questions (its kind is {dataset.kind})"
        return None
    if dataset.status != DatasetStatus.READY:
        errors["dataset"] = f"dataset {dataset} is {dataset.status}, not ready"
        return None
    rows = eval_rows(dataset)
    if not rows:
        errors["dataset"] = f"dataset {dataset} has no questions"
        return None
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=1):
        if row["id"] in seen:
            # Answers files and results are keyed by id: it must be unique.
            errors["dataset"] = f"dataset {dataset} has id {row['id']!r} twice (rows {seen[row['id']]} and {line})"
            return None
        seen[row["id"]] = line
    return rows


def _listed(items: list[str], total: int | None = None) -> str:
    total = len(items) if total is None else total
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" and {total - MAX_LISTED} more" if total > MAX_LISTED else "")


def parse_answers(upload: File, *, valid_ids: set[str]) -> tuple[dict[str, str], list[str]]:
    """An answers file: JSON Lines, one `{"id", "answer"}` per line (blank
    lines skipped, a UTF-8 BOM allowed). Returns (answers by id, problems);
    each problem names the file, the line and the field."""
    name = safe_display_name(getattr(upload, "name", "") or "answers.jsonl")
    size = getattr(upload, "size", None)
    if size is not None and size > MAX_ANSWERS_BYTES:
        return {}, [f"{name} is {size} bytes; the limit is {MAX_ANSWERS_BYTES}"]
    upload.seek(0)
    data = upload.read()
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX_ANSWERS_BYTES:
        return {}, [f"{name} is over the {MAX_ANSWERS_BYTES}-byte limit"]
    answers: dict[str, str] = {}
    first_line: dict[str, int] = {}
    problems: list[str] = []
    unknown: list[str] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{name} line {number}: not UTF-8 text")
            continue
        try:
            row = json.loads(text)
        except ValueError as error:
            problems.append(f"{name} line {number}: not valid JSON ({error.msg})")
            continue
        if not isinstance(row, dict):
            problems.append(f'{name} line {number}: expected an object {{"id", "answer"}}')
            continue
        raw_id = row.get("id")
        if raw_id is None or isinstance(raw_id, (bool, dict, list)) or not str(raw_id).strip():
            problems.append(f"{name} line {number}: field 'id' is missing or empty")
            continue
        answer = row.get("answer")
        if not isinstance(answer, str):
            problems.append(f"{name} line {number}: field 'answer' must be a string")
            continue
        qid = str(raw_id).strip()
        if qid in first_line:
            problems.append(f"{name} line {number}: field 'id' {qid!r} repeats line {first_line[qid]}")
            continue
        first_line[qid] = number
        if qid not in valid_ids:
            unknown.append(qid)
            continue
        answers[qid] = answer
    if problems:
        head = "; ".join(problems[:MAX_LISTED])
        more = f" (and {len(problems) - MAX_LISTED} more problems)" if len(problems) > MAX_LISTED else ""
        return answers, [head + more]
    if unknown:
        return answers, [f"{name}: {len(unknown)} ids are not in the dataset: {_listed(unknown)}"]
    if not first_line:
        return answers, [f"{name} holds no answers"]
    return answers, []


def _check_candidate(
    side: str, spec: EvaluationSpec, owner: AbstractBaseUser, valid_ids: set[str] | None, errors: dict[str, str]
) -> Candidate | None:
    deployment: Deployment | None = getattr(spec, f"{side}_deployment")
    upload: File | None = getattr(spec, f"{side}_answers")
    source = getattr(spec, f"{side}_source")
    title = side.upper()
    if source is None:
        if (deployment is None) == (upload is None):
            errors[f"{side}_deployment"] = f"candidate {title}: give a deployment or an answers file (one of them)"
            return None
        source = CandidateSource.DEPLOYMENT if deployment is not None else CandidateSource.ANSWERS
    if source == CandidateSource.DEPLOYMENT:
        if deployment is None:
            errors[f"{side}_deployment"] = f"candidate {title}: choose a deployment"
            return None
        # The deployments the user's API keys may call (own or shared, enabled):
        # answers are generated as /v1 would generate them for this user.
        if not servable_deployments(user=owner).filter(pk=deployment.pk).exists():
            errors[f"{side}_deployment"] = f"no deployment with id {deployment.pk}"
            return None
        if deployment.kind == BackendKind.EMBEDDING:
            errors[f"{side}_deployment"] = f"{deployment.name} is an embedding model and does not generate answers"
            return None
        return Candidate(source=source, label=deployment.name[:100], deployment=deployment)
    if source != CandidateSource.ANSWERS:
        errors[f"{side}_source"] = f"candidate {title}: source must be {' or '.join(CandidateSource.values)}"
        return None
    if upload is None:
        errors[f"{side}_answers"] = f"candidate {title}: choose an answers file"
        return None
    if valid_ids is None:  # the dataset is wrong: its ids are unknown
        return None
    answers, problems = parse_answers(upload, valid_ids=valid_ids)
    if problems:
        errors[f"{side}_answers"] = problems[0]
        return None
    label = safe_display_name(getattr(upload, "name", "") or f"answers {title}")[:100]
    return Candidate(source=source, label=label, answers=answers)


def _check_generation(spec: EvaluationSpec, candidates: dict[str, Candidate], errors: dict[str, str]) -> dict[str, Any]:
    params = spec.generation_params or {}
    if not isinstance(params, dict):
        errors["generation_params"] = "generation parameters must be an object"
        return {}
    for name in params:
        if name not in PARAM_FIELDS:
            errors[f"generation_params.{name}"] = f"unknown parameter '{name}' (known: {', '.join(PARAM_FIELDS)})"
            return {}
    # The same reading as /v1 and the chat console: over each deployment's defaults.
    for candidate in candidates.values():
        if candidate.deployment is None:
            continue
        try:
            sampling_params(params, candidate.deployment.default_params)
        except InferenceError as error:
            errors[f"generation_params.{error.param}" if error.param else "generation_params"] = error.message
            break
    return dict(params)


def _check_judge(spec: EvaluationSpec, errors: dict[str, str]) -> None:
    url = (spec.judge_base_url or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors["judge_base_url"] = "the judge's base URL must be http:// or https:// with a host, e.g. https://api.openai.com/v1"
    model = (spec.judge_model or "").strip()
    if not model or len(model) > 100:
        errors["judge_model"] = "name the judge model (at most 100 characters), e.g. gpt-4"
    key = spec.judge_api_key or ""
    if not key.strip():
        errors["judge_api_key"] = "the judge API key is required (it is stored encrypted and never shown again)"
    elif len(key) > MAX_KEY_CHARS or any(ch.isspace() for ch in key.strip()):
        # Never echo the key back, not even in part.
        errors["judge_api_key"] = f"the judge API key must be one token of at most {MAX_KEY_CHARS} characters"


def _check_templates(spec: EvaluationSpec, errors: dict[str, str]) -> dict[str, str]:
    if spec.mode not in JudgeMode.values or spec.language not in JudgeLanguage.values:
        return {}
    defaults = default_templates(spec.mode, spec.language)
    given = spec.templates
    if given is None:
        return defaults
    if not isinstance(given, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in given.items()):
        errors["templates"] = "templates must be an object of category → prompt text"
        return {}
    try:
        return check_templates({**defaults, **given})
    except TemplateError as error:
        errors[f"templates.{error.category}"] = error.message
        return {}


def _check_numbers(spec: EvaluationSpec, errors: dict[str, str]) -> None:
    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value

    if not whole(spec.concurrency) or not 1 <= spec.concurrency <= MAX_CONCURRENCY:
        errors["concurrency"] = f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}"
    if not whole(spec.max_retries) or not 0 <= spec.max_retries <= MAX_RETRIES:
        errors["max_retries"] = f"max_retries must be a whole number from 0 to {MAX_RETRIES}"
    if not number(spec.request_timeout_s) or not 1 <= spec.request_timeout_s <= MAX_TIMEOUT_S:
        errors["request_timeout_s"] = f"request_timeout_s must be between 1 and {MAX_TIMEOUT_S:g} seconds"
    if spec.sample_size is not None and (not whole(spec.sample_size) or spec.sample_size < 1):
        errors["sample_size"] = "sample_size must be at least 1 (or empty: every question)"
    if not whole(spec.seed):
        errors["seed"] = "seed must be a whole number"
    for name in ("price_prompt_per_1k", "price_completion_per_1k"):
        value = getattr(spec, name)
        if not number(value) or value < 0:
            errors[name] = f"{name} must be a number ≥ 0"
    if spec.mode not in JudgeMode.values:
        errors["mode"] = f"mode must be one of {', '.join(JudgeMode.values)}"
    if spec.language not in JudgeLanguage.values:
        errors["language"] = f"language must be one of {', '.join(JudgeLanguage.values)}"


def _check_reward_model(spec: EvaluationSpec, owner: AbstractBaseUser, errors: dict[str, str]) -> None:
    artifact = spec.reward_model
    if artifact is None:
        return
    if not visible_to(ModelArtifact.objects.filter(pk=artifact.pk), owner).exists():
        errors["reward_model"] = f"no model with id {artifact.pk}"
    elif artifact.kind != ArtifactKind.REWARD:
        errors["reward_model"] = f"{artifact} is a {artifact.kind} model, not a reward model"


def check_evaluation(*, owner: AbstractBaseUser, spec: EvaluationSpec) -> EvaluationPlan:
    """Every rule, all problems at once (EvaluationInvalid); nothing is
    written. Returns the sample and the parsed answers to store."""
    errors: dict[str, str] = {}
    name = (spec.name or "").strip()
    if len(name) > 100:
        errors["name"] = "names are at most 100 characters"
    rows = _check_dataset(owner, spec.dataset, errors)
    _check_numbers(spec, errors)
    sample: list[dict[str, Any]] = []
    if rows is not None and "sample_size" not in errors and "seed" not in errors:
        sample = stratified_sample(rows, size=spec.sample_size, seed=spec.seed)
        if len(sample) > MAX_QUESTIONS:
            errors["sample_size"] = f"{len(sample)} questions is over the limit of {MAX_QUESTIONS}: set a sample size"
    valid_ids = {row["id"] for row in rows} if rows is not None else None
    candidates: dict[str, Candidate] = {}
    for side in CANDIDATES:
        candidate = _check_candidate(side, spec, owner, valid_ids, errors)
        if candidate is None:
            continue
        if candidate.answers is not None and sample:
            missing = [row["id"] for row in sample if row["id"] not in candidate.answers]
            if missing:
                errors[f"{side}_answers"] = (
                    f"{candidate.label}: no answer for {len(missing)} of the {len(sample)} sampled questions: "
                    f"ids {_listed(missing)}"
                )
                continue
        candidates[side] = candidate
    generation = _check_generation(spec, candidates, errors)
    _check_judge(spec, errors)
    templates = _check_templates(spec, errors)
    _check_reward_model(spec, owner, errors)
    if errors:
        raise EvaluationInvalid(errors)
    assert spec.dataset is not None
    if not name:
        name = f"{candidates['a'].label} vs {candidates['b'].label}"[:100]
    return EvaluationPlan(name=name, dataset=spec.dataset, candidates=candidates, sample=sample, templates=templates,
                          generation_params=generation)


# ---------------------------------------------------------------- create


def enqueue_evaluation(evaluation: Evaluation) -> None:
    """Send `evaluations.run` (routed to the eval queue) after commit."""
    from webapp.evaluations.tasks import run_evaluation

    pk = evaluation.pk
    transaction.on_commit(lambda: run_evaluation.delay(pk))


def evaluation_create(*, owner: AbstractBaseUser, spec: EvaluationSpec) -> Evaluation:
    """Check everything, then store the evaluation, its sampled items and
    the uploaded answers in one transaction (nothing half-stored), with the
    judge key encrypted; the run is enqueued on commit."""
    plan = check_evaluation(owner=owner, spec=spec)
    a, b = plan.candidates["a"], plan.candidates["b"]
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            owner=owner, name=plan.name, dataset=plan.dataset,
            a_source=a.source, a_deployment=a.deployment, a_label=a.label,
            b_source=b.source, b_deployment=b.deployment, b_label=b.label,
            generation_params=plan.generation_params,
            judge_base_url=spec.judge_base_url.strip(), judge_model=spec.judge_model.strip(),
            judge_api_key_encrypted=encrypt(spec.judge_api_key.strip()),
            mode=spec.mode, language=spec.language, templates=plan.templates,
            concurrency=spec.concurrency, max_retries=spec.max_retries, request_timeout_s=float(spec.request_timeout_s),
            sample_size=spec.sample_size, seed=spec.seed, reward_model=spec.reward_model,
            price_prompt_per_1k=float(spec.price_prompt_per_1k), price_completion_per_1k=float(spec.price_completion_per_1k),
            items_total=len(plan.sample), judgments_total=2 * len(plan.sample),
            answers_done=sum(len(plan.sample) for c in (a, b) if c.answers is not None),
        )
        EvalItem.objects.bulk_create(
            [
                EvalItem(
                    evaluation=evaluation, position=position, question_id=row["id"], question=str(row.get("question") or ""),
                    category=row["category"][:50], reference=row["reference"],
                    answer_a=a.answers[row["id"]] if a.answers is not None else None,
                    answer_b=b.answers[row["id"]] if b.answers is not None else None,
                )
                for position, row in enumerate(plan.sample)
            ],
            batch_size=500,
        )
        enqueue_evaluation(evaluation)
    return evaluation


# ---------------------------------------------------------------- lifecycle


def evaluation_run(*, evaluation_id: int, worker: str) -> Evaluation | None:
    """Run a queued evaluation to its end in this worker. Safe to call twice:
    only the caller whose claim moves it from queued to running does anything."""
    from webapp.evaluations.runner import claim, run_claimed

    evaluation = claim(evaluation_id=evaluation_id)
    if evaluation is None:
        return None
    run_claimed(evaluation, worker=worker)
    return Evaluation.objects.filter(pk=evaluation_id).first()


def evaluation_cancel(*, evaluation: Evaluation) -> Evaluation:
    """Queued or running → cancelled at once. A running runner checks its row
    every ~0.5 s (its progress write is conditional on `running`) and stops
    its calls; what it stored stays, and resume continues from there."""
    now = timezone.now()
    cancelled = Evaluation.objects.filter(
        pk=evaluation.pk, status__in=[EvaluationStatus.QUEUED, EvaluationStatus.RUNNING]
    ).update(status=EvaluationStatus.CANCELLED, finished_at=now)
    evaluation.refresh_from_db()
    if not cancelled:
        raise Conflict(f"the evaluation has already {evaluation.status}")
    return evaluation


def evaluation_resume(*, evaluation: Evaluation) -> Evaluation:
    """Failed or cancelled → queued. The next attempt does only what is
    missing: answers not generated yet, judge calls with no row or whose
    row holds a failed call (runner: outcome policy)."""
    with transaction.atomic():
        resumed = Evaluation.objects.filter(
            pk=evaluation.pk, status__in=[EvaluationStatus.FAILED, EvaluationStatus.CANCELLED]
        ).update(status=EvaluationStatus.QUEUED, error="", finished_at=None, phase="")
        evaluation.refresh_from_db()
        if not resumed:
            raise Conflict(f"only a failed or cancelled evaluation can be resumed; this one is {evaluation.status}")
        enqueue_evaluation(evaluation)
    return evaluation


def evaluation_delete(*, evaluation: Evaluation) -> None:
    """Delete with its items and judgments, in any state: a running one's
    runner finds its row gone at its next progress write (~0.5 s) and stops
    without storing anything more."""
    Evaluation.objects.filter(pk=evaluation.pk).delete()


def evaluation_sweep_stale(*, silent_for: timedelta) -> list[int]:
    """Running evaluations whose runner has not beaten for `silent_for` (its
    worker was killed) go back to the queue and are sent again; the next
    attempt resumes (only missing answers and judgments are done). Returns
    their ids. A live runner beats every ~0.5 s."""
    cutoff = timezone.now() - silent_for
    requeued = []
    for pk in Evaluation.objects.filter(status=EvaluationStatus.RUNNING, heartbeat_at__lt=cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            # Conditional: a runner that beats meanwhile keeps its row.
            if Evaluation.objects.filter(pk=pk, status=EvaluationStatus.RUNNING, heartbeat_at__lt=cutoff).update(
                status=EvaluationStatus.QUEUED, phase=""
            ):
                requeued.append(pk)
                enqueue_evaluation(Evaluation(pk=pk))
    return requeued
