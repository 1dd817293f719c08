from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


def log_in(page, username: str, password: str, next_url: str = "/") -> None:
    """Fill the login form reached at /login/?next=…"""
    page.goto(f"/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


def test_login_through_the_browser_shows_the_navigation(page, make_user) -> None:
    make_user("grace", password="pw-Secret-123")
    page.goto("/models/")
    expect(page).to_have_url("/login/?next=/models/")
    page.fill("#id_username", "grace")
    page.fill("#id_password", "pw-Secret-123")
    page.click("button[type=submit]")
    expect(page).to_have_url("/models/")
    nav = page.get_by_role("navigation", name="Main")
    for section in ("Datasets", "Models", "Jobs", "Deployments", "Chat", "Evaluations", "API keys"):
        expect(nav.get_by_role("link", name=section)).to_be_visible()
    expect(nav.get_by_role("link", name="Models")).to_have_attribute("aria-current", "page")
    expect(page.get_by_text("No models yet.")).to_be_visible()
    # The stylesheet is served (vendored, no CDN): the top bar is dark.
    background = page.eval_on_selector(".topbar", "el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(20, 27, 45)"


def test_wrong_password_shows_an_error(page, make_user) -> None:
    make_user("heidi", password="pw-Secret-123")
    log_in(page, "heidi", "nope")
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")


def test_create_an_api_key_in_the_browser(page, make_user) -> None:
    make_user("ivan", password="pw-Secret-123")
    log_in(page, "ivan", "pw-Secret-123", next_url="/account/keys/")
    expect(page.get_by_text("No API keys yet")).to_be_visible()
    page.fill("#id_name", "notebook")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key")
    expect(secret).to_contain_text("wbk_")
    page.reload()
    expect(page.locator("#new-key")).to_have_count(0)
    expect(page.get_by_role("cell", name="notebook")).to_be_visible()
