"""The demo workspace that `make run` builds: a staff user and an API key.
Safe to run again: existing objects are kept, nothing is duplicated."""
from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from webapp.accounts.models import ApiKey
from webapp.accounts.services import DemoUser, api_key_create, demo_user_ensure

DEMO_USERNAME = "admin"
DEMO_KEY_NAME = "demo"


@dataclass(frozen=True)
class DemoWorkspace:
    user: DemoUser
    api_key_raw: str | None  # None: the demo key existed already (shown once)


@transaction.atomic
def demo_workspace_ensure(*, password: str | None) -> DemoWorkspace:
    user = demo_user_ensure(username=DEMO_USERNAME, password=password)
    has_key = ApiKey.objects.filter(
        owner__username=DEMO_USERNAME, name=DEMO_KEY_NAME, revoked_at__isnull=True
    ).exists()
    raw = None
    if not has_key:
        from django.contrib.auth import get_user_model

        owner = get_user_model().objects.get(username=DEMO_USERNAME)
        raw = api_key_create(owner=owner, name=DEMO_KEY_NAME).raw
    return DemoWorkspace(user=user, api_key_raw=raw)
