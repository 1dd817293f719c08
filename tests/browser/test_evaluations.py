"""An evaluation run in the browser from start to report: the reviewer
uploads two answers files through the form, starts the evaluation, watches
the page follow a real Celery worker (judging through the real HTTP client
against the scripted judge) to "Succeeded" without a reload, reads the
per-category table and opens a question's judgments."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_smoke import log_in
from tests.evaluations.conftest import (  # noqa: F401 (fixtures)
    JUDGE_KEY, QUESTIONS, Roots, answers_jsonl, make_eval_dataset, planned_script,
)
from tests.evaluations.scripted_judge import scripted_judge
from tests.support import celery_worker
from webapp.evaluations.judging.prompts import default_templates
from webapp.evaluations.models import Evaluation

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-Secret-123"
QIDS = [qid for qid, _ in QUESTIONS]


@pytest.fixture
def roots(settings) -> Roots:
    """The session's own MEDIA_ROOT and ARTIFACTS_ROOT: the web server under
    test reads the eval set's files from there (a per-test folder would be
    invisible to it)."""
    media, artifacts = Path(settings.MEDIA_ROOT), Path(settings.ARTIFACTS_ROOT)
    for path in (media, artifacts):
        path.mkdir(parents=True, exist_ok=True)
    return Roots(media=media, artifacts=artifacts)


def cells(page, category: str) -> list[str]:
    return [text.strip() for text in page.locator(f'#report-table tr[data-category="{category}"] td').all_inner_texts()]


def test_run_an_evaluation_in_the_browser_and_read_its_report(page, make_user, make_eval_dataset, tmp_path) -> None:
    user = make_user("reviewer", password=PASSWORD)
    # Dataset processing pushes with async_to_sync, which refuses to run in
    # the thread of Playwright's event loop: set up in another thread.
    with ThreadPoolExecutor(1) as pool:
        dataset = pool.submit(make_eval_dataset, user).result()
    files = {}
    for side in ("a", "b"):
        files[side] = tmp_path / f"model-{side}.jsonl"
        files[side].write_bytes(answers_jsonl(side, QIDS))

    # 20 judge calls one at a time, 0.4 s each: the run takes seconds, long
    # enough for several of the page's 2 s polls to land mid-run.
    with scripted_judge(planned_script("score"), latency_s=0.4) as judge:
        log_in(page, "reviewer", PASSWORD, next_url="/evaluations/new/")
        expect(page).to_have_url("/evaluations/new/")
        general = page.locator("#id_template_general")
        expect(general).to_have_value(default_templates("score", "zh")["general"])
        page.fill("#id_name", "files A vs B")
        page.select_option("#id_dataset", str(dataset.pk))
        page.set_input_files("#id_a_answers", str(files["a"]))
        page.set_input_files("#id_b_answers", str(files["b"]))
        # The generation parameters only matter for deployments: hidden here.
        expect(page.locator("#generation-fields")).to_be_hidden()
        page.fill("#id_judge_base_url", judge.base_url)
        page.fill("#id_judge_model", "scripted-judge")
        page.fill("#id_judge_api_key", JUDGE_KEY)
        # The prompts follow the language (none was edited).
        page.select_option("#id_language", "en")
        expect(general).to_have_value(default_templates("score", "en")["general"])
        page.fill("#id_concurrency", "1")
        page.fill("#id_max_retries", "1")

        with celery_worker(log_dir=tmp_path / "worker"):
            page.get_by_role("button", name="Start evaluation").click()
            expect(page).to_have_url(re.compile(r"/evaluations/\d+/$"))
            evaluation = Evaluation.objects.get(owner=user)
            page.evaluate("window.__sameDocument = true")
            progress = page.locator("#evaluation-progress")
            # Every value the bar takes: the page is polled, never reloaded.
            progress.evaluate(
                "el => { window.seenProgress = []; new MutationObserver(() => window.seenProgress.push("
                "Number(el.getAttribute('aria-valuenow')))).observe(el, {attributes: true}); }"
            )
            # An upper bound for a loaded machine; a quiet one takes ~10 s.
            expect(page.locator("#evaluation-status")).to_have_text("Succeeded", timeout=180_000)

        assert page.evaluate("window.__sameDocument") is True
        expect(progress).to_have_attribute("aria-valuenow", "20")
        seen = page.evaluate("window.seenProgress")
        assert any(0 < value < 20 for value in seen), f"the bar never moved mid-run: {seen}"
        expect(page.locator("#stat-judgments")).to_have_text("20 / 20")
        expect(page.locator("#cancel-button")).to_be_hidden()

        # The report arrived in place: conftest's hand-computed numbers.
        expect(page.locator('#report-table tr[data-category="general"]')).to_be_visible()
        assert cells(page, "general") == ["general", "6", "6.67", "5.67", "3", "2", "1", "0", "1 (17%)"]
        assert cells(page, "coding") == ["coding", "2", "8.00", "3.00", "1", "0", "0", "1", "0 (0%)"]
        assert cells(page, "math") == ["math", "2", "5.50", "4.50", "1", "0", "1", "0", "0 (0%)"]
        assert cells(page, "micro")[2:4] == ["6.70", "4.90"]
        expect(page.locator("#chart-means svg rect.bar-a")).to_have_count(3)
        expect(page.locator("#chart-outcomes svg rect.seg-unparsed")).to_have_count(1)

        # Open the question whose A-first judgment was unreadable.
        page.select_option("#filter-outcome", "unparsed")
        page.get_by_role("button", name="Filter").click()
        question = page.locator('details.question[data-question="c2"]')
        expect(page.locator("details.question")).to_have_count(1)
        question.locator(":scope > summary").click()
        ab, ba = question.locator('[data-judgment="ab"]'), question.locator('[data-judgment="ba"]')
        expect(ab).to_contain_text("unparsed")
        expect(ab.locator(".judge-raw")).to_have_text("I cannot decide between these answers.")
        expect(ba).to_contain_text("A 6.0 · B 4.0")
        expect(question.locator('[data-answer="a"]')).to_contain_text("ANSWER-A for c2")
        assert page.evaluate("window.__sameDocument") is True
        assert "outcome=unparsed" in page.url

        # The key reached the judge, and no page shows it.
        assert {r.authorization for r in judge.requests} == {f"Bearer {JUDGE_KEY}"}
        assert JUDGE_KEY not in page.content()
        evaluation.refresh_from_db()
        assert evaluation.status == "succeeded" and evaluation.judgments_done == 20
