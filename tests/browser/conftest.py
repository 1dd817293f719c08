"""Browser-test harness: the real ASGI server (uvicorn) in a subprocess on the
test database, driven by Debian's Chromium through Playwright."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import web_server

CHROMIUM = "/usr/bin/chromium"
# GUIDE §2: flags that work on these offline machines.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def asgi_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[str]:
    """Base URL of the web server (uvicorn) serving webapp.asgi on a free port."""
    log_path = tmp_path_factory.mktemp("web") / "web.log"
    with web_server(log_path=log_path) as base_url:
        yield base_url


# Package scope: Playwright's sync API keeps an event loop running in the main
# thread while it is open, which would break the asyncio tests of other
# packages if it stayed open for the whole session.
@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (make test / .ci/run install it when run as root)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread, which
    # makes Django refuse ORM calls from the test body; the calls are in fact
    # synchronous, so the guard is lifted for browser tests only.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, asgi_server: str, tmp_path: Path) -> Iterator[object]:
    context = browser.new_context(base_url=asgi_server, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
