"""Turn planning (send, regenerate, edit-and-resend), history, feedback
and the arena's choice of models, without streaming."""
from __future__ import annotations

from pathlib import Path

import pytest

from webapp.chat import services
from webapp.chat.models import Conversation, Message
from webapp.chat.streaming import Outcome
from webapp.core.errors import Conflict, NotFound, ValidationFailed
from webapp.deployments.models import Deployment

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny(alice, tmp_path: Path) -> Deployment:
    return Deployment.objects.create(owner=alice, name="tiny", kind="local", model_path=str(tmp_path),
                                     default_params={"temperature": 0.3, "max_tokens": 50})


def answered(user, text: str, answer: str, conversation: int | None = None, **fields) -> services.Turn:
    turn = services.chat_turn_send(user=user, conversation_id=conversation, content=text, **fields)
    services.answer_store(turn=turn, outcome=Outcome(text=answer, completion_tokens=3, prompt_tokens=5,
                                                     finish_reason="stop", latency_ms=40, ttft_ms=10))
    return turn


def test_send_merges_the_panel_over_the_deployment_defaults_and_sends_the_history(alice, tiny) -> None:
    first = answered(alice, "hi", "hello!", model="tiny", params={"top_k": 5}, system_prompt="Be brief.")
    assert first.created and first.conversation.title == "hi" and first.conversation.params == {"top_k": 5}
    assert first.request.params.temperature == 0.3 and first.request.params.top_k == 5
    assert first.request.params.max_new_tokens == 50

    second = services.chat_turn_send(user=alice, conversation_id=first.conversation.pk, content="more")
    assert not second.created and second.deployment == tiny and second.request.params.top_k == 5
    assert second.request.messages == (
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello!"}, {"role": "user", "content": "more"},
    )


def test_a_failed_answer_is_left_out_of_the_history(alice, tiny) -> None:
    turn = services.chat_turn_send(user=alice, conversation_id=None, content="q1", model="tiny")
    services.answer_store(turn=turn, outcome=Outcome(status="error"))
    nxt = services.chat_turn_send(user=alice, conversation_id=turn.conversation.pk, content="q2")
    assert [m["content"] for m in nxt.request.messages] == ["q1", "q2"]


def test_regenerate_replaces_the_last_answer_and_keeps_it_inactive(alice, tiny) -> None:
    turn = answered(alice, "hi", "first answer", model="tiny")
    old = Message.objects.get(role="assistant")
    again = services.chat_turn_regenerate(user=alice, conversation_id=turn.conversation.pk, params={"seed": 3})
    assert again.superseded == (old.pk,) and again.user_message == turn.user_message
    assert again.request.messages == ({"role": "user", "content": "hi"},) and again.request.params.seed == 3
    old.refresh_from_db()
    assert not old.active and old.content == "first answer"


def test_edit_replaces_the_last_user_message_and_its_answer(alice, tiny) -> None:
    first = answered(alice, "one", "uno", model="tiny")
    answered(alice, "two", "dos", conversation=first.conversation.pk)
    edited = services.chat_turn_edit(user=alice, conversation_id=first.conversation.pk, content="TWO!")
    assert [m["content"] for m in edited.request.messages] == ["one", "uno", "TWO!"]
    active = list(Message.objects.filter(conversation=first.conversation, active=True).values_list("content", flat=True))
    assert active == ["one", "uno", "TWO!"]
    assert len(edited.superseded) == 2


def test_regenerate_needs_a_user_message(alice, tiny) -> None:
    conversation = services.conversation_create(owner=alice, model="tiny")
    with pytest.raises(ValidationFailed):
        services.chat_turn_regenerate(user=alice, conversation_id=conversation.pk)


def test_refused_turns_store_nothing(alice, bob, tiny) -> None:
    Deployment.objects.create(owner=bob, name="bobs", kind="local", model_path="/x")
    Deployment.objects.create(owner=alice, name="vectors", kind="embedding")
    for fields, param in [
        ({"model": "bobs"}, "model"), ({"model": "vectors"}, "model"), ({"model": "nope"}, "model"),
        ({"model": "tiny", "params": {"top_p": 2}}, "top_p"), ({"model": "tiny", "params": {"beam": 1}}, "beam"),
        ({"model": "tiny", "system_prompt": 3}, "system"),
    ]:
        with pytest.raises((ValidationFailed, NotFound)) as caught:
            services.chat_turn_send(user=alice, conversation_id=None, content="hi", **fields)
        assert caught.value.field == param
    assert not Conversation.objects.exists() and not Message.objects.exists()


