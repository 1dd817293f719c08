from __future__ import annotations

from django.contrib import admin

from webapp.jobs.models import Job, JobEvent, Pipeline


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "stage", "status", "attempt", "step", "total_steps", "owner", "worker", "created_at")
    list_filter = ("stage", "status", "queue")
    search_fields = ("id", "owner__username", "worker", "error")
    raw_id_fields = ("base_artifact", "dataset", "mixture", "eval_dataset", "output_artifact", "pipeline", "depends_on")
    readonly_fields = ("event_seq", "metrics", "eval_metrics", "result", "heartbeat_at", "pid")


@admin.register(JobEvent)
class JobEventAdmin(admin.ModelAdmin):
    list_display = ("job", "seq", "attempt", "kind", "created_at")
    list_filter = ("kind",)
    raw_id_fields = ("job",)


@admin.register(Pipeline)
class PipelineAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "owner", "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("id", "name", "owner__username", "error")
    raw_id_fields = ("base_artifact",)
