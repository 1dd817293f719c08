"""The beat's health check runs in a real Celery worker and records each
enabled deployment's status."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import celery_worker
from webapp.deployments.models import Deployment
from webapp.deployments.services import DeploymentSpec, deployment_create
from webapp.deployments.tasks import check_deployments_health
from webapp.lib.embedded_redis import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def test_beat_task_refreshes_every_enabled_deployment(alice, tiny_bloom: Path, tmp_path: Path) -> None:
    deployment_create(owner=alice, spec=DeploymentSpec(name="good", kind="local", model_path=str(tiny_bloom)))
    deployment_create(owner=alice, spec=DeploymentSpec(name="gone", kind="openai", server_model="m",
                                                       endpoint_url=f"http://127.0.0.1:{free_port()}/v1"))
    deployment_create(owner=alice, spec=DeploymentSpec(name="off", kind="local", model_path=str(tiny_bloom), enabled=False))
    with celery_worker(log_dir=tmp_path):
        assert check_deployments_health.delay().get(timeout=120) == 2
    status = {d.name: d for d in Deployment.objects.all()}
    assert status["good"].status == "healthy" and status["good"].checked_at is not None
    assert status["gone"].status == "unhealthy" and "unreachable" in status["gone"].status_detail
    assert status["off"].status == "unknown" and status["off"].checked_at is None
