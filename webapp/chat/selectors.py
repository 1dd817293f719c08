"""Reads for the chat console. Conversations, feedback and battles are
private: owner only, staff included (a chat is a personal notebook, not a
managed resource), so another user's id is simply absent (404 / "no
conversation with id N")."""
from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Prefetch, QuerySet

from webapp.chat.models import ArenaBattle, Conversation, Feedback, Message, Role
from webapp.core.errors import NotFound
from webapp.deployments.models import BackendKind, Deployment
from webapp.deployments.selectors import servable_deployments

User = AbstractBaseUser | AnonymousUser


def _id(pk: Any) -> int:
    """An id from a URL or a socket frame: an integer or its digits (not
    true, 1.5 or "1e3")."""
    if isinstance(pk, int) and not isinstance(pk, bool):
        return pk
    if isinstance(pk, str) and pk.isdigit():
        return int(pk)
    raise ValueError(pk)


def _own(queryset: QuerySet[Any], user: User) -> QuerySet[Any]:
    return queryset.filter(owner=user) if user.is_authenticated else queryset.none()


def chat_deployments(*, user: AbstractBaseUser) -> QuerySet[Deployment]:
    """The model picker: what the user may call (as /v1 does), minus
    embedding models."""
    return servable_deployments(user=user).exclude(kind=BackendKind.EMBEDDING)


def conversation_list(*, user: User) -> QuerySet[Conversation]:
    return _own(Conversation.objects.all(), user)


def conversation_get(*, user: User, pk: Any) -> Conversation:
    try:
        return conversation_list(user=user).get(pk=_id(pk))
    except (Conversation.DoesNotExist, TypeError, ValueError):
        raise NotFound(f"no conversation with id {pk}", field="conversation") from None


def thread(*, conversation: Conversation, user: User | None = None) -> list[Message]:
    """The active messages in order, each with `my_feedback` (the user's
    Feedback or None) when `user` is given."""
    messages = conversation.messages.filter(active=True).order_by("id")
    if user is not None and user.is_authenticated:
        messages = messages.prefetch_related(
            Prefetch("feedback", queryset=Feedback.objects.filter(owner=user), to_attr="mine")
        )
    rows = list(messages)
    for message in rows:
        mine = getattr(message, "mine", [])
        message.my_feedback = mine[0] if mine else None  # type: ignore[attr-defined]
    return rows


def answer_get(*, user: User, pk: Any) -> Message:
    """An answer in one of the user's conversations (what feedback rates)."""
    answers = Message.objects.select_related("conversation").filter(role=Role.ASSISTANT)
    try:
        return answers.filter(conversation__in=conversation_list(user=user)).get(pk=_id(pk))
    except (Message.DoesNotExist, TypeError, ValueError):
        raise NotFound(f"no answer with id {pk}", field="message") from None


def battle_list(*, user: User) -> QuerySet[ArenaBattle]:
    return _own(ArenaBattle.objects.all(), user)


def battle_get(*, user: User, pk: Any) -> ArenaBattle:
    try:
        return battle_list(user=user).get(pk=_id(pk))
    except (ArenaBattle.DoesNotExist, TypeError, ValueError):
        raise NotFound(f"no battle with id {pk}", field="battle") from None


def conversation_export(*, conversation: Conversation) -> dict[str, Any]:
    """The conversation as JSON: settings and the active thread with each
    answer's model, parameters, usage, timing, status and feedback."""
    messages = []
    for message in thread(conversation=conversation, user=conversation.owner):
        item: dict[str, Any] = {
            "id": message.pk,
            "role": message.role,
            "content": message.content,
            "created_at": message.created_at.isoformat(),
        }
        if message.role == Role.ASSISTANT:
            feedback = message.my_feedback  # type: ignore[attr-defined]
            item.update({
                "model": message.model_name,
                "params": message.params,
                "status": message.status,
                "error": message.error or None,
                "finish_reason": message.finish_reason or None,
                "usage": {"prompt_tokens": message.prompt_tokens, "completion_tokens": message.completion_tokens},
                "latency_ms": message.latency_ms,
                "ttft_ms": message.ttft_ms,
                "feedback": {"rating": feedback.rating, "comment": feedback.comment} if feedback else None,
            })
        messages.append(item)
    return {
        "id": conversation.pk,
        "title": conversation.title,
        "model": conversation.model_name,
        "system_prompt": conversation.system_prompt,
        "params": conversation.params,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "messages": messages,
    }
