from __future__ import annotations

from django.contrib import admin

from webapp.deployments.models import Deployment


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "status", "enabled", "shared", "owner", "checked_at")
    list_filter = ("kind", "status", "enabled", "shared")
    search_fields = ("name", "server_model", "endpoint_url", "owner__username")
    raw_id_fields = ("artifact",)
    exclude = ("upstream_api_key",)
