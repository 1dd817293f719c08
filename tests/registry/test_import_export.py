"""Model import (uploaded tarball, server folder) and the streamed .tar.gz
download: safe extraction, the transformers check, owner scoping, pages."""
from __future__ import annotations

import asyncio
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from webapp.registry.models import ModelArtifact
from webapp.registry.services import artifact_export, artifact_register

pytestmark = pytest.mark.django_db

IMPORT_URL = "/api/models/import/"
TINY_BLOOM_PARAMETERS = 228_224  # training_jobs.tiny's 2-layer BLOOM (tiny_model.json)


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def _tarball(folder: Path | None = None, *, top: str | None = None, extra=(), mode: str = "w:gz", skip=()) -> bytes:
    """`folder`'s files (under `top/` if given), then `extra` members:
    (name, data, TarInfo fields) — last, so refusing them proves nothing
    was written before every member was checked."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        if folder is not None:
            if top:
                _add(tar, top, type=tarfile.DIRTYPE, mode=0o755)
            for path in sorted(folder.iterdir()):
                if path.name not in skip:
                    tar.add(path, arcname=f"{top}/{path.name}" if top else path.name)
        for name, data, fields in extra:
            _add(tar, name, data, **fields)
    return buffer.getvalue()


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _upload(api_client, user, data: bytes, filename: str = "bloom-tiny.tar.gz", **fields):
    api_client.force_authenticate(user)
    return api_client.post(IMPORT_URL, {"file": SimpleUploadedFile(filename, data), **fields}, format="multipart")


@pytest.mark.parametrize("top", [None, "bloom-tiny"], ids=["flat", "one-top-folder"])
def test_import_a_tarball(api_client, alice, artifacts_root, tiny_bloom, top) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    response = _upload(api_client, alice, _tarball(tiny_bloom, top=top), name="bloom", description="tiny")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["version"], body["kind"], body["owner"]) == ("bloom", 1, "base", "alice")
    assert body["architecture"] == "BloomForCausalLM"
    assert body["folder"] == "alice/bloom-v1"
    folder = artifacts_root / "alice" / "bloom-v1"
    assert _hashes(folder) == _hashes(tiny_bloom)  # unwrapped from the top folder, byte for byte
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert body["num_parameters"] == sum(p.numel() for p in model.parameters()) == TINY_BLOOM_PARAMETERS
    assert _tree(artifacts_root) == ["alice", "alice/bloom-v1", *(f"alice/bloom-v1/{n}" for n in sorted(_hashes(tiny_bloom)))]

    again = _upload(api_client, alice, _tarball(tiny_bloom, mode="w"), filename="bloom.tar")  # plain tar, name from the file
    assert again.status_code == 201, again.content
    assert (again.json()["name"], again.json()["version"], again.json()["folder"]) == ("bloom", 2, "alice/bloom-v2")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([("../x", b"evil", {})], "archive member '../x' escapes the folder"),
        ([("sub/../../x", b"evil", {})], "archive member 'sub/../../x' escapes the folder"),
        ([("/tmp/x", b"evil", {})], "archive member '/tmp/x' has an absolute path"),
        ([("passwd", b"", {"type": tarfile.SYMTYPE, "linkname": "/etc/passwd"})],
         "archive member 'passwd' is a symbolic link (to '/etc/passwd')"),
        ([("inside", b"", {"type": tarfile.SYMTYPE, "linkname": "config.json"})], "is a symbolic link"),
        ([("hard", b"", {"type": tarfile.LNKTYPE, "linkname": "/etc/passwd"})], "archive member 'hard' is a hard link"),
        ([("null", b"", {"type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3})], "archive member 'null' is a device file"),
        ([("fifo", b"", {"type": tarfile.FIFOTYPE})], "archive member 'fifo' is a device file or FIFO"),
        ([("config.json", b"{}", {})], "archive member 'config.json' appears twice"),
        ([("padding.bin", bytes(3 * 1024 * 1024), {})], "archive member 'padding.bin' takes the unpacked size past the import limit of 2 MiB"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-in", "hardlink", "device", "fifo", "duplicate", "too-big"],
)
def test_unsafe_archives_are_refused_before_anything_is_written(api_client, alice, artifacts_root, tiny_bloom, settings, extra, message) -> None:
    settings.REGISTRY_MAX_IMPORT_BYTES = 2 * 1024 * 1024  # the model is ~1 MiB; padding.bin's zeros compress to nothing
    before = _tree(artifacts_root.parent)
    response = _upload(api_client, alice, _tarball(tiny_bloom, extra=extra), name="evil")
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]["message"]
    assert response.json()["error"]["param"] == "file"
    assert _tree(artifacts_root.parent) == before  # nothing under ARTIFACTS_ROOT, nothing beside it
    assert not ModelArtifact.objects.exists()


def _truncated() -> bytes:
    return _tarball_of_files({"config.json": os.urandom(200_000)})[:5000]


def _tarball_of_files(files: dict[str, bytes], mode: str = "w:gz") -> bytes:
    return _tarball(extra=[(name, data, {}) for name, data in files.items()], mode=mode)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda m: b"PK\x03\x04 this is a zip, not a tar" * 100, "is not a .tar.gz, .tgz or .tar archive"),
        (lambda m: __import__("gzip").compress(b'{"not": "a tar"}' * 100), "is a gzip file but not a tar archive"),
        (lambda m: _truncated(), "damaged archive"),
        (lambda m: _tarball(m, skip={"config.json"}), "no config.json in the archive: not a transformers model"),
        (lambda m: _tarball(m, skip={"model.safetensors"}), "no weights in the archive: expected *.safetensors or pytorch_model*.bin"),
        (lambda m: _tarball(m, skip={"tokenizer.json"}), "the tokenizer in the archive does not load with transformers"),
        (lambda m: _tarball(m, skip={"model.safetensors"}, extra=[("model.safetensors", b"garbage" * 10, {})]),
         "weights file 'model.safetensors' in the archive is not a valid safetensors file"),
        (lambda m: _tarball(m, skip={"config.json"}, extra=[("config.json", b'{"model_type": "nope"}', {})]),
         "config.json in the archive does not load with transformers"),
        (lambda m: _tarball(), "the archive holds no files"),
    ],
    ids=["not-gzip-or-tar", "gzip-not-tar", "truncated", "no-config", "no-weights", "no-tokenizer", "bad-weights", "bad-config", "empty"],
)
def test_archives_that_are_not_models_are_refused_and_cleaned_up(api_client, alice, artifacts_root, tiny_bloom, make, message) -> None:
    before = _tree(artifacts_root)
    response = _upload(api_client, alice, make(tiny_bloom), name="broken")
    assert response.status_code == 400, response.content
    assert message in response.json()["error"]["message"]
    assert _tree(artifacts_root) == before
    assert not ModelArtifact.objects.exists()


def test_import_requests_are_checked(api_client, alice, artifacts_root, tiny_bloom) -> None:
    api_client.force_authenticate(alice)
    bad_name = _upload(api_client, alice, _tarball(tiny_bloom), name="../x")
    assert bad_name.status_code == 400 and bad_name.json()["error"]["param"] == "name"
    neither = api_client.post(IMPORT_URL, {"name": "x"}, format="json")
    assert neither.status_code == 400 and "either `file`" in neither.json()["error"]["message"]
    bad_kind = _upload(api_client, alice, _tarball(tiny_bloom), name="x", kind="checkpoint")
    assert bad_kind.status_code == 400 and bad_kind.json()["error"]["param"] == "kind"
    assert _tree(artifacts_root) == []


def _bin_model(tiny_bloom: Path, out: Path) -> Path:
    """tiny_bloom with its weights as pytorch_model.bin, the LM head tied to
    the embeddings (one storage: counted once)."""
    import torch
    from safetensors.torch import load_file

    out.mkdir()
    for path in tiny_bloom.iterdir():
        if path.suffix != ".safetensors":
            (out / path.name).write_bytes(path.read_bytes())
    state = load_file(tiny_bloom / "model.safetensors")
    state["lm_head.weight"] = state["transformer.word_embeddings.weight"]
    torch.save(state, out / "pytorch_model.bin")
    return out


def test_folder_import_is_for_staff(api_client, make_user, alice, artifacts_root, tiny_bloom, tmp_path) -> None:
    staff = make_user("ops", staff=True)
    api_client.force_authenticate(alice)
    refused = api_client.post(IMPORT_URL, {"folder": str(tiny_bloom), "name": "bloom"}, format="json")
    assert refused.status_code == 403
    assert "only staff may import from a folder on the server" in refused.json()["error"]["message"]
    assert _tree(artifacts_root) == [] and not ModelArtifact.objects.exists()

    api_client.force_authenticate(staff)
    copied = api_client.post(IMPORT_URL, {"folder": str(tiny_bloom), "name": "bloom", "kind": "base"}, format="json")
    assert copied.status_code == 201, copied.content
    assert copied.json()["folder"] == "ops/bloom-v1" and copied.json()["num_parameters"] == TINY_BLOOM_PARAMETERS
    assert _hashes(artifacts_root / "ops" / "bloom-v1") == _hashes(tiny_bloom)

    # .bin weights (tied embeddings counted once), from a form post, name from the folder
    binary = _bin_model(tiny_bloom, tmp_path / "bloom-bin")
    response = api_client.post(IMPORT_URL, {"folder": str(binary)})
    assert response.status_code == 201, response.content
    assert (response.json()["name"], response.json()["num_parameters"]) == ("bloom-bin", TINY_BLOOM_PARAMETERS)

    # inside ARTIFACTS_ROOT: registered where it is, nothing copied
    in_place = api_client.post(IMPORT_URL, {"folder": "ops/bloom-v1", "name": "same"}, format="json")
    assert in_place.status_code == 201 and in_place.json()["folder"] == "ops/bloom-v1"
    assert sorted(p.name for p in (artifacts_root / "ops").iterdir()) == ["bloom-bin-v1", "bloom-v1"]

    # ... but not with links that reach outside it
    linked = artifacts_root / "linked"
    linked.mkdir()
    for path in tiny_bloom.iterdir():
        (linked / path.name).symlink_to(path)
    outside = api_client.post(IMPORT_URL, {"folder": str(linked), "name": "linked"}, format="json")
    assert outside.status_code == 400 and "outside ARTIFACTS_ROOT" in outside.json()["error"]["message"]
    missing = api_client.post(IMPORT_URL, {"folder": str(tmp_path / "nope"), "name": "x"}, format="json")
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "folder"
    not_model = api_client.post(IMPORT_URL, {"folder": str(tmp_path), "name": "x"}, format="json")
    assert not_model.status_code == 400 and "no config.json in folder" in not_model.json()["error"]["message"]
    assert ModelArtifact.objects.count() == 3


def test_download_round_trip(api_client, alice, bob, artifacts_root, tiny_bloom) -> None:
    first = _upload(api_client, alice, _tarball(tiny_bloom), name="bloom").json()
    response = api_client.get(f"/api/models/{first['id']}/download", HTTP_ACCEPT="application/gzip")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/gzip"
    assert response["Content-Disposition"] == 'attachment; filename="bloom-v1.tar.gz"'
    data = b"".join(response.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert {m.name.split("/")[0] for m in tar.getmembers()} == {"bloom-v1"}
        assert all(m.isreg() or m.isdir() for m in tar.getmembers())

    again = _upload(api_client, alice, data, filename="bloom-v1.tar.gz", name="reimported")
    assert again.status_code == 201, again.content
    assert again.json()["num_parameters"] == first["num_parameters"]
    assert _hashes(artifacts_root / again.json()["folder"]) == _hashes(artifacts_root / first["folder"]) == _hashes(tiny_bloom)

    api_client.force_authenticate(bob)
    theirs = api_client.get(f"/api/models/{first['id']}/download")
    assert theirs.status_code == 404 and theirs.json()["error"]["type"] == "not_found_error"


def test_download_streams_in_pieces_and_the_asgi_stream_is_the_same(alice, artifacts_root) -> None:
    folder = artifacts_root / "big"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(os.urandom(6 * 1024 * 1024))
    (folder / "sub").mkdir()
    (folder / "sub" / "note.txt").write_text("hello")
    artifact = artifact_register(owner=alice, name="big one", architecture="x", kind="base", folder=folder)
    export = artifact_export(artifact=artifact)
    assert export.filename == "big-one-v1.tar.gz"
    pieces = list(export.chunks())
    assert len(pieces) > 3 and max(map(len, pieces)) < 2 * 1024 * 1024  # never the whole file at once

    async def collect() -> bytes:
        return b"".join([piece async for piece in export.achunks()])

    assert asyncio.run(collect()) == b"".join(pieces)
    with tarfile.open(fileobj=io.BytesIO(b"".join(pieces)), mode="r:gz") as tar:
        assert tar.getnames() == ["big-one-v1", "big-one-v1/sub", "big-one-v1/sub/note.txt", "big-one-v1/weights.bin"]
        assert tar.extractfile("big-one-v1/weights.bin").read() == (folder / "weights.bin").read_bytes()


def test_pages(client, make_user, alice, bob, artifacts_root, tiny_bloom) -> None:
    client.force_login(alice)
    listing = client.get(reverse("registry:artifact-list")).content.decode()
    assert reverse("registry:import") in listing
    page = client.get(reverse("registry:import"))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="tarball-form"' in html and "model_import.js" in html and "<progress" in html
    assert 'id="folder-form"' not in html  # staff only
    assert client.post(reverse("registry:import"), {"form": "folder", "folder-folder": str(tiny_bloom)}).status_code == 403

    # without the page script the form posts to the page
    refused = client.post(reverse("registry:import"), {
        "form": "tarball", "tarball-name": "evil", "tarball-kind": "base",
        "tarball-file": SimpleUploadedFile("evil.tar.gz", _tarball(tiny_bloom, extra=[("../x", b"x", {})])),
    })
    assert refused.status_code == 400 and "escapes the folder" in refused.content.decode()
    done = client.post(reverse("registry:import"), {
        "form": "tarball", "tarball-name": "", "tarball-kind": "base",
        "tarball-file": SimpleUploadedFile("bloom-tiny.tgz", _tarball(tiny_bloom)),
    })
    artifact = ModelArtifact.objects.get()
    assert artifact.name == "bloom-tiny"
    assert done.status_code == 302 and done["Location"] == reverse("registry:artifact-detail", args=[artifact.pk])
    detail = client.get(done["Location"]).content.decode()
    assert "Download .tar.gz" in detail and f"/api/models/{artifact.pk}/download" in detail
    assert "Serve locally" in detail  # the page's other parts are kept

    client.force_login(make_user("ops", staff=True))
    staff_page = client.get(reverse("registry:import")).content.decode()
    assert 'id="folder-form"' in staff_page
    imported = client.post(reverse("registry:import"), {"form": "folder", "folder-folder": str(tiny_bloom), "folder-name": "", "folder-kind": "base"})
    assert imported.status_code == 302
    assert ModelArtifact.objects.filter(owner__username="ops", name="bloom").exists()
    client.force_login(bob)
    assert client.get(reverse("registry:artifact-detail", args=[artifact.pk])).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_download_under_asgi_is_an_async_stream(alice, alice_key, artifacts_root, tiny_bloom) -> None:
    from django.test import AsyncClient

    folder = artifacts_root / "bloom"
    folder.mkdir()
    for path in tiny_bloom.iterdir():
        (folder / path.name).write_bytes(path.read_bytes())
    artifact = artifact_register(owner=alice, name="bloom", architecture="BloomForCausalLM", kind="base", folder=folder)

    async def fetch() -> tuple[bool, bytes]:
        response = await AsyncClient().get(f"/api/models/{artifact.pk}/download", headers={"Authorization": f"Bearer {alice_key}"})
        assert response.status_code == 200
        return response.is_async, b"".join([piece async for piece in response.streaming_content])

    is_async, data = asyncio.run(fetch())
    assert is_async  # Django would read a sync iterator into one list under ASGI
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        assert tar.extractfile("bloom-v1/model.safetensors").read() == (tiny_bloom / "model.safetensors").read_bytes()


def _lora_adapter(tiny_bloom: Path, out: Path) -> tuple[Path, int]:
    """What peft's save_pretrained writes for a LoRA on the tiny BLOOM (and
    what a LoRA training run keeps in adapter/), with its trainable count."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_bloom),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["query_key_value"], task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.save_pretrained(out)
    return out, trainable


def test_a_lora_adapter_imports_with_kind_adapter(api_client, alice, artifacts_root, tiny_bloom, tmp_path) -> None:
    adapter, trainable = _lora_adapter(tiny_bloom, tmp_path / "lora")
    as_base = _upload(api_client, alice, _tarball(adapter), name="lora")
    assert as_base.status_code == 400
    assert as_base.json()["error"]["param"] == "file"
    assert "no config.json" in as_base.json()["error"]["message"] and "kind adapter" in as_base.json()["error"]["message"]
    assert not ModelArtifact.objects.exists()

    response = _upload(api_client, alice, _tarball(adapter, top="lora"), name="lora", kind="adapter")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "adapter" and body["architecture"] == "LORA adapter (r=4)"
    assert body["num_parameters"] == trainable
    artifact = ModelArtifact.objects.get(pk=body["id"])
    assert (artifacts_root / artifact.folder / "adapter_config.json").is_file()

    # A full model is not an adapter, and the message says what to do.
    wrong = _upload(api_client, alice, _tarball(tiny_bloom), name="full", kind="adapter")
    assert wrong.status_code == 400
    assert "not a PEFT adapter" in wrong.json()["error"]["message"] and "kind base" in wrong.json()["error"]["message"]
