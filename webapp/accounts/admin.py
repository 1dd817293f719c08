from __future__ import annotations

from django.contrib import admin

from webapp.accounts.models import ApiKey


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "prefix", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix", "owner__username")
    # The digest is useless to a human and keys are created through the UI or
    # the create_api_key command, which show the raw key once.
    readonly_fields = ("prefix", "digest", "created_at", "last_used_at")

    def has_add_permission(self, request: object) -> bool:
        return False
