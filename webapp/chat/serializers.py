from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.chat.markdown import render_markdown
from webapp.chat.models import ArenaBattle, Conversation, Message, Role
from webapp.chat.preferences import DEFAULT_NAME
from webapp.deployments.models import Deployment


class ChatModelSerializer(serializers.ModelSerializer):
    """The model picker: name, health and the parameter panel's defaults."""

    owner = serializers.CharField(source="owner.username", read_only=True)

    class Meta:
        model = Deployment
        fields = ["id", "name", "kind", "status", "status_detail", "default_params", "description", "owner", "shared"]
        read_only_fields = fields


class ConversationSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model_name", read_only=True)

    class Meta:
        model = Conversation
        fields = ["id", "title", "model", "deployment", "system_prompt", "params", "created_at", "updated_at"]
        read_only_fields = fields


class MessageSerializer(serializers.ModelSerializer):
    """`html`: an answer's Markdown as sanitised HTML (webapp.chat.markdown);
    null for user messages, which pages show as plain text."""

    model = serializers.CharField(source="model_name", read_only=True)
    feedback = serializers.SerializerMethodField()
    html = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = [
            "id", "role", "content", "html", "reply_to", "model", "params", "status", "error", "finish_reason",
            "prompt_tokens", "completion_tokens", "latency_ms", "ttft_ms", "feedback", "created_at",
        ]
        read_only_fields = fields

    def get_feedback(self, message: Message) -> dict[str, Any] | None:
        feedback = getattr(message, "my_feedback", None)
        return {"rating": feedback.rating, "comment": feedback.comment} if feedback else None

    def get_html(self, message: Message) -> str | None:
        return render_markdown(message.content) if message.role == Role.ASSISTANT else None


class ConversationDetailSerializer(ConversationSerializer):
    messages = serializers.SerializerMethodField()

    class Meta(ConversationSerializer.Meta):
        fields = [*ConversationSerializer.Meta.fields, "messages"]
        read_only_fields = fields

    def get_messages(self, conversation: Conversation) -> list[dict[str, Any]]:
        return MessageSerializer(self.context["thread"], many=True).data


class ConversationCreateSerializer(serializers.Serializer):
    model = serializers.CharField(required=False, allow_blank=True, default="")
    system_prompt = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    params = serializers.JSONField(required=False, default=dict)
    title = serializers.CharField(required=False, allow_blank=True, default="")


class ConversationUpdateSerializer(serializers.Serializer):
    title = serializers.CharField(required=False, allow_blank=True)
    system_prompt = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)


class FeedbackInputSerializer(serializers.Serializer):
    rating = serializers.IntegerField()
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class ArenaBattleSerializer(serializers.ModelSerializer):
    """Model names stay null until the vote when the battle is anonymous.
    `html_a`/`html_b`: the answers as sanitised HTML."""

    model_a = serializers.SerializerMethodField()
    model_b = serializers.SerializerMethodField()
    html_a = serializers.SerializerMethodField()
    html_b = serializers.SerializerMethodField()
    revealed = serializers.BooleanField(read_only=True)
    finished = serializers.BooleanField(read_only=True)

    class Meta:
        model = ArenaBattle
        fields = [
            "id", "prompt", "system_prompt", "params", "anonymous", "revealed", "finished", "model_a", "model_b",
            "answer_a", "answer_b", "html_a", "html_b", "status_a", "status_b", "error_a", "error_b", "stats_a", "stats_b",
            "vote", "voted_at", "created_at",
        ]
        read_only_fields = fields

    def get_model_a(self, battle: ArenaBattle) -> str | None:
        return battle.model_a if battle.revealed else None

    def get_model_b(self, battle: ArenaBattle) -> str | None:
        return battle.model_b if battle.revealed else None

    def get_html_a(self, battle: ArenaBattle) -> str:
        return render_markdown(battle.answer_a)

    def get_html_b(self, battle: ArenaBattle) -> str:
        return render_markdown(battle.answer_b)


class VoteInputSerializer(serializers.Serializer):
    vote = serializers.CharField()


class PreferenceExportSerializer(serializers.Serializer):
    name = serializers.CharField(required=False, allow_blank=True, default=DEFAULT_NAME)
