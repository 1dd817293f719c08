"""REST /api/deployments/: owner scoping, validation with the field named,
conflicts, write-only secrets, health checks and the quick prompt."""
from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from webapp.deployments.models import Deployment
from webapp.lib.embedded_redis import free_port

pytestmark = pytest.mark.django_db


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def local(tiny_bloom: Path, **extra) -> dict:
    return {"name": "tiny-local", "kind": "local", "model_path": str(tiny_bloom), **extra}


def test_create_list_and_read_back(alice, bob, tiny_bloom: Path) -> None:
    created = as_user(alice).post("/api/deployments/", local(tiny_bloom, default_params={"temperature": 0.7}), format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["status"] == "unknown" and body["owner"] == "alice" and body["default_params"] == {"temperature": 0.7}
    assert Deployment.objects.get(name="tiny-local").owner == alice
    listed = as_user(alice).get("/api/deployments/").json()
    names = [d["name"] for d in (listed["results"] if isinstance(listed, dict) else listed)]
    assert names == ["tiny-local"]
    bob_listed = as_user(bob).get("/api/deployments/").json()
    assert (bob_listed["results"] if isinstance(bob_listed, dict) else bob_listed) == []


@pytest.mark.parametrize("fields, param", [
    ({"name": "bad name!"}, "name"),
    ({"kind": "tgi"}, "kind"),
    ({"model_path": ""}, "artifact"),
    ({"model_path": "/nowhere/at/all"}, "model_path"),
    ({"default_params": {"temperature": 9}}, "default_params"),
    ({"prompt_template": "no slot"}, "prompt_template"),
    ({"kind": "openai", "model_path": ""}, "endpoint_url"),
    ({"kind": "triton", "endpoint_url": "grpc://h:8001", "server_model": "m", "options": {"protocol": "onnx"}}, "options"),
])
def test_invalid_input_is_400_naming_the_field_and_stores_nothing(alice, tiny_bloom: Path, fields: dict, param: str) -> None:
    response = as_user(alice).post("/api/deployments/", {**local(tiny_bloom), **fields}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"] == param
    assert not Deployment.objects.exists()


def test_duplicate_name_is_409(alice, bob, tiny_bloom: Path) -> None:
    assert as_user(alice).post("/api/deployments/", local(tiny_bloom), format="json").status_code == 201
    again = as_user(bob).post("/api/deployments/", local(tiny_bloom), format="json")
    assert again.status_code == 409 and again.json()["error"]["param"] == "name"
    assert Deployment.objects.count() == 1


def test_upstream_key_is_write_only_and_kept_when_blank(alice) -> None:
    spec = {"name": "vllm", "kind": "openai", "endpoint_url": "http://gpu:8000/v1", "server_model": "qwen",
            "upstream_api_key": "sk-secret"}
    body = as_user(alice).post("/api/deployments/", spec, format="json").json()
    assert "upstream_api_key" not in body and body["has_upstream_api_key"] is True
    patched = as_user(alice).patch(f"/api/deployments/{body['id']}/", {"upstream_api_key": "", "shared": True}, format="json")
    assert patched.status_code == 200 and patched.json()["shared"] is True
    assert Deployment.objects.get(pk=body["id"]).upstream_api_key == "sk-secret"


def test_another_users_deployment_is_404_everywhere(alice, bob, tiny_bloom: Path) -> None:
    pk = as_user(alice).post("/api/deployments/", local(tiny_bloom), format="json").json()["id"]
    client = as_user(bob)
    assert client.get(f"/api/deployments/{pk}/").status_code == 404
    assert client.patch(f"/api/deployments/{pk}/", {"enabled": False}, format="json").status_code == 404
    assert client.post(f"/api/deployments/{pk}/check/").status_code == 404
    assert client.post(f"/api/deployments/{pk}/try/", {"prompt": "hi"}, format="json").status_code == 404
    assert client.delete(f"/api/deployments/{pk}/").status_code == 404
    assert Deployment.objects.get(pk=pk).enabled


def test_check_now_records_health(alice, tiny_bloom: Path) -> None:
    client = as_user(alice)
    good = client.post("/api/deployments/", local(tiny_bloom), format="json").json()
    down = client.post("/api/deployments/", {"name": "down", "kind": "openai", "server_model": "m",
                                              "endpoint_url": f"http://127.0.0.1:{free_port()}/v1"}, format="json").json()
    checked = client.post(f"/api/deployments/{good['id']}/check/").json()
    assert checked["status"] == "healthy" and checked["checked_at"]
    failed = client.post(f"/api/deployments/{down['id']}/check/").json()
    assert failed["status"] == "unhealthy" and "unreachable" in failed["status_detail"]


def test_test_connection_does_not_save(alice, tiny_bloom: Path) -> None:
    client = as_user(alice)
    ok = client.post("/api/deployments/test/", local(tiny_bloom), format="json").json()
    assert ok["ok"] is True
    refused = client.post("/api/deployments/test/", {"name": "x", "kind": "triton", "server_model": "m",
                                                      "endpoint_url": f"grpc://127.0.0.1:{free_port()}",
                                                      "model_path": str(tiny_bloom)}, format="json").json()
    assert refused["ok"] is False and refused["detail"]
    assert not Deployment.objects.exists()


def test_try_and_delete(alice, tiny_bloom: Path) -> None:
    client = as_user(alice)
    pk = client.post("/api/deployments/", local(tiny_bloom), format="json").json()["id"]
    answer = client.post(f"/api/deployments/{pk}/try/", {"prompt": "空气炸锅多少钱?", "max_tokens": 6}, format="json").json()
    assert 1 <= answer["completion_tokens"] <= 6 and answer["prompt_tokens"] > 0 and answer["finish_reason"] in ("stop", "length")
    assert client.delete(f"/api/deployments/{pk}/").status_code == 204
    assert not Deployment.objects.exists()


def test_api_requires_authentication(tiny_bloom: Path) -> None:
    response = APIClient().get("/api/deployments/")
    assert response.status_code == 401 and response.json()["error"]["type"] == "authentication_error"
