"""A pt → sft pipeline submitted through the pipeline form in the browser and
run by a real Celery worker: the pipeline page follows the stage cards live
(no reload) to Succeeded; a second pipeline cancelled from its page while
its first stage trains shows that stage cancelled and the next one stopped,
as the database says."""
from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_smoke import log_in
from tests.jobs.conftest import Roots, make_base, make_dataset  # noqa: F401 (fixtures)
from tests.support import celery_worker
from webapp.jobs.models import Job, Pipeline

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-Secret-123"
# The form shows a subset of the settings; the others keep the stage
# defaults (global batch 256 for pt, 64 for sft, bf16): one micro-batch a
# step keeps a step of the tiny model near a second on a loaded CPU.
PT = {"max_length": 64, "micro_batch_size": 256, "learning_rate": 1e-3}
SFT = {"max_length": 64, "micro_batch_size": 64, "learning_rate": 1e-3}
# Records every text a badge takes (polling could miss a state that lasts
# less than one poll); the page is never reloaded.
RECORD_BADGES = """() => {
  window.seen = {};
  const watch = (key, el) => {
    window.seen[key] = [el.textContent.trim()];
    new MutationObserver(() => {
      const text = el.textContent.trim();
      const list = window.seen[key];
      if (list[list.length - 1] !== text) { list.push(text); }
    }).observe(el, {childList: true, characterData: true, subtree: true});
  };
  watch("pipeline", document.getElementById("pipeline-status"));
  document.querySelectorAll("li[data-job]").forEach(
    (li) => watch(li.getAttribute("data-job"), li.querySelector("[data-job-status]")));
}"""


@pytest.fixture
def roots(settings) -> Roots:
    """The session's own MEDIA_ROOT and ARTIFACTS_ROOT: the web server under
    test was started with them (a per-test folder would be invisible to it)."""
    media, artifacts = Path(settings.MEDIA_ROOT), Path(settings.ARTIFACTS_ROOT)
    shutil.rmtree(artifacts / "models" / "piper-tiny", ignore_errors=True)
    for path in (media, artifacts):
        path.mkdir(parents=True, exist_ok=True)
    return Roots(media=media, artifacts=artifacts)


@pytest.fixture
def piper(page, make_user, make_base, make_dataset):
    """A user logged in on `page`, with the tiny base model, a corpus and an
    instruction dataset: (base, corpus, chat). Dataset processing pushes
    with async_to_sync, which refuses to run in the thread of Playwright's
    event loop: set up in another thread."""
    user = make_user("piper", password=PASSWORD)
    with ThreadPoolExecutor(1) as pool:
        base = pool.submit(make_base, user).result()
        corpus = pool.submit(make_dataset, user, "corpus", name="corpus").result()
        chat = pool.submit(make_dataset, user, "instruction", name="chat").result()
    log_in(page, "piper", PASSWORD, next_url="/jobs/pipelines/")
    return base, corpus, chat


def _submit_pt_sft(page, *, name: str, base, corpus, chat, pt_steps: int, sft_steps: int) -> Pipeline:
    """Fill the pipeline form (pt → sft only) and submit it; returns the
    pipeline the redirect lands on."""
    page.goto("/jobs/pipelines/new/")
    page.fill("#id_name", name)
    page.select_option("#id_base_artifact", str(base.pk))
    # The form ticks the whole recipe it can run; keep pt and sft.
    for box in page.locator('input[type=checkbox][name$="_include"]').all():
        box.set_checked(box.get_attribute("name") in ("pt_include", "sft_include"))
    page.select_option("#id_pt_dataset", str(corpus.pk))
    page.select_option("#id_sft_dataset", str(chat.pk))
    for stage, values in (("pt", dict(PT, max_steps=pt_steps)), ("sft", dict(SFT, max_steps=sft_steps))):
        for key, value in values.items():
            page.fill(f"#id_{stage}_config_{key}", str(value))
    page.fill("#id_output_name", f"{name}-chat")
    page.get_by_role("button", name="Start pipeline").click()
    expect(page).to_have_url(re.compile(r"/jobs/pipelines/\d+/$"))
    pipeline = Pipeline.objects.get(pk=int(page.url.rstrip("/").rsplit("/", 1)[1]))
    assert pipeline.name == name
    expect(page.locator("body[data-live=open]")).to_have_count(1, timeout=10_000)
    page.evaluate(RECORD_BADGES)
    return pipeline


