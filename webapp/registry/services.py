"""Writes for the model registry: registering folders, importing models
(a server folder or an uploaded tarball) and exporting them as .tar.gz."""
from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from webapp.core.errors import Conflict, ValidationFailed
from webapp.registry import imports
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


# --- import -----------------------------------------------------------------------

def _root() -> Path:
    root = Path(settings.ARTIFACTS_ROOT).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _check_import(name: str, kind: str) -> str:
    name = imports.check_model_name(name)
    if kind not in ArtifactKind.values:
        raise ValidationFailed(f"kind must be one of {', '.join(ArtifactKind.values)}", field="kind")
    return name


def _owner_folder(owner: AbstractBaseUser) -> str:
    username = owner.get_username()
    # Django allows usernames like ".." or "é": only plain ones name a folder.
    return username if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,99}", username) else f"user-{owner.pk}"


def _place_and_register(
    *, owner: AbstractBaseUser, name: str, kind: str, description: str, staging: Path, info: imports.ModelInfo
) -> ModelArtifact:
    """Move the checked staging folder to <owner>/<name>-v<version> (a rename
    on the same file system) and record it, both or neither."""
    root = _root()
    target: Path | None = None
    try:
        with transaction.atomic():
            version = next_version(ModelArtifact.objects.filter(owner=owner, name=name))
            target = root / _owner_folder(owner) / f"{name}-v{version}"
            if target.exists():  # left over from a deleted artifact: keep it, use another folder
                target = target.with_name(f"{target.name}-{uuid.uuid4().hex[:8]}")
            target.parent.mkdir(parents=True, exist_ok=True)
            staging.rename(target)
            return ModelArtifact.objects.create(
                owner=owner, name=name, version=version, architecture=info.architecture, kind=kind,
                folder=str(target.relative_to(root)), num_parameters=info.num_parameters, description=description,
            )
    except BaseException:
        if target is not None and target.exists() and not staging.exists():
            shutil.rmtree(target, ignore_errors=True)
        raise


def _staging_folder() -> Path:
    """A fresh folder inside ARTIFACTS_ROOT (same file system as the final
    place, so moving in is a rename); the callers delete it on any failure."""
    return Path(tempfile.mkdtemp(prefix=imports.STAGING_PREFIX, dir=_root()))


def artifact_import_folder(
    *, owner: AbstractBaseUser, name: str, source_folder: str | Path, kind: str = ArtifactKind.BASE, description: str = ""
) -> ModelArtifact:
    """Import a model folder on the server (staff only: the API checks). One
    inside ARTIFACTS_ROOT is registered where it is; any other is checked,
    then copied in (links followed: a hub-cache snapshot is copied as files).
    A relative path is taken relative to ARTIFACTS_ROOT."""
    name = _check_import(name, kind)
    root = _root()
    raw = str(source_folder).strip()
    if not raw:
        raise ValidationFailed("give the folder's path on the server", field="folder")
    path = Path(raw).expanduser()
    source = (path if path.is_absolute() else root / path).resolve()
    if not source.exists():
        raise ValidationFailed(f"folder {raw} does not exist", field="folder")
    if not source.is_dir():
        raise ValidationFailed(f"{raw} is not a folder", field="folder")
    where = f"folder {raw}"
    if source.is_relative_to(root):
        relative = source.relative_to(root)
        if source == root or relative.parts[0].startswith(imports.STAGING_PREFIX):
            raise ValidationFailed(f"{raw} is ARTIFACTS_ROOT itself or an import in progress, not a model folder", field="folder")
        imports.check_links_inside(source, root, where)
        info = _inspect(source, where, kind)
        return artifact_register(
            owner=owner, name=name, architecture=info.architecture, kind=kind, folder=source,
            num_parameters=info.num_parameters, description=description,
        )
    info = _inspect(source, where, kind)
    size, free = imports.folder_size(source), shutil.disk_usage(root).free
    if size > free:
        raise ValidationFailed(f"not enough disk space under ARTIFACTS_ROOT: {where} holds {imports.mib(size)}, {imports.mib(free)} are free", field="folder")
    staging = _staging_folder()
    try:
        try:
            shutil.copytree(source, staging, dirs_exist_ok=True)
        except (OSError, shutil.Error) as exc:
            raise ValidationFailed(f"cannot copy {where}: {imports.first_line(exc)}", field="folder") from None
        return _place_and_register(owner=owner, name=name, kind=kind, description=description, staging=staging, info=info)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already after a successful move


def _inspect(folder: Path, where: str, kind: str) -> imports.ModelInfo:
    try:
        return imports.inspect_artifact(folder, where=where, kind=kind)
    except ValidationFailed as error:
        raise ValidationFailed(error.message, field="folder") from None


def artifact_import_tarball(
    *, owner: AbstractBaseUser, name: str, upload: UploadedFile, kind: str = ArtifactKind.BASE, description: str = ""
) -> ModelArtifact:
    """Import an uploaded .tar.gz / .tgz / .tar: every member is checked
    before anything is written, the archive is unpacked into a staging folder
    inside ARTIFACTS_ROOT, checked with transformers and only then moved into
    place. On any failure nothing is left behind."""
    name = _check_import(name, kind)
    limit = settings.REGISTRY_MAX_IMPORT_BYTES
    filename = (upload.name or "").replace("\\", "/").rsplit("/", 1)[-1]
    label = f"the upload {imports.quoted(filename)}" if filename else "the upload"
    if upload.size is not None and upload.size > limit:
        raise ValidationFailed(f"the file is over the import limit of {imports.mib(limit)} (REGISTRY_MAX_IMPORT_MB)", field="file")
    if not upload.size:
        raise ValidationFailed("the file is empty", field="file")
    staging = _staging_folder()
    try:
        upload.open("rb")
        imports.extract_archive(upload.file, staging, limit=limit, label=label)
        info = imports.inspect_artifact(staging, where="the archive", kind=kind)
        return _place_and_register(owner=owner, name=name, kind=kind, description=description, staging=staging, info=info)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- export -----------------------------------------------------------------------

@dataclass(frozen=True)
class ArtifactExport:
    """An artifact's folder as a .tar.gz made while it is sent: `chunks()`
    for a WSGI server or tests, `achunks()` for ASGI (daphne)."""

    filename: str
    folder: Path
    arcroot: str
    allowed: Path

    def chunks(self) -> Iterator[bytes]:
        return imports.targz_chunks(self.folder, self.arcroot, allowed=self.allowed)

    def achunks(self) -> AsyncIterator[bytes]:
        return imports.achunks(self.chunks())


def artifact_export(*, artifact: ModelArtifact) -> ArtifactExport:
    """The download of `artifact`'s folder: <name>-v<version>.tar.gz whose
    members sit in one folder of that name (importing it again unwraps it)."""
    root = Path(settings.ARTIFACTS_ROOT).resolve()
    folder = (root / artifact.folder).resolve()
    if not folder.is_relative_to(root) or not folder.is_dir():
        raise Conflict(f"the folder of {artifact} ({artifact.folder}) is missing from ARTIFACTS_ROOT: nothing to download")
    stem = f"{imports.safe_component(artifact.name, 'model')}-v{artifact.version}"
    return ArtifactExport(filename=f"{stem}.tar.gz", folder=folder, arcroot=stem, allowed=root)
