from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from webapp.core.errors import ValidationFailed
from webapp.registry.models import ModelArtifact
from webapp.registry.services import artifact_register

pytestmark = pytest.mark.django_db


def _folder(root: Path, name: str) -> Path:
    path = root / name
    path.mkdir(parents=True)
    return path


def _register(owner, root: Path, name: str = "bloom-tiny", **kwargs) -> ModelArtifact:
    folder = kwargs.pop("folder", None) or _folder(root, f"{owner.username}-{name}-{ModelArtifact.objects.count()}")
    defaults = {"architecture": "BloomForCausalLM", "kind": "base"}
    defaults.update(kwargs)
    return artifact_register(owner=owner, name=name, folder=folder, **defaults)


def test_register_numbers_versions_per_owner_and_name(alice, bob, artifacts_root) -> None:
    first = _register(alice, artifacts_root)
    second = _register(alice, artifacts_root)
    other = _register(bob, artifacts_root)
    assert (first.version, second.version, other.version) == (1, 2, 1)
    assert first.folder == "alice-bloom-tiny-0"  # stored relative to ARTIFACTS_ROOT


def test_register_rejects_folders_outside_the_root_and_stores_nothing(alice, artifacts_root, tmp_path) -> None:
    outside = _folder(tmp_path, "elsewhere")
    with pytest.raises(ValidationFailed, match="outside ARTIFACTS_ROOT"):
        _register(alice, artifacts_root, folder=outside)
    with pytest.raises(ValidationFailed, match="does not exist"):
        artifact_register(owner=alice, name="x", architecture="a", kind="base", folder="missing")
    with pytest.raises(ValidationFailed, match="kind must be one of"):
        _register(alice, artifacts_root, kind="checkpoint")
    assert not ModelArtifact.objects.exists()


def test_api_lists_only_the_owners_artifacts(api_client, alice, bob, alice_key, artifacts_root) -> None:
    mine = _register(alice, artifacts_root)
    _register(bob, artifacts_root, name="bobs")
    response = api_client.get("/api/models/", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [mine.pk]
    assert response.json()["results"][0]["owner"] == "alice"


def test_another_users_artifact_is_404_in_api_and_pages(api_client, client, alice, bob, alice_key, artifacts_root) -> None:
    theirs = _register(bob, artifacts_root, name="bobs")
    api = api_client.get(f"/api/models/{theirs.pk}/", HTTP_AUTHORIZATION=f"Bearer {alice_key}")
    assert api.status_code == 404
    assert api.json()["error"]["type"] == "not_found_error"
    client.force_login(alice)
    assert client.get(reverse("registry:artifact-detail", args=[theirs.pk])).status_code == 404
    assert "bobs" not in client.get(reverse("registry:artifact-list")).content.decode()


def test_staff_see_every_owners_artifacts(client, make_user, alice, artifacts_root) -> None:
    theirs = _register(alice, artifacts_root)
    staff = make_user("ops", staff=True)
    client.force_login(staff)
    assert client.get(reverse("registry:artifact-detail", args=[theirs.pk])).status_code == 200
    assert "bloom-tiny" in client.get(reverse("registry:artifact-list")).content.decode()


def test_detail_page_shows_lineage(client, alice, artifacts_root) -> None:
    base = _register(alice, artifacts_root, name="bloom-560m")
    sft = _register(alice, artifacts_root, name="ecom-sft", kind="policy", parent=base)
    rm = _register(alice, artifacts_root, name="ecom-rm", kind="reward", parent=sft)
    client.force_login(alice)
    response = client.get(reverse("registry:artifact-detail", args=[rm.pk]))
    assert response.status_code == 200
    assert [a.pk for a in response.context["lineage"]] == [base.pk, sft.pk, rm.pk]
    base_page = client.get(reverse("registry:artifact-detail", args=[base.pk]))
    assert [a.pk for a in base_page.context["children"]] == [sft.pk]


def test_empty_registry_says_what_to_do_next(client, alice) -> None:
    client.force_login(alice)
    body = client.get(reverse("registry:artifact-list")).content.decode()
    assert "No models yet" in body and "make run" in body