def test_a_removed_deployment_keeps_the_history_and_names_the_model(alice, tiny) -> None:
    turn = answered(alice, "hi", "hello", model="tiny")
    tiny.delete()
    conversation = Conversation.objects.get(pk=turn.conversation.pk)
    assert conversation.deployment is None and conversation.model_name == "tiny"
    assert Message.objects.get(role="assistant").model_name == "tiny"
    with pytest.raises(NotFound) as caught:
        services.chat_turn_send(user=alice, conversation_id=conversation.pk, content="still there?")
    assert caught.value.field == "model" and "'tiny' does not exist" in caught.value.message


def test_feedback_is_one_per_user_and_answer(alice, tiny) -> None:
    answered(alice, "hi", "hello", model="tiny")
    answer = Message.objects.get(role="assistant")
    services.feedback_set(owner=alice, message=answer, rating=1)
    feedback = services.feedback_set(owner=alice, message=answer, rating=-1, comment=" too short ")
    assert answer.feedback.count() == 1 and (feedback.rating, feedback.comment) == (-1, "too short")
    for rating in (0, 2, True, "1"):
        with pytest.raises(ValidationFailed):
            services.feedback_set(owner=alice, message=answer, rating=rating)


def test_arena_picks_two_random_healthy_models_anonymously(alice, tiny, tmp_path: Path) -> None:
    with pytest.raises(ValidationFailed) as caught:
        services.arena_start(owner=alice, prompt="hi")
    assert "needs two models" in caught.value.message
    Deployment.objects.create(owner=alice, name="sick", kind="local", model_path=str(tmp_path), status="unhealthy")
    with pytest.raises(ValidationFailed):
        services.arena_start(owner=alice, prompt="hi")
    Deployment.objects.create(owner=alice, name="other", kind="local", model_path=str(tmp_path))
    plan = services.arena_start(owner=alice, prompt="hi", params={"max_tokens": 4})
    assert plan.battle.anonymous and {plan.battle.model_a, plan.battle.model_b} == {"tiny", "other"}
    assert [s.side for s in plan.sides] == ["a", "b"] and plan.sides[0].request.params.max_new_tokens == 4
    with pytest.raises(ValidationFailed):
        services.arena_start(owner=alice, prompt="hi", models=["tiny", "tiny"])
    named = services.arena_start(owner=alice, prompt="hi", models=["other", "tiny"])
    assert not named.battle.anonymous and (named.battle.model_a, named.battle.model_b) == ("other", "tiny")


def test_a_vote_needs_both_answers_and_happens_once(alice, tiny, tmp_path: Path) -> None:
    Deployment.objects.create(owner=alice, name="other", kind="local", model_path=str(tmp_path))
    battle = services.arena_start(owner=alice, prompt="hi").battle
    with pytest.raises(Conflict):
        services.arena_vote(battle=battle, vote="a")
    for side in ("a", "b"):
        services.arena_side_store(battle_id=battle.pk, side=side, outcome=Outcome(text=f"answer {side}"))
    battle.refresh_from_db()
    with pytest.raises(ValidationFailed):
        services.arena_vote(battle=battle, vote="c")
    assert services.arena_vote(battle=battle, vote="tie").vote == "tie"
    with pytest.raises(Conflict):
        services.arena_vote(battle=battle, vote="a")


def test_the_preview_asks_what_the_stored_turn_asks_and_stores_nothing(alice, tiny) -> None:
    """The socket opens the backend stream from the preview while the turn
    is stored: both must plan the same request for send, regenerate and edit."""
    first = answered(alice, "one", "uno", model="tiny", system_prompt="Be brief.", params={"top_k": 5})
    answered(alice, "two", "dos", conversation=first.conversation.pk)
    conversation = first.conversation.pk
    cases = [
        ("send", {"conversation_id": None, "content": "new", "model": "tiny", "params": {"seed": 1}}),
        ("send", {"conversation_id": conversation, "content": "three", "system_prompt": "Be long."}),
        ("regenerate", {"conversation_id": conversation, "params": {"top_p": 0.5}}),
        ("edit", {"conversation_id": conversation, "content": "THREE"}),
    ]
    writes = {"send": services.chat_turn_send, "regenerate": services.chat_turn_regenerate,
              "edit": services.chat_turn_edit}
    for kind, fields in cases:
        counts = (Conversation.objects.count(), Message.objects.count(), Message.objects.filter(active=True).count())
        preview = services.chat_turn_preview(kind=kind, user=alice, **fields)
        assert (Conversation.objects.count(), Message.objects.count(),
                Message.objects.filter(active=True).count()) == counts, kind
        turn = writes[kind](user=alice, **fields)
        assert preview.request == turn.request and preview.deployment == turn.deployment, kind
    with pytest.raises(NotFound):
        services.chat_turn_preview(kind="send", user=alice, conversation_id=conversation + 99, content="x")
