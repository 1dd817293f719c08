"""Writes for the model registry."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from webapp.core.errors import ValidationFailed
from webapp.lib.ownership import next_version
from webapp.registry.models import ArtifactKind, ModelArtifact


def check_artifact_folder(folder: str | Path) -> str:
    """The folder relative to ARTIFACTS_ROOT; it must exist inside it."""
    root = Path(settings.ARTIFACTS_ROOT).resolve()
    path = Path(folder)
    resolved = (path if path.is_absolute() else root / path).resolve()
    if not resolved.is_relative_to(root):
        raise ValidationFailed(f"folder {folder} is outside ARTIFACTS_ROOT ({root})", field="folder")
    if not resolved.is_dir():
        raise ValidationFailed(f"folder {folder} does not exist", field="folder")
    return str(resolved.relative_to(root))


@transaction.atomic
def artifact_register(
    *,
    owner: AbstractBaseUser,
    name: str,
    architecture: str,
    kind: str,
    folder: str | Path,
    parent: ModelArtifact | None = None,
    num_parameters: int | None = None,
    description: str = "",
) -> ModelArtifact:
    """Register a model folder as the next version of `name` for `owner`."""
    name = name.strip()
    if not name:
        raise ValidationFailed("an artifact needs a name", field="name")
    if kind not in ArtifactKind.values:
        raise ValidationFailed(f"kind must be one of {', '.join(ArtifactKind.values)}", field="kind")
    relative = check_artifact_folder(folder)
    version = next_version(ModelArtifact.objects.filter(owner=owner, name=name))
    return ModelArtifact.objects.create(
        owner=owner,
        name=name,
        version=version,
        architecture=architecture,
        kind=kind,
        folder=relative,
        parent=parent,
        num_parameters=num_parameters,
        description=description,
    )
