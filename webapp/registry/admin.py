from __future__ import annotations

from django.contrib import admin

from webapp.registry.models import ModelArtifact


@admin.register(ModelArtifact)
class ModelArtifactAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "kind", "architecture", "owner", "parent", "created_at")
    list_filter = ("kind", "architecture")
    search_fields = ("name", "folder", "owner__username")
    raw_id_fields = ("parent",)
