from __future__ import annotations

from django.contrib import admin

from webapp.evaluations.models import EvalItem, Evaluation, Judgment


@admin.register(Evaluation)
class EvaluationAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "status", "phase", "attempt", "judgments_done", "judgments_total", "judge_failures",
                    "owner", "created_at")
    list_filter = ("status", "mode", "language")
    search_fields = ("id", "name", "owner__username", "judge_model", "error")
    raw_id_fields = ("owner", "dataset", "a_deployment", "b_deployment", "reward_model")
    # The judge key, even encrypted, is not shown or editable here.
    exclude = ("judge_api_key_encrypted",)
    readonly_fields = ("report", "heartbeat_at", "started_at", "finished_at", "prompt_tokens", "completion_tokens")


@admin.register(EvalItem)
class EvalItemAdmin(admin.ModelAdmin):
    list_display = ("evaluation", "position", "question_id", "category")
    list_filter = ("category",)
    raw_id_fields = ("evaluation",)


@admin.register(Judgment)
class JudgmentAdmin(admin.ModelAdmin):
    list_display = ("item", "order", "parsed", "verdict", "score_a", "score_b", "latency_ms")
    list_filter = ("order", "parsed")
    raw_id_fields = ("item",)
