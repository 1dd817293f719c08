from __future__ import annotations

from django.contrib import admin

from webapp.datasets.models import Dataset, Mixture, MixtureComponent


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "kind", "format", "status", "rows", "error_count", "owner", "created_at")
    list_filter = ("kind", "status")
    search_fields = ("name", "original_name", "owner__username")
    readonly_fields = ("folder", "row_offsets", "stats", "errors")


class MixtureComponentInline(admin.TabularInline):
    model = MixtureComponent
    extra = 0
    raw_id_fields = ("dataset",)


@admin.register(Mixture)
class MixtureAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "rows", "seed", "owner", "created_at")
    inlines = [MixtureComponentInline]
    readonly_fields = ("folder", "per_source")
