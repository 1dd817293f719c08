"""Writes for the chat console: conversations, the turns the consumer
streams (send, regenerate, edit-and-resend), storing answers, feedback and
the arena. Preference export lives in `webapp.chat.preferences`.

A turn is planned here in one transaction — inputs checked with the same
rules and messages as /v1 (`inference.params.sampling_params`,
`inference.prompts.check_messages`), the deployment resolved among those the
user may call, the user message stored — and the consumer then streams it
(`webapp.chat.streaming.AnswerRun`) and stores the outcome with
`answer_store`. A refused turn stores nothing."""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from inference.base import GenerationRequest, InferenceError, SamplingParams
from inference.params import sampling_params
from inference.prompts import check_messages
from webapp.chat.models import ArenaBattle, Conversation, Feedback, Message, MessageStatus, Role, SideStatus, Vote
from webapp.chat.selectors import chat_deployments, conversation_get
from webapp.chat.streaming import Outcome
from webapp.core.errors import Conflict, NotFound, ValidationFailed
from webapp.deployments.models import Deployment, HealthStatus
from webapp.deployments.selectors import servable_deployment

MAX_CONTENT_CHARS = 100_000
MAX_SYSTEM_CHARS = 20_000
MAX_COMMENT_CHARS = 4_000
TITLE_CHARS = 60
# The parameter panel's fields (inference.params reads them; anything else is a client bug).
PARAM_FIELDS = (
    "temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "decoder", "seed",
    "penalty_alpha", "contrastive_top_k", "stop", "presence_penalty", "frequency_penalty", "max_length",
)


# ---------------------------------------------------------------- checks

def check_text(value: Any, *, field: str, limit: int = MAX_CONTENT_CHARS) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"'{field}' must be a non-empty string", field=field)
    if len(value) > limit:
        raise ValidationFailed(f"'{field}' is {len(value)} characters; the limit is {limit}", field=field)
    return value


