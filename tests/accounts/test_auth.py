from __future__ import annotations

import pytest
from django.urls import reverse

from webapp.accounts.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url_name", ["home", "accounts:key-list", "registry:artifact-list", "datasets:index", "jobs:index"])
def test_pages_redirect_anonymous_users_to_login(client, url_name: str) -> None:
    url = reverse(url_name)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next={url}"


def test_login_page_and_login_flow(client, make_user) -> None:
    make_user("carol", password="pw-Secret-123")
    assert client.get(reverse("login")).status_code == 200
    bad = client.post(reverse("login"), {"username": "carol", "password": "wrong"})
    assert bad.status_code == 200 and "_auth_user_id" not in client.session
    good = client.post(reverse("login"), {"username": "carol", "password": "pw-Secret-123"})
    assert good.status_code == 302 and good["Location"] == reverse("home")
    home = client.get(reverse("home"))
    assert home.status_code == 200
    for section in ("Datasets", "Models", "Jobs", "Deployments", "Chat", "Evaluations", "API keys"):
        assert section in home.content.decode()


def test_logout_is_a_post(client, alice) -> None:
    client.force_login(alice)
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("home")).status_code == 302


def test_valid_api_key_authenticates(api_client, alice_key) -> None:
    response = api_client.get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 200
    assert response.json()["results"] == []


@pytest.mark.parametrize("header", ["Bearer wbk_0000_nope", "Bearer garbage", "Basic abc", "Bearer "])
def test_unknown_or_malformed_key_gets_401_json(api_client, alice_key, header: str) -> None:
    response = api_client.get("/api/models/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["type"] == "authentication_error"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_key_gets_401(api_client, alice) -> None:
    issued = api_key_create(owner=alice, name="old")
    api_key_revoke(api_key=issued.api_key)
    response = api_client.get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {issued.raw}")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_api_without_credentials_gets_401_not_a_redirect(api_client) -> None:
    response = api_client.get("/api/models/")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_browser_session_authenticates_the_api(client, alice) -> None:
    client.force_login(alice)
    assert client.get("/api/models/").status_code == 200
