from __future__ import annotations

from celery import shared_task

from webapp.deployments.services import deployments_check_all


@shared_task(name="deployments.check_health")
def check_deployments_health() -> int:
    """Periodic (beat): refresh every enabled deployment's status."""
    return deployments_check_all()
