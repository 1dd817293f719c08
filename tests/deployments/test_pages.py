"""The deployments pages: list, the register/edit form, detail, delete,
"serve locally" from a registry model, and the quick prompt's endpoint."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.urls import reverse

from inference.pool import pool
from webapp.deployments.models import Deployment
from webapp.deployments.services import DeploymentSpec, deployment_create
from webapp.registry.models import ModelArtifact
from webapp.registry.services import artifact_register

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_artifact(alice, artifacts_root: Path, tiny_bloom: Path) -> ModelArtifact:
    folder = artifacts_root / "tiny-bloom"
    shutil.copytree(tiny_bloom, folder)
    return artifact_register(owner=alice, name="tiny-bloom", architecture="BloomForCausalLM", kind="policy", folder=folder)


def _remote(owner, name: str = "gpu-box", **extra) -> Deployment:
    spec = DeploymentSpec(name=name, kind="openai", endpoint_url="http://gpu-box:8000/v1", server_model="qwen", **extra)
    return deployment_create(owner=owner, spec=spec)


def _form(**fields) -> dict[str, str]:
    """A POST of the form as a browser sends it (unchecked boxes absent)."""
    data = {
        "name": "ecom-bloom", "kind": "local", "endpoint_url": "", "server_model": "", "artifact": "",
        "model_path": "", "prompt_template": "User: {prompt}\r\n\r\nBot: ", "default_params": "",
        "protocol": "fastertransformer", "transport": "grpc", "upstream_api_key": "", "enabled": "on", "description": "",
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not None}


def test_list_shows_only_the_users_deployments(client, alice, bob) -> None:
    _remote(alice, "alices-model")
    _remote(bob, "bobs-model")
    client.force_login(alice)
    page = client.get(reverse("deployments:index")).content.decode()
    assert "alices-model" in page and "bobs-model" not in page
    assert 'data-status-for="' in page and "status-unknown" in page
    assert "http://gpu-box:8000/v1" in page


def test_empty_list_explains_deployments(client, alice) -> None:
    client.force_login(alice)
    page = client.get(reverse("deployments:index")).content.decode()
    assert "No deployments yet" in page and "Serve locally" in page


def test_register_a_local_deployment_through_the_form(client, alice, tiny_artifact) -> None:
    client.force_login(alice)
    assert client.get(reverse("deployments:new")).status_code == 200
    response = client.post(reverse("deployments:new"), _form(
        artifact=str(tiny_artifact.pk), default_params='{"temperature": 0.95, "top_p": 0.7, "max_tokens": 128}',
        endpoint_url="http://typed-before-switching-kind",
    ))
    deployment = Deployment.objects.get(name="ecom-bloom")
    assert response.status_code == 302 and response.url == reverse("deployments:detail", args=[deployment.pk])
    assert (deployment.owner, deployment.kind, deployment.artifact) == (alice, "local", tiny_artifact)
    assert deployment.prompt_template == "User: {prompt}\n\nBot: "  # the browser's CRLF is not stored
    assert deployment.default_params == {"temperature": 0.95, "top_p": 0.7, "max_tokens": 128}
    assert deployment.endpoint_url == "" and deployment.options == {}  # a local model has neither
    assert deployment.enabled and not deployment.shared
    detail = client.get(response.url).content.decode()
    assert "registered" in detail  # the success message
    assert 'model="ecom-bloom"' in detail and 'base_url="http://testserver/v1"' in detail


def test_register_a_triton_deployment_stores_its_options(client, alice, tiny_artifact) -> None:
    client.force_login(alice)
    response = client.post(reverse("deployments:new"), _form(
        name="ft-bloom", kind="triton", endpoint_url="triton:8001", server_model="fastertransformer",
        artifact=str(tiny_artifact.pk), protocol="fastertransformer", transport="grpc", stream="on",
    ))
    assert response.status_code == 302
    deployment = Deployment.objects.get(name="ft-bloom")
    assert deployment.options == {"protocol": "fastertransformer", "transport": "grpc", "stream": True}


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({}, "artifact", "needs a registry model or a model folder"),
    ({"model_path": "/nowhere/at/all"}, "model_path", "does not exist"),
    ({"default_params": "{temperature: 1"}, "default_params", "Enter a valid JSON"),
    ({"default_params": "[1, 2]"}, "default_params", "must be a JSON object"),
    ({"default_params": '{"temperature": 7}'}, "default_params", "between 0 and 2"),
    ({"name": "has spaces"}, "name", "letters, digits"),
    ({"prompt_template": "no placeholder"}, "prompt_template", "must contain {prompt}"),
    ({"kind": "openai"}, "endpoint_url", "needs an endpoint URL"),
    ({"kind": "sideways"}, "kind", "Select a valid choice"),
])
def test_invalid_form_shows_the_error_on_its_field_and_stores_nothing(client, alice, fields, field, message) -> None:
    client.force_login(alice)
    response = client.post(reverse("deployments:new"), _form(**fields))
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    page = response.content.decode()
    assert f'id="id_{field}_error"' in page and 'aria-invalid="true"' in page
    assert not Deployment.objects.exists()


def test_duplicate_name_is_shown_on_the_name_field(client, alice, bob, tiny_artifact) -> None:
    _remote(bob, "ecom-bloom")  # names are global: they are the ids /v1 clients send
    client.force_login(alice)
    response = client.post(reverse("deployments:new"), _form(artifact=str(tiny_artifact.pk)))
    assert response.status_code == 200
    assert "already exists" in " ".join(response.context["form"].errors["name"])
    assert Deployment.objects.count() == 1


def test_another_users_registry_model_cannot_be_chosen(client, bob, tiny_artifact) -> None:
    client.force_login(bob)
    response = client.post(reverse("deployments:new"), _form(artifact=str(tiny_artifact.pk)))
    assert response.status_code == 200 and "artifact" in response.context["form"].errors
    assert not Deployment.objects.exists()


def test_edit_keeps_the_stored_key_when_left_blank(client, alice) -> None:
    deployment = _remote(alice, upstream_api_key="sk-upstream-secret")
    client.force_login(alice)
    page = client.get(reverse("deployments:edit", args=[deployment.pk])).content.decode()
    assert 'value="gpu-box"' in page and "sk-upstream-secret" not in page and "A key is stored" in page
    response = client.post(reverse("deployments:edit", args=[deployment.pk]), _form(
        name="gpu-box-2", kind="openai", endpoint_url="http://gpu-box:9000/v1", server_model="qwen",
        description="moved", shared="on",
    ))
    assert response.status_code == 302
    deployment.refresh_from_db()
    assert (deployment.name, deployment.endpoint_url, deployment.description) == ("gpu-box-2", "http://gpu-box:9000/v1", "moved")
    assert deployment.shared and deployment.upstream_api_key == "sk-upstream-secret"


def test_edit_with_a_taken_name_changes_nothing(client, alice) -> None:
    deployment = _remote(alice, "first")
    _remote(alice, "second")
    client.force_login(alice)
    response = client.post(reverse("deployments:edit", args=[deployment.pk]), _form(
        name="second", kind="openai", endpoint_url="http://gpu-box:8000/v1", server_model="qwen",
    ))
    assert response.status_code == 200 and "already exists" in " ".join(response.context["form"].errors["name"])
    assert "<h1>Edit first</h1>" in response.content.decode()
    deployment.refresh_from_db()
    assert deployment.name == "first"


def test_detail_shows_the_facts_but_never_a_secret(client, alice) -> None:
    deployment = _remote(alice, upstream_api_key="sk-upstream-secret", default_params={"top_p": 0.7})
    Deployment.objects.filter(pk=deployment.pk).update(options={"api_key": "sk-in-options", "timeout_s": 30})
    client.force_login(alice)
    page = client.get(reverse("deployments:detail", args=[deployment.pk])).content.decode()
    assert "sk-upstream-secret" not in page and "sk-in-options" not in page
    assert "timeout_s" in page and "top_p" in page and "stored (not shown)" in page
    assert "client.chat.completions.create(" in page and "/v1/chat/completions" in page


def test_detail_of_an_embedding_model_shows_the_embeddings_call(client, alice, tiny_bloom) -> None:
    deployment = deployment_create(owner=alice, spec=DeploymentSpec(name="embedder", kind="embedding", model_path=str(tiny_bloom)))
    client.force_login(alice)
    page = client.get(reverse("deployments:detail", args=[deployment.pk])).content.decode()
    assert "client.embeddings.create(" in page and "/v1/embeddings" in page
    assert 'id="try"' not in page  # an embedding model has no prompt box


def test_delete(client, alice) -> None:
    deployment = _remote(alice)
    client.force_login(alice)
    assert client.get(reverse("deployments:delete", args=[deployment.pk])).status_code == 405
    response = client.post(reverse("deployments:delete", args=[deployment.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("deployments:index")
    assert "deleted" in response.content.decode()
    assert not Deployment.objects.exists()


def test_another_users_deployment_is_404(client, alice, bob) -> None:
    deployment = _remote(alice)
    client.force_login(bob)
    assert client.get(reverse("deployments:detail", args=[deployment.pk])).status_code == 404
    assert client.get(reverse("deployments:edit", args=[deployment.pk])).status_code == 404
    assert client.post(reverse("deployments:edit", args=[deployment.pk]), _form(name="stolen")).status_code == 404
    assert client.post(reverse("deployments:delete", args=[deployment.pk])).status_code == 404
    deployment.refresh_from_db()
    assert deployment.name == "gpu-box"


def test_serve_locally_from_the_registry_page(client, alice, bob, tiny_artifact) -> None:
    client.force_login(alice)
    artifact_page = reverse("registry:artifact-detail", args=[tiny_artifact.pk])
    serve_url = reverse("deployments:serve-locally", args=[tiny_artifact.pk])
    page = client.get(artifact_page).content.decode()
    assert f'action="{serve_url}"' in page and "Not deployed yet" in page
    response = client.post(serve_url)
    deployment = Deployment.objects.get()
    assert response.status_code == 302 and response.url == reverse("deployments:detail", args=[deployment.pk])
    assert (deployment.name, deployment.kind, deployment.artifact, deployment.owner) == ("tiny-bloom-v1", "local", tiny_artifact, alice)
    assert "tiny-bloom-v1" in client.get(artifact_page).content.decode()
    assert client.post(serve_url).status_code == 302
    assert Deployment.objects.filter(name="tiny-bloom-v1-2").exists()  # a second click: the next free name
    client.force_login(bob)
    assert client.post(serve_url).status_code == 404


def test_serve_locally_refuses_a_reward_model(client, alice, artifacts_root, tiny_bloom) -> None:
    folder = artifacts_root / "rm"
    shutil.copytree(tiny_bloom, folder)
    reward = artifact_register(owner=alice, name="rm", architecture="BloomForCausalLM", kind="reward", folder=folder)
    client.force_login(alice)
    response = client.post(reverse("deployments:serve-locally", args=[reward.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("registry:artifact-detail", args=[reward.pk])
    assert "does not generate text" in response.content.decode()
    assert not Deployment.objects.exists()


def test_quick_prompt_runs_the_local_model(client, alice, tiny_artifact) -> None:
    client.force_login(alice)
    client.post(reverse("deployments:serve-locally", args=[tiny_artifact.pk]))
    deployment = Deployment.objects.get()
    try:
        response = client.post(f"/api/deployments/{deployment.pk}/try/", {"prompt": "你好", "max_tokens": 8},
                               content_type="application/json")
        assert response.status_code == 200, response.content
        body = response.json()
        assert isinstance(body["text"], str) and body["finish_reason"] in ("stop", "length")
        assert 1 <= body["completion_tokens"] <= 8 and body["prompt_tokens"] > 0 and body["latency_ms"] >= 0
    finally:
        pool.discard(f"deployment:{deployment.pk}")  # stop the engine thread the call started
