"""A tiny SFT job submitted through the form in the browser, trained by a
real Celery worker; the job page follows it live to "Succeeded"."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import expect

from tests.browser.test_smoke import log_in
from tests.jobs.conftest import TINY_SFT, Roots, make_base, make_dataset  # noqa: F401 (fixtures)
from tests.support import celery_worker

pytestmark = pytest.mark.django_db(transaction=True)

STEPS = 300


@pytest.fixture
def roots(settings) -> Roots:
    """The session's own MEDIA_ROOT and ARTIFACTS_ROOT: the web server under test
    was started with them (a per-test folder would be invisible to it)."""
    media, artifacts = Path(settings.MEDIA_ROOT), Path(settings.ARTIFACTS_ROOT)
    shutil.rmtree(artifacts / "models" / "jobber-tiny", ignore_errors=True)
    for path in (media, artifacts):
        path.mkdir(parents=True, exist_ok=True)
    return Roots(media=media, artifacts=artifacts)


def test_submit_a_job_and_watch_it_succeed_live(page, make_user, make_base, make_dataset, tmp_path) -> None:
    user = make_user("jobber", password="pw-Secret-123")
    # Dataset processing pushes with async_to_sync, which refuses to run in
    # the thread of Playwright's event loop: set up in another thread.
    with ThreadPoolExecutor(1) as pool:
        base, data = pool.submit(make_base, user).result(), pool.submit(make_dataset, user).result()
    log_in(page, "jobber", "pw-Secret-123", next_url="/jobs/new/?stage=sft")
    expect(page.locator("#id_config_learning_rate")).to_have_value("2e-05")
    page.select_option("#id_base_artifact", str(base.pk))
    page.select_option("#id_dataset", str(data.pk))
    # Long enough (seconds) for several of the runner's 0.5 s event flushes.
    for key, value in dict(TINY_SFT, max_steps=STEPS, log_every=5).items():
        selector = f"#id_config_{key}"
        if page.locator(selector).evaluate("el => el.tagName") == "SELECT":
            page.select_option(selector, str(value))
        else:
            page.fill(selector, str(value))
    page.fill("#id_config_epochs", "")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-command")).to_contain_text("training_jobs run --config")
    with celery_worker(log_dir=tmp_path):
        page.get_by_role("button", name="Start job").click()
        expect(page).to_have_url(re.compile(r"/jobs/\d+/$"))
        expect(page.locator("body[data-live=open]")).to_have_count(1, timeout=10_000)
        progress = page.locator("#job-progress")
        # Record every value the bar takes (polling could miss a fast run's
        # intermediate states); the page is never reloaded.
        progress.evaluate(
            "el => { window.seenProgress = []; new MutationObserver(() => window.seenProgress.push("
            "Number(el.getAttribute('aria-valuenow')))).observe(el, {attributes: true}); }"
        )
        # An upper bound for a loaded machine; a quiet one takes ~10 s.
        expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=240_000)
    expect(progress).to_have_attribute("aria-valuenow", str(STEPS))
    seen = page.evaluate("window.seenProgress")
    assert any(0 < value < STEPS for value in seen), f"the bar never moved mid-run: {seen}"
    expect(page.locator("#job-steps")).to_have_text(f"{STEPS} / {STEPS}")
    expect(page.locator("#chart-loss svg path.line")).to_have_count(1)
    expect(page.locator("#job-output")).to_be_visible()
    page.goto("/jobs/")
    expect(page.locator("tr[data-job] [data-job-status]")).to_have_text("Succeeded")