def check_system_prompt(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationFailed("'system' must be a string", field="system")
    if len(value) > MAX_SYSTEM_CHARS:
        raise ValidationFailed(f"'system' is {len(value)} characters; the limit is {MAX_SYSTEM_CHARS}", field="system")
    return value


def check_params(params: Any) -> dict[str, Any]:
    """The panel's values: an object of known fields (values are checked
    against the deployment's defaults by `sampling_for`)."""
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ValidationFailed("'params' must be an object", field="params")
    for name in params:
        if name not in PARAM_FIELDS:
            raise ValidationFailed(f"unknown parameter '{name}' (known: {', '.join(PARAM_FIELDS)})", field=str(name))
    return dict(params)


def sampling_for(deployment: Deployment, params: dict[str, Any]) -> SamplingParams:
    """The panel's values over the deployment's defaults, as /v1 reads a body."""
    try:
        return sampling_params(params, deployment.default_params)
    except InferenceError as error:
        raise ValidationFailed(error.message, field=error.param) from None


def resolve_model(*, user: AbstractBaseUser, name: Any) -> Deployment:
    """A deployment the user may call (as /v1 sees it) that chats."""
    if not isinstance(name, str) or not name:
        raise ValidationFailed("'model' is required: choose one of the models you can use", field="model")
    deployment = servable_deployment(user=user, name=name)
    if deployment is None:
        # /v1's wording: a removed model and someone else's private one read the same.
        raise NotFound(f"The model '{name}' does not exist or you do not have access to it.", field="model")
    if deployment.serves_embeddings:
        raise ValidationFailed(f"'{name}' is an embedding model and does not chat", field="model")
    return deployment


def params_record(params: SamplingParams) -> dict[str, Any]:
    """What an answer stores: every decoding parameter it was generated with."""
    record = asdict(params)
    record["stop"] = list(params.stop)
    return record


def _messages(items: list[dict[str, str]]) -> tuple[dict[str, str], ...]:
    try:
        return check_messages(items)
    except InferenceError as error:
        raise ValidationFailed(error.message, field=error.param) from None


# ---------------------------------------------------------------- conversations

def title_from(text: str) -> str:
    words = " ".join(text.split())
    return words if len(words) <= TITLE_CHARS else words[: TITLE_CHARS - 1].rstrip() + "…"


def conversation_create(
    *, owner: AbstractBaseUser, model: str | None = None, system_prompt: str = "", params: Any = None, title: str = ""
) -> Conversation:
    """A new, empty chat ("new chat"); the first send may also create one."""
    deployment = resolve_model(user=owner, name=model) if model else None
    panel = check_params(params)
    if deployment is not None:
        sampling_for(deployment, panel)
    return Conversation.objects.create(
        owner=owner, title=_check_title(title, allow_blank=True), deployment=deployment,
        model_name=deployment.name if deployment else "", system_prompt=check_system_prompt(system_prompt), params=panel,
    )


def _check_title(title: Any, *, allow_blank: bool = False) -> str:
    if not isinstance(title, str):
        raise ValidationFailed("'title' must be a string", field="title")
    title = " ".join(title.split())
    if not title and not allow_blank:
        raise ValidationFailed("give the conversation a title", field="title")
    if len(title) > 200:
        raise ValidationFailed("titles are at most 200 characters", field="title")
    return title


def conversation_update(
    *, conversation: Conversation, title: Any = None, system_prompt: Any = None
) -> Conversation:
    """Rename, or change the system prompt used from the next turn on."""
    fields = ["updated_at"]
    if title is not None:
        conversation.title = _check_title(title)
        fields.append("title")
    if system_prompt is not None:
        conversation.system_prompt = check_system_prompt(system_prompt)
        fields.append("system_prompt")
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    conversation.delete()


# ---------------------------------------------------------------- turns

@dataclass(frozen=True)
class Turn:
    """A planned answer: the user message it answers and the request to stream."""

    conversation: Conversation
    user_message: Message
    deployment: Deployment
    request: GenerationRequest
    created: bool = False  # the conversation was created by this turn
    superseded: tuple[int, ...] = ()  # message ids this turn replaced (regenerate, edit)


def _apply_settings(
    conversation: Conversation, *, user: AbstractBaseUser, model: Any, params: Any, system_prompt: Any,
    resolved: Deployment | None = None,
) -> tuple[Deployment, SamplingParams]:
    """The turn's model, parameters and system prompt: what the frame sends,
    else the conversation's; what is sent becomes the conversation's.
    `resolved`: that model, already looked up by the caller."""
    name = conversation.model_name if model is None else model
    deployment = resolved if resolved is not None and resolved.name == name else resolve_model(user=user, name=name)
    panel = conversation.params if params is None else check_params(params)
    sampling = sampling_for(deployment, panel)
    if system_prompt is not None:
        conversation.system_prompt = check_system_prompt(system_prompt)
    conversation.deployment, conversation.model_name, conversation.params = deployment, deployment.name, panel
    return deployment, sampling


def _thread(conversation: Conversation, *, upto: int | None = None, before: int | None = None) -> list[dict[str, str]]:
    """The system prompt and the active thread (ids ≤ `upto` or < `before`).
    Failed answers are left out; a stopped answer counts with the text it got."""
    items: list[dict[str, str]] = []
    if conversation.system_prompt.strip():
        items.append({"role": "system", "content": conversation.system_prompt})
    if conversation.pk is None:
        return items
    messages = conversation.messages.filter(active=True)
    if upto is not None:
        messages = messages.filter(id__lte=upto)
    if before is not None:
        messages = messages.filter(id__lt=before)
    for message in messages.order_by("id"):
        if message.role == Role.USER:
            items.append({"role": "user", "content": message.content})
        elif message.status != MessageStatus.ERROR and message.content:
            items.append({"role": "assistant", "content": message.content})
    return items


def _history(conversation: Conversation, upto: Message) -> tuple[dict[str, str], ...]:
    """The model's input: the thread up to the user message being answered."""
    return _messages(_thread(conversation, upto=upto.pk))


def _turn(
    conversation: Conversation, user_message: Message, deployment: Deployment, sampling: SamplingParams,
    *, created: bool = False, superseded: tuple[int, ...] = (), expect: GenerationRequest | None = None,
) -> Turn:
    request = GenerationRequest(params=sampling, messages=_history(conversation, user_message))
    if expect is not None and request != expect:
        # The answer already streaming was asked from a preview that is no
        # longer true (another tab sent into the conversation, or the model's
        # defaults changed within the socket's lookup cache): store nothing
        # rather than an answer to another question.
        raise Conflict("the conversation or its model changed while this message was being sent; send it again",
                       field="conversation")
    return Turn(conversation, user_message, deployment, request, created, superseded)


@transaction.atomic
def chat_turn_send(
    *, user: AbstractBaseUser, conversation_id: Any, content: Any, model: Any = None, params: Any = None,
    system_prompt: Any = None, expect: GenerationRequest | None = None,
) -> Turn:
    """A new user message (in a new conversation when `conversation_id` is None)."""
    content = check_text(content, field="content")
    created = conversation_id is None
    conversation = Conversation(owner=user) if created else conversation_get(user=user, pk=conversation_id)
    deployment, sampling = _apply_settings(conversation, user=user, model=model, params=params, system_prompt=system_prompt)
    if not conversation.title:
        conversation.title = title_from(content)
    conversation.save()
    user_message = Message.objects.create(conversation=conversation, role=Role.USER, content=content)
    return _turn(conversation, user_message, deployment, sampling, created=created, expect=expect)


def _last_user_message(conversation: Conversation) -> Message:
    message = conversation.messages.filter(active=True, role=Role.USER).order_by("-id").first()
    if message is None:
        raise ValidationFailed("the conversation has no message to answer yet", field="conversation")
    return message


def _active_from(conversation: Conversation, from_id: int) -> tuple[int, ...]:
    return tuple(conversation.messages.filter(active=True, id__gte=from_id).order_by("id").values_list("id", flat=True))


def _supersede(conversation: Conversation, from_id: int) -> tuple[int, ...]:
    ids = _active_from(conversation, from_id)
    Message.objects.filter(pk__in=ids).update(active=False)
    return ids


@transaction.atomic
def chat_turn_regenerate(
    *, user: AbstractBaseUser, conversation_id: Any, model: Any = None, params: Any = None, system_prompt: Any = None,
    expect: GenerationRequest | None = None,
) -> Turn:
    """Answer the last user message again; the answer(s) after it are
    replaced (kept inactive, with their feedback)."""
    conversation = conversation_get(user=user, pk=conversation_id)
    user_message = _last_user_message(conversation)
    deployment, sampling = _apply_settings(conversation, user=user, model=model, params=params, system_prompt=system_prompt)
    superseded = _supersede(conversation, user_message.pk + 1)
    conversation.save()
    return _turn(conversation, user_message, deployment, sampling, superseded=superseded, expect=expect)


@transaction.atomic
def chat_turn_edit(
    *, user: AbstractBaseUser, conversation_id: Any, content: Any, model: Any = None, params: Any = None,
    system_prompt: Any = None, expect: GenerationRequest | None = None,
) -> Turn:
    """Replace the last user message (and its answer) with `content` and answer it."""
    content = check_text(content, field="content")
    conversation = conversation_get(user=user, pk=conversation_id)
    last = _last_user_message(conversation)
    deployment, sampling = _apply_settings(conversation, user=user, model=model, params=params, system_prompt=system_prompt)
    superseded = _supersede(conversation, last.pk)
    conversation.save()
    user_message = Message.objects.create(conversation=conversation, role=Role.USER, content=content)
    return _turn(conversation, user_message, deployment, sampling, superseded=superseded, expect=expect)


@dataclass(frozen=True)
class TurnPreview:
    """What a turn will ask the backend, read without writing anything."""

    deployment: Deployment
    request: GenerationRequest
    replaces: tuple[int, ...] = ()  # the messages the turn will make inactive


def chat_turn_preview(
    *, kind: str, user: AbstractBaseUser, conversation_id: Any, content: Any = None, model: Any = None,
    params: Any = None, system_prompt: Any = None, deployment: Deployment | None = None,
) -> TurnPreview:
    """The request `chat_turn_<kind>` would plan, from reads only, so the
    socket can open the backend stream while the turn is being stored (the
    answer's first token then waits for the slower of the two, not both).
    Raises what the write would raise for the same input; the write checks
    again and refuses the turn if it would ask something else (`expect`).
    With `deployment` given (the caller's cached lookup of `model`), a turn
    that starts a new conversation makes no query at all."""
    if kind != "regenerate":
        content = check_text(content, field="content")
    if conversation_id is None and kind == "send":
        conversation = Conversation(owner=user)
    else:
        conversation = conversation_get(user=user, pk=conversation_id)
    deployment, sampling = _apply_settings(conversation, user=user, model=model, params=params,
                                           system_prompt=system_prompt, resolved=deployment)
    replaces: tuple[int, ...] = ()
    if kind == "send":
        items = [*_thread(conversation), {"role": "user", "content": content}]
    elif kind == "regenerate":
        last = _last_user_message(conversation).pk
        items, replaces = _thread(conversation, upto=last), _active_from(conversation, last + 1)
    else:
        last = _last_user_message(conversation).pk
        items = [*_thread(conversation, before=last), {"role": "user", "content": content}]
        replaces = _active_from(conversation, last)
    return TurnPreview(deployment, GenerationRequest(params=sampling, messages=_messages(items)), replaces)


def answer_store(*, turn: Turn, outcome: Outcome) -> Message | None:
    """The assistant message for a streamed turn, whatever its outcome; None
    when the conversation was deleted while it streamed."""
    try:
        with transaction.atomic():
            message = Message.objects.create(
                conversation_id=turn.conversation.pk, role=Role.ASSISTANT, reply_to=turn.user_message,
                content=outcome.text, model_name=turn.deployment.name, params=params_record(turn.request.params),
                status=outcome.status, error=outcome.error.message if outcome.error else "",
                finish_reason=outcome.finish_reason or "", prompt_tokens=outcome.prompt_tokens,
                completion_tokens=outcome.completion_tokens, latency_ms=outcome.latency_ms, ttft_ms=outcome.ttft_ms,
            )
            if not Conversation.objects.filter(pk=turn.conversation.pk).update(updated_at=timezone.now()):
                raise IntegrityError("conversation deleted")
    except IntegrityError:
        return None
    return message


# ---------------------------------------------------------------- feedback

def feedback_set(*, owner: AbstractBaseUser, message: Message, rating: Any, comment: Any = "") -> Feedback:
    """👍/👎 with an optional comment; rating again replaces the earlier one."""
    if isinstance(rating, bool) or rating not in (1, -1):
        raise ValidationFailed("'rating' must be 1 (👍) or -1 (👎)", field="rating")
    if comment is None:
        comment = ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise ValidationFailed(f"'comment' must be a string of at most {MAX_COMMENT_CHARS} characters", field="comment")
    if message.role != Role.ASSISTANT or message.status == MessageStatus.ERROR:
        raise ValidationFailed("only answers can be rated (not errors or user messages)", field="message")
    feedback, _ = Feedback.objects.update_or_create(
        message=message, owner=owner, defaults={"rating": rating, "comment": comment.strip()}
    )
    return feedback


def feedback_delete(*, owner: AbstractBaseUser, message: Message) -> None:
    Feedback.objects.filter(message=message, owner=owner).delete()


# ---------------------------------------------------------------- arena

SIDES = ("a", "b")


@dataclass(frozen=True)
class ArenaSide:
    side: str
    deployment: Deployment
    request: GenerationRequest


@dataclass(frozen=True)
class ArenaPlan:
    battle: ArenaBattle
    sides: tuple[ArenaSide, ...]


def _arena_models(user: AbstractBaseUser, models: Any) -> tuple[list[Deployment], bool]:
    """Two chosen deployments, or two random distinct ones (then anonymous)."""
    if models is None:
        candidates = list(chat_deployments(user=user).exclude(status=HealthStatus.UNHEALTHY))
        if len(candidates) < 2:
            raise ValidationFailed(
                f"the arena needs two models you can use; {len(candidates)} available", field="models"
            )
        return random.SystemRandom().sample(candidates, 2), True
    if not isinstance(models, list) or len(models) != 2:
        raise ValidationFailed("'models' must be two model names, or null for two random ones", field="models")
    if models[0] == models[1]:
        raise ValidationFailed("choose two different models", field="models")
    return [resolve_model(user=user, name=name) for name in models], False


@transaction.atomic
def arena_start(
    *, owner: AbstractBaseUser, prompt: Any, models: Any = None, params: Any = None, system_prompt: Any = None
) -> ArenaPlan:
    prompt = check_text(prompt, field="prompt")
    system = check_system_prompt(system_prompt) if system_prompt is not None else ""
    panel = check_params(params)
    deployments, anonymous = _arena_models(owner, models)
    samplings = [sampling_for(deployment, panel) for deployment in deployments]
    items = ([{"role": "system", "content": system}] if system.strip() else []) + [{"role": "user", "content": prompt}]
    messages = _messages(items)
    battle = ArenaBattle.objects.create(
        owner=owner, prompt=prompt, system_prompt=system, params=panel, anonymous=anonymous,
        deployment_a=deployments[0], deployment_b=deployments[1],
        model_a=deployments[0].name, model_b=deployments[1].name,
    )
    sides = tuple(
        ArenaSide(side, deployment, GenerationRequest(params=sampling, messages=messages))
        for side, deployment, sampling in zip(SIDES, deployments, samplings, strict=True)
    )
    return ArenaPlan(battle, sides)


def arena_side_store(*, battle_id: int, side: str, outcome: Outcome) -> None:
    """One side's answer; touches that side's columns only (the other side
    may be storing at the same moment)."""
    assert side in SIDES
    stats = {
        "prompt_tokens": outcome.prompt_tokens, "completion_tokens": outcome.completion_tokens,
        "latency_ms": outcome.latency_ms, "ttft_ms": outcome.ttft_ms, "finish_reason": outcome.finish_reason,
    }
    ArenaBattle.objects.filter(pk=battle_id).update(**{
        f"answer_{side}": outcome.text, f"status_{side}": SideStatus(outcome.status),
        f"error_{side}": outcome.error.message if outcome.error else "", f"stats_{side}": stats,
    })


def arena_vote(*, battle: ArenaBattle, vote: Any) -> ArenaBattle:
    """Stores the vote (once); the names are revealed from then on."""
    if vote not in Vote.values:
        raise ValidationFailed(f"'vote' must be one of {', '.join(Vote.values)}", field="vote")
    if not battle.finished:
        raise Conflict("the answers are still streaming; vote when both have finished")
    # Conditional: two clicks (or tabs) racing store one vote.
    if not ArenaBattle.objects.filter(pk=battle.pk, vote="").update(vote=vote, voted_at=timezone.now()):
        raise Conflict("this battle already has a vote")
    battle.refresh_from_db()
    return battle
