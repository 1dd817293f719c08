from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from webapp.accounts.models import ApiKey
from webapp.accounts.services import api_key_authenticate, api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def test_key_is_stored_hashed_and_authenticates(alice) -> None:
    issued = api_key_create(owner=alice, name="notebook")
    row = ApiKey.objects.get(pk=issued.api_key.pk)
    assert issued.raw.startswith(f"wbk_{row.prefix}_")
    assert issued.raw not in (row.digest, row.prefix) and len(row.digest) == 64
    assert api_key_authenticate(issued.raw) == row
    assert ApiKey.objects.get(pk=row.pk).last_used_at is not None


def test_revoked_or_tampered_key_does_not_authenticate(alice) -> None:
    issued = api_key_create(owner=alice, name="notebook")
    assert api_key_authenticate(issued.raw[:-1] + ("A" if issued.raw[-1] != "A" else "B")) is None
    api_key_revoke(api_key=issued.api_key)
    assert api_key_authenticate(issued.raw) is None


def test_create_page_shows_the_key_once(client, alice) -> None:
    client.force_login(alice)
    response = client.post(reverse("accounts:key-list"), {"name": "langchain"}, follow=True)
    assert response.status_code == 200
    key = ApiKey.objects.get(owner=alice, name="langchain")
    raw = response.context["new_key"]["raw"]
    assert raw.startswith(f"wbk_{key.prefix}_") and raw in response.content.decode()
    again = client.get(reverse("accounts:key-list"))
    assert raw not in again.content.decode()
    assert f"wbk_{key.prefix}_" in again.content.decode()


def test_create_without_name_is_rejected_and_stores_nothing(client, alice) -> None:
    client.force_login(alice)
    response = client.post(reverse("accounts:key-list"), {"name": "  "})
    assert response.status_code == 400
    assert "Give the key a name" in response.content.decode() or "required" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_revoke_own_key(client, alice) -> None:
    issued = api_key_create(owner=alice, name="old")
    client.force_login(alice)
    response = client.post(reverse("accounts:key-revoke", args=[issued.api_key.pk]))
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is not None


def test_another_users_key_is_404_and_untouched(client, alice, bob) -> None:
    issued = api_key_create(owner=alice, name="mine")
    client.force_login(bob)
    response = client.post(reverse("accounts:key-revoke", args=[issued.api_key.pk]))
    assert response.status_code == 404
    assert ApiKey.objects.get(pk=issued.api_key.pk).revoked_at is None
    listing = client.get(reverse("accounts:key-list")).content.decode()
    assert issued.api_key.prefix not in listing


def test_create_api_key_command_prints_the_key_once(alice) -> None:
    out, err = StringIO(), StringIO()
    call_command("create_api_key", "--user", "alice", "--name", "ci", stdout=out, stderr=err)
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(owner=alice, name="ci")
    assert api_key_authenticate(raw) == key
    assert "shown once" in err.getvalue()


def test_create_api_key_command_rejects_unknown_user() -> None:
    with pytest.raises(CommandError, match="no user named 'nobody'"):
        call_command("create_api_key", "--user", "nobody")
    assert not ApiKey.objects.exists()
