"""Writes for accounts: API key lifecycle and demo bootstrap."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from webapp.accounts.models import ApiKey
from webapp.core.errors import ValidationFailed

KEY_SCHEME = "wbk"
# Don't write last_used_at on every request: once a minute is enough to show
# "last used" and keeps the hot path free of writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    raw: str  # shown to the user once, never stored


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def check_api_key_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise ValidationFailed("Give the key a name (e.g. the script that will use it).", field="name")
    if len(name) > 100:
        raise ValidationFailed("Key names are at most 100 characters.", field="name")
    return name


@transaction.atomic
def api_key_create(*, owner: AbstractBaseUser, name: str) -> IssuedKey:
    name = check_api_key_name(name)
    prefix = secrets.token_hex(6)
    raw = f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey.objects.create(owner=owner, name=name, prefix=prefix, digest=_digest(raw))
    return IssuedKey(api_key=api_key, raw=raw)


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
    return api_key


def api_key_authenticate(raw: str) -> ApiKey | None:
    """The active key matching `raw`, or None. Constant-time digest compare."""
    parts = raw.split("_")
    if len(parts) < 3 or parts[0] != KEY_SCHEME:
        return None
    prefix = parts[1]
    api_key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
    if api_key is None or not hmac.compare_digest(api_key.digest, _digest(raw)):
        return None
    if api_key.revoked_at is not None or not api_key.owner.is_active:
        return None
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
    return api_key


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str | None  # None: an existing user whose password was kept
    created: bool


def demo_user_ensure(*, username: str, password: str | None) -> DemoUser:
    """Create the demo superuser, or keep the existing one. Its password is set
    when given (DEMO_PASSWORD) or when the user is new (generated)."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=username, defaults={"is_staff": True, "is_superuser": True}
    )
    if created and password is None:
        password = secrets.token_urlsafe(12)
    if password is not None:
        user.set_password(password)
        user.save(update_fields=["password"])
    return DemoUser(username=username, password=password, created=created)