def _stages(pipeline: Pipeline) -> tuple[Job, Job]:
    pt, sft = Job.objects.filter(pipeline=pipeline).order_by("pipeline_index")
    return pt, sft


def _card(page, job: Job):
    return page.locator(f'li[data-job="{job.pk}"]')


def test_pt_then_sft_from_the_form_updates_the_stage_cards_live(page, piper, tmp_path) -> None:
    base, corpus, chat = piper
    with celery_worker(log_dir=tmp_path):
        pipeline = _submit_pt_sft(page, name="recipe", base=base, corpus=corpus, chat=chat, pt_steps=4, sft_steps=2)
        pt, sft = _stages(pipeline)
        assert [(pt.stage, pt.dataset_id), (sft.stage, sft.dataset_id)] == [("pt", corpus.pk), ("sft", chat.pk)]
        expect(page.locator("#pipeline-status")).to_have_text("Succeeded", timeout=240_000)
    seen = page.evaluate("window.seen")
    pt_seen, sft_seen = seen[str(pt.pk)], seen[str(sft.pk)]
    # pt ran and succeeded; only then did sft leave Waiting, run and succeed.
    assert pt_seen[-2:] == ["Running", "Succeeded"], seen
    assert sft_seen[0] == "Waiting" and sft_seen[-2:] == ["Running", "Succeeded"], seen
    assert seen["pipeline"][-1] == "Succeeded", seen
    for job in (pt, sft):
        expect(_card(page, job).locator("[data-job-steps]")).to_have_text(re.compile(r"^(\d+) / \1$"))
        expect(_card(page, job).locator("[data-job-output]")).to_be_visible()
    expect(page.locator("#cancel-button")).to_be_hidden()

    pipeline.refresh_from_db()
    pt, sft = _stages(pipeline)
    assert (pipeline.status, pt.status, sft.status) == ("succeeded", "succeeded", "succeeded"), (pt.error, sft.error)
    assert (pt.step, sft.step) == (4, 2)
    assert sft.base_artifact == pt.output_artifact and sft.output_artifact.name == "recipe-chat"
    assert sft.output_artifact.parent == pt.output_artifact and pt.output_artifact.parent == base


def test_cancel_on_the_pipeline_page_stops_the_running_stage_and_the_next(page, piper, tmp_path) -> None:
    base, corpus, chat = piper
    with celery_worker(log_dir=tmp_path):
        pipeline = _submit_pt_sft(page, name="stopped", base=base, corpus=corpus, chat=chat, pt_steps=400, sft_steps=2)
        pt, sft = _stages(pipeline)
        pt_card, sft_card = _card(page, pt), _card(page, sft)
        # Training for real: the first progress event (log_every 10) is on the card.
        expect(pt_card.locator("[data-job-status]")).to_have_text("Running", timeout=120_000)
        expect(pt_card.locator("[data-job-steps]")).to_have_text(re.compile(r"^[1-9]\d* / 400$"), timeout=120_000)
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("#cancel-button").click()
        expect(pt_card.locator("[data-job-status]")).to_have_text("Cancelled", timeout=120_000)
    expect(page.locator("#pipeline-status")).to_have_text("Cancelled")
    expect(page.locator("#pipeline-error")).to_have_text("cancelled at stage 1 (pt)")
    expect(page.locator("#cancel-button")).to_be_hidden()
    expect(sft_card.locator("[data-job-status]")).to_have_text("Cancelled")
    expect(sft_card.locator("[data-job-error]")).to_have_text("stopped: pipeline cancelled at stage 1 (pt)")
    expect(sft_card.locator("[data-job-steps]")).to_have_text("—")
    expect(page.locator("#action-error")).to_be_hidden()
    seen = page.evaluate("window.seen")
    assert "Running" not in seen[str(sft.pk)], seen

    pipeline.refresh_from_db()
    pt, sft = _stages(pipeline)
    assert (pipeline.status, pipeline.error) == ("cancelled", "cancelled at stage 1 (pt)")
    assert (pt.status, pt.attempt) == ("cancelled", 1) and 0 < pt.step < 400, (pt.status, pt.step, pt.error)
    assert (sft.status, sft.attempt, sft.step, sft.started_at) == ("cancelled", 0, 0, None)
    assert sft.error == "stopped: pipeline cancelled at stage 1 (pt)" and sft.output_artifact is None
    assert [e.payload["status"] for e in sft.events.filter(kind="status").order_by("seq")] == ["waiting", "cancelled"]
