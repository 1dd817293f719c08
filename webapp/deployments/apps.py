from __future__ import annotations

from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "webapp.deployments"
    label = "deployments"
    verbose_name = "Deployments"
