from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from playwright.sync_api import expect

from inference.base import Health
from tests.browser.test_smoke import log_in
from webapp.deployments.models import Deployment
from webapp.deployments.services import deployment_record_health
from webapp.registry.services import artifact_register

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def model_folder(tiny_bloom: Path) -> Iterator[Path]:
    """The tiny model under the ARTIFACTS_ROOT that the web server was started with
    (the `artifacts_root` fixture only changes this process's settings)."""
    folder = Path(settings.ARTIFACTS_ROOT) / f"browser-{uuid.uuid4().hex[:8]}"
    shutil.copytree(tiny_bloom, folder)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def in_thread(work: Callable[[], None]) -> None:
    """Run ORM + channel-layer code off this thread: Playwright's sync API
    keeps an event loop running here, and async_to_sync (the notification's
    group_send) refuses to run under one."""

    def run() -> None:
        try:
            work()
        finally:
            connection.close()  # the thread's own connection

    with ThreadPoolExecutor(max_workers=1) as executor:
        executor.submit(run).result()


def test_register_try_check_and_watch_a_local_deployment(page, make_user, model_folder: Path) -> None:
    owner = make_user("kate", password="pw-Secret-123")
    artifact = artifact_register(owner=owner, name="kate-bloom", architecture="BloomForCausalLM", kind="policy", folder=model_folder)
    log_in(page, "kate", "pw-Secret-123", next_url="/deployments/new/")

    # Kind-specific fields follow the kind.
    expect(page.locator("#id_endpoint_url")).to_be_hidden()
    page.select_option("#id_kind", "triton")
    expect(page.locator("#id_endpoint_url")).to_be_visible()
    expect(page.locator("#id_protocol")).to_be_visible()
    page.select_option("#id_kind", "local")
    expect(page.locator("#id_protocol")).to_be_hidden()

    page.fill("#id_name", "kate-bloom-local")
    page.select_option("#id_artifact", str(artifact.pk))
    page.get_by_role("button", name="Test connection").click()
    expect(page.locator("#test-result")).to_contain_text("Connection OK", timeout=30_000)
    assert not Deployment.objects.exists()  # testing saves nothing
    page.get_by_role("button", name="Register deployment").click()
    expect(page).to_have_url(re.compile(r"/deployments/\d+/$"))
    deployment = Deployment.objects.get(name="kate-bloom-local")
    expect(page.get_by_role("status").first).to_contain_text("registered")

    # Quick prompt: the tiny model loads inside the web server and answers.
    page.fill("#try-prompt", "你好")
    page.fill("#try-max-tokens", "8")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#try-meta")).to_contain_text("finish reason", timeout=60_000)
    expect(page.locator("#try-answer")).to_be_visible()
    expect(page.locator("#try-error")).to_be_hidden()

    badge = page.locator("#status")
    expect(badge).to_have_text("Unknown")
    page.get_by_role("button", name="Check now").click()
    expect(badge).to_have_text("Healthy", timeout=30_000)
    expect(badge).to_have_class(re.compile(r"\bstatus-healthy\b"))

    page.goto("/deployments/")
    row = page.locator(f'tr[data-deployment="{deployment.pk}"]')
    expect(row.get_by_role("link", name="kate-bloom-local")).to_be_visible()
    expect(row.get_by_role("link", name="kate-bloom v1")).to_be_visible()
    list_badge = row.locator(f'[data-status-for="{deployment.pk}"]')
    expect(list_badge).to_have_text("Healthy")
    expect(page.locator("body[data-live=open]")).to_have_count(1)  # the socket is listening

    # The beat's path: a status recorded server-side reaches the open page.
    in_thread(lambda: deployment_record_health(deployment=Deployment.objects.get(pk=deployment.pk), health=Health(False, "boom")))
    expect(list_badge).to_have_text("Unhealthy", timeout=10_000)
    expect(list_badge).to_have_attribute("title", "boom")
    expect(list_badge).to_have_class(re.compile(r"\bstatus-unhealthy\b"))
    expect(page.locator("#status-announcer")).to_have_text("kate-bloom-local is now unhealthy: boom")
