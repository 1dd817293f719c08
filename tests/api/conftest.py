"""A live /v1: two web server processes on the test database — the gateway under
test and a second instance that the `upstream` deployment (kind openai)
calls — with users, keys and deployments committed for the whole package."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from tests.api.fake_upstream import fake_upstream
from tests.support import web_server
from webapp.accounts.models import ApiKey
from webapp.accounts.services import api_key_create, api_key_revoke
from webapp.api.models import RequestLog
from webapp.deployments.models import Deployment
from webapp.lib.embedded_redis import free_port


@dataclass
class World:
    base: str  # the gateway, e.g. http://127.0.0.1:PORT
    upstream: str  # the second instance
    alice_key: str
    bob_key: str
    limited_key: str  # one request in flight at most
    revoked_key: str
    model_dir: Path

    @property
    def v1(self) -> str:
        return f"{self.base}/v1"


def _deployments(alice, bob, model_dir: Path, upstream: str, upstream_key: str, fake: str) -> None:
    common = {"owner": alice, "model_path": str(model_dir)}
    Deployment.objects.create(name="tiny", kind="local", **common)
    Deployment.objects.create(name="tiny-short", kind="local", default_params={"max_tokens": 5, "temperature": 0}, **common)
    Deployment.objects.create(name="embed", kind="embedding", owner=alice)
    Deployment.objects.create(name="bob-private", kind="local", owner=bob, model_path=str(model_dir))
    Deployment.objects.create(name="switched-off", kind="local", enabled=False, **common)
    Deployment.objects.create(name="upstream", kind="openai", owner=alice, endpoint_url=f"{upstream}/v1",
                              server_model="tiny", upstream_api_key=upstream_key, model_path=str(model_dir))
    Deployment.objects.create(name="upstream-missing", kind="openai", owner=alice, endpoint_url=f"{upstream}/v1",
                              server_model="no-such-model", upstream_api_key=upstream_key)
    for name in ("slow", "breaks", "error-event"):
        Deployment.objects.create(name=name, kind="openai", owner=alice, endpoint_url=fake, server_model=name)
    Deployment.objects.create(name="down", kind="openai", owner=alice, endpoint_url=f"http://127.0.0.1:{free_port()}/v1",
                              server_model="x")


@pytest.fixture(scope="package")
def world(django_db_setup, django_db_blocker, tiny_bloom: Path, tmp_path_factory) -> Iterator[World]:
    logs = tmp_path_factory.mktemp("v1-logs")
    users = get_user_model()
    with django_db_blocker.unblock():
        alice = users.objects.create_user("v1-alice", password="pw-Secret-123")
        bob = users.objects.create_user("v1-bob", password="pw-Secret-123")
        keys = {name: api_key_create(owner=alice if name != "bob" else bob, name=name).raw
                for name in ("alice", "bob", "limited", "revoked", "upstream")}
        ApiKey.objects.filter(name="limited", owner=alice).update(max_concurrent_requests=1)
        api_key_revoke(api_key=ApiKey.objects.get(name="revoked", owner=alice))
    try:
        with (web_server(log_path=logs / "upstream.log") as upstream,
              web_server(log_path=logs / "gateway.log") as base, fake_upstream() as fake):
            with django_db_blocker.unblock():
                _deployments(alice, bob, tiny_bloom, upstream, keys["upstream"], fake)
            yield World(base, upstream, keys["alice"], keys["bob"], keys["limited"], keys["revoked"], tiny_bloom)
    finally:
        with django_db_blocker.unblock():
            RequestLog.objects.filter(owner__in=[alice, bob]).delete()
            Deployment.objects.filter(owner__in=[alice, bob]).delete()
            users.objects.filter(pk__in=[alice.pk, bob.pk]).delete()
