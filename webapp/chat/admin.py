from __future__ import annotations

from django.contrib import admin

from webapp.chat.models import ArenaBattle, Conversation, Feedback, Message


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "owner", "model_name", "updated_at")
    search_fields = ("title", "owner__username", "model_name")
    raw_id_fields = ("owner", "deployment")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("id", "conversation", "role", "status", "active", "model_name", "completion_tokens", "created_at")
    list_filter = ("role", "status", "active")
    raw_id_fields = ("conversation", "reply_to")


@admin.register(Feedback)
class FeedbackAdmin(admin.ModelAdmin):
    list_display = ("id", "message", "owner", "rating", "updated_at")
    raw_id_fields = ("message", "owner")


@admin.register(ArenaBattle)
class ArenaBattleAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "model_a", "model_b", "anonymous", "vote", "created_at")
    list_filter = ("vote", "anonymous")
    raw_id_fields = ("owner", "deployment_a", "deployment_b")
