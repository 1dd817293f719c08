"""REST for the chat console (/api/chat/…): conversations, feedback, arena
votes, preference export. Streaming is the websocket's (consumers.py)."""
from __future__ import annotations

import json

from django.db.models import QuerySet
from django.http import HttpResponse
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.chat import preferences, selectors, services
from webapp.chat.models import ArenaBattle, Conversation
from webapp.chat.serializers import (
    ArenaBattleSerializer,
    ChatModelSerializer,
    ConversationCreateSerializer,
    ConversationDetailSerializer,
    ConversationSerializer,
    ConversationUpdateSerializer,
    FeedbackInputSerializer,
    MessageSerializer,
    PreferenceExportSerializer,
    VoteInputSerializer,
)
from webapp.datasets.serializers import DatasetSerializer
from webapp.deployments.models import Deployment


class ChatModelListApi(generics.ListAPIView):
    serializer_class = ChatModelSerializer
    pagination_class = None

    def get_queryset(self) -> QuerySet[Deployment]:
        return selectors.chat_deployments(user=self.request.user)


class ConversationListApi(generics.ListAPIView):
    serializer_class = ConversationSerializer

    def get_queryset(self) -> QuerySet[Conversation]:
        return selectors.conversation_list(user=self.request.user)

    def post(self, request: Request) -> Response:
        data = ConversationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        conversation = services.conversation_create(
            owner=request.user, model=values["model"] or None, system_prompt=values["system_prompt"],
            params=values["params"], title=values["title"],
        )
        return Response(ConversationSerializer(conversation).data, status=status.HTTP_201_CREATED)


def _detail(conversation: Conversation, request: Request) -> Response:
    thread = selectors.thread(conversation=conversation, user=request.user)
    return Response(ConversationDetailSerializer(conversation, context={"thread": thread}).data)


class ConversationDetailApi(APIView):
    def get(self, request: Request, pk: int) -> Response:
        return _detail(selectors.conversation_get(user=request.user, pk=pk), request)

    def patch(self, request: Request, pk: int) -> Response:
        conversation = selectors.conversation_get(user=request.user, pk=pk)
        data = ConversationUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.conversation_update(conversation=conversation, **data.validated_data)
        return _detail(conversation, request)

    def delete(self, request: Request, pk: int) -> Response:
        services.conversation_delete(conversation=selectors.conversation_get(user=request.user, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConversationExportApi(APIView):
    """The conversation as a JSON file download."""

    def get(self, request: Request, pk: int) -> HttpResponse:
        conversation = selectors.conversation_get(user=request.user, pk=pk)
        body = json.dumps(selectors.conversation_export(conversation=conversation), ensure_ascii=False, indent=2)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="conversation-{conversation.pk}.json"'
        return response


class FeedbackApi(APIView):
    """POST rates an answer (again: replaces), DELETE takes the rating back."""

    def post(self, request: Request, pk: int) -> Response:
        message = selectors.answer_get(user=request.user, pk=pk)
        data = FeedbackInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        feedback = services.feedback_set(owner=request.user, message=message, **data.validated_data)
        message.my_feedback = feedback  # type: ignore[attr-defined]
        return Response(MessageSerializer(message).data)

    def delete(self, request: Request, pk: int) -> Response:
        services.feedback_delete(owner=request.user, message=selectors.answer_get(user=request.user, pk=pk))
        return Response(status=status.HTTP_204_NO_CONTENT)


class BattleListApi(generics.ListAPIView):
    serializer_class = ArenaBattleSerializer

    def get_queryset(self) -> QuerySet[ArenaBattle]:
        return selectors.battle_list(user=self.request.user)


class BattleDetailApi(APIView):
    def get(self, request: Request, pk: int) -> Response:
        return Response(ArenaBattleSerializer(selectors.battle_get(user=request.user, pk=pk)).data)


class BattleVoteApi(APIView):
    def post(self, request: Request, pk: int) -> Response:
        battle = selectors.battle_get(user=request.user, pk=pk)
        data = VoteInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(ArenaBattleSerializer(services.arena_vote(battle=battle, **data.validated_data)).data)


class PreferenceExportApi(APIView):
    """One click: votes and 👍/👎 pairs → a preference dataset (201)."""

    def post(self, request: Request) -> Response:
        data = PreferenceExportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        export = preferences.preferences_export(
            owner=request.user, name=data.validated_data["name"] or preferences.DEFAULT_NAME
        )
        body = {"dataset": DatasetSerializer(export.dataset).data,
                "pairs": {"arena": export.from_arena, "feedback": export.from_feedback}}
        return Response(body, status=status.HTTP_201_CREATED)
