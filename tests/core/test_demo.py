from __future__ import annotations

import pytest
from django.conf import settings
from transformers import AutoModelForCausalLM

from webapp.accounts.models import ApiKey
from webapp.accounts.services import api_key_authenticate
from webapp.core.demo import DEMO_USERNAME, demo_workspace_ensure
from webapp.deployments.models import Deployment
from webapp.registry.models import ModelArtifact

pytestmark = pytest.mark.django_db


def test_demo_workspace_is_built_once_and_kept(artifacts_root) -> None:
    first = demo_workspace_ensure(password=None)
    assert first.user.created and first.user.password
    assert api_key_authenticate(first.api_key_raw).owner.username == DEMO_USERNAME
    model = first.model
    assert (model.kind, model.architecture, model.version) == ("base", "BloomForCausalLM", 1)
    assert model.num_parameters > 100_000
    loaded = AutoModelForCausalLM.from_pretrained(settings.ARTIFACTS_ROOT / model.folder, local_files_only=True)
    assert sum(p.numel() for p in loaded.parameters()) == model.num_parameters

    again = demo_workspace_ensure(password=None)
    assert not again.user.created and again.user.password is None  # password kept
    assert again.api_key_raw is None  # the key was shown once
    assert again.model.pk == model.pk
    assert ApiKey.objects.count() == 1 and ModelArtifact.objects.count() == 1
    assert first.deployments == again.deployments == ("demo-tiny", "demo-embed")
    served = {d.name: d for d in Deployment.objects.all()}
    assert set(served) == {"demo-tiny", "demo-embed"}
    assert served["demo-tiny"].kind == "local" and served["demo-tiny"].artifact_id == model.pk
    assert served["demo-embed"].kind == "embedding" and all(d.shared and d.enabled for d in served.values())


def test_demo_password_from_the_environment_resets_it(artifacts_root, client) -> None:
    demo_workspace_ensure(password=None)
    demo_workspace_ensure(password="from-Env-123")
    assert client.login(username=DEMO_USERNAME, password="from-Env-123")
