"""REST /api/chat/: conversations, feedback, arena votes and the preference
export; each endpoint's other-user case is a 404 that changes nothing."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from webapp.chat import services
from webapp.chat.models import ArenaBattle, Conversation, Feedback, Message
from webapp.chat.streaming import Outcome
from webapp.datasets.models import Dataset
from webapp.datasets.selectors import dataset_rows
from webapp.deployments.models import Deployment

pytestmark = pytest.mark.django_db


def as_user(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def tiny(alice, tmp_path: Path) -> Deployment:
    return Deployment.objects.create(owner=alice, name="tiny", kind="local", model_path=str(tmp_path))


@pytest.fixture
def other(alice, tmp_path: Path) -> Deployment:
    return Deployment.objects.create(owner=alice, name="other", kind="local", model_path=str(tmp_path))


def chat(user, prompt: str, answer: str, *, conversation: int | None = None, status: str = "complete") -> Message:
    turn = services.chat_turn_send(user=user, conversation_id=conversation, content=prompt, model="tiny")
    return services.answer_store(turn=turn, outcome=Outcome(text=answer, status=status, completion_tokens=2))


def battle(user, answers: tuple[str, str], vote: str, prompt: str = "which?") -> ArenaBattle:
    made = services.arena_start(owner=user, prompt=prompt, models=["tiny", "other"]).battle
    for side, text in zip("ab", answers):
        services.arena_side_store(battle_id=made.pk, side=side, outcome=Outcome(text=text))
    made.refresh_from_db()
    return services.arena_vote(battle=made, vote=vote) if vote else made


def results(response) -> list[dict]:
    body = response.json()
    return body["results"] if isinstance(body, dict) else body


def test_models_lists_what_the_user_may_chat_with(alice, bob, tiny, tmp_path: Path) -> None:
    Deployment.objects.create(owner=bob, name="bobs", kind="local", model_path=str(tmp_path))
    Deployment.objects.create(owner=bob, name="bobs-shared", kind="local", model_path=str(tmp_path), shared=True,
                              default_params={"temperature": 0.2})
    Deployment.objects.create(owner=alice, name="vectors", kind="embedding")
    Deployment.objects.create(owner=alice, name="off", kind="local", model_path=str(tmp_path), enabled=False)
    listed = as_user(alice).get("/api/chat/models/")
    assert listed.status_code == 200
    by_name = {m["name"]: m for m in listed.json()}
    assert set(by_name) == {"tiny", "bobs-shared"} and by_name["bobs-shared"]["default_params"] == {"temperature": 0.2}


def test_conversation_list_and_detail_are_the_owners(alice, bob, tiny) -> None:
    answer = chat(alice, "hi", "hello")
    conversation = answer.conversation
    listed = as_user(alice).get("/api/chat/conversations/")
    assert listed.status_code == 200 and [c["id"] for c in results(listed)] == [conversation.pk]
    assert results(as_user(bob).get("/api/chat/conversations/")) == []

    detail = as_user(alice).get(f"/api/chat/conversations/{conversation.pk}/")
    assert detail.status_code == 200
    body = detail.json()
    assert body["title"] == "hi" and body["model"] == "tiny"
    assert [(m["role"], m["content"]) for m in body["messages"]] == [("user", "hi"), ("assistant", "hello")]
    assert body["messages"][1]["status"] == "complete" and body["messages"][1]["feedback"] is None
    # Answers carry their Markdown as sanitised HTML; user messages are plain text.
    assert body["messages"][0]["html"] is None and body["messages"][1]["html"] == "<p>hello</p>\n"
    assert as_user(bob).get(f"/api/chat/conversations/{conversation.pk}/").status_code == 404


def test_an_answers_html_is_rendered_and_sanitised(alice, tiny) -> None:
    answer = chat(alice, "<b>hi</b>", "**Yes** <script>alert(1)</script>\n\n```py\nx = '<img onerror=y>'\n```")
    body = as_user(alice).get(f"/api/chat/conversations/{answer.conversation_id}/").json()
    user, assistant = body["messages"]
    assert user["content"] == "<b>hi</b>" and user["html"] is None
    assert assistant["content"].startswith("**Yes**")  # the source stays as the model wrote it
    assert assistant["html"] == ("<p><strong>Yes</strong> &lt;script&gt;alert(1)&lt;/script&gt;</p>\n"
                                 "<pre><code class=\"language-py\">x = '&lt;img onerror=y&gt;'\n</code></pre>\n")


def test_create_rename_and_delete(alice, bob, tiny) -> None:
    created = as_user(alice).post("/api/chat/conversations/", {"model": "tiny", "params": {"temperature": 0}},
                                  format="json")
    assert created.status_code == 201 and created.json()["model"] == "tiny"
    bad = as_user(alice).post("/api/chat/conversations/", {"model": "tiny", "params": {"temperature": 7}},
                              format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "temperature"
    pk = created.json()["id"]

    renamed = as_user(alice).patch(f"/api/chat/conversations/{pk}/", {"title": "  Air fryers  "}, format="json")
    assert renamed.status_code == 200 and renamed.json()["title"] == "Air fryers"
    assert as_user(alice).patch(f"/api/chat/conversations/{pk}/", {"title": ""}, format="json").status_code == 400
    assert as_user(bob).patch(f"/api/chat/conversations/{pk}/", {"title": "mine"}, format="json").status_code == 404
    assert Conversation.objects.get(pk=pk).title == "Air fryers"

    assert as_user(bob).delete(f"/api/chat/conversations/{pk}/").status_code == 404
    assert Conversation.objects.filter(pk=pk).exists()
    assert as_user(alice).delete(f"/api/chat/conversations/{pk}/").status_code == 204
    assert not Conversation.objects.filter(pk=pk).exists()


def test_export_is_a_json_file_with_models_params_usage_and_feedback(alice, bob, tiny) -> None:
    answer = chat(alice, "hi", "hello")
    services.feedback_set(owner=alice, message=answer, rating=1, comment="nice")
    response = as_user(alice).get(f"/api/chat/conversations/{answer.conversation_id}/export/")
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="conversation-{answer.conversation_id}.json"'
    exported = json.loads(response.content)
    user, assistant = exported["messages"]
    assert user == {"id": user["id"], "role": "user", "content": "hi", "created_at": user["created_at"]}
    assert assistant["model"] == "tiny" and assistant["params"]["max_new_tokens"] is None
    assert assistant["usage"] == {"prompt_tokens": 0, "completion_tokens": 2}
    assert assistant["feedback"] == {"rating": 1, "comment": "nice"} and assistant["status"] == "complete"
    assert as_user(bob).get(f"/api/chat/conversations/{answer.conversation_id}/export/").status_code == 404


def test_feedback_on_an_answer(alice, bob, tiny) -> None:
    answer = chat(alice, "hi", "hello")
    url = f"/api/chat/messages/{answer.pk}/feedback/"
    rated = as_user(alice).post(url, {"rating": -1, "comment": "wrong"}, format="json")
    assert rated.status_code == 200 and rated.json()["feedback"] == {"rating": -1, "comment": "wrong"}
    assert Feedback.objects.get(message=answer).rating == -1
    assert as_user(alice).post(url, {"rating": 5}, format="json").status_code == 400
    assert as_user(bob).post(url, {"rating": 1}, format="json").status_code == 404
    assert as_user(alice).post(f"/api/chat/messages/{answer.reply_to_id}/feedback/", {"rating": 1},
                               format="json").status_code == 404  # a user message is not an answer
    assert Feedback.objects.get(message=answer).rating == -1
    assert as_user(bob).delete(url).status_code == 404 and Feedback.objects.exists()
    assert as_user(alice).delete(url).status_code == 204 and not Feedback.objects.exists()
    failed = chat(alice, "again", "", status="error")
    refused = as_user(alice).post(f"/api/chat/messages/{failed.pk}/feedback/", {"rating": 1}, format="json")
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "message"


def test_anonymous_battle_names_are_revealed_by_the_vote_only(alice, bob, tiny, other) -> None:
    made = battle(alice, ("answer A", "answer B"), vote="")
    ArenaBattle.objects.filter(pk=made.pk).update(anonymous=True)
    url = f"/api/chat/arena/{made.pk}/"
    before = as_user(alice).get(url).json()
    assert (before["model_a"], before["model_b"], before["revealed"]) == (None, None, False)
    assert [b["model_a"] for b in results(as_user(alice).get("/api/chat/arena/"))] == [None]
    assert "tiny" not in json.dumps(before) and "other" not in json.dumps(before)
    assert (before["html_a"], before["html_b"]) == ("<p>answer A</p>\n", "<p>answer B</p>\n")

    assert as_user(bob).post(f"{url}vote/", {"vote": "a"}, format="json").status_code == 404
    assert ArenaBattle.objects.get(pk=made.pk).vote == ""
    assert as_user(alice).post(f"{url}vote/", {"vote": "best"}, format="json").status_code == 400
    voted = as_user(alice).post(f"{url}vote/", {"vote": "b"}, format="json")
    assert voted.status_code == 200
    body = voted.json()
    assert (body["model_a"], body["model_b"], body["vote"], body["revealed"]) == ("tiny", "other", "b", True)
    stored = ArenaBattle.objects.get(pk=made.pk)
    assert stored.vote == "b" and stored.voted_at is not None
    assert as_user(alice).post(f"{url}vote/", {"vote": "a"}, format="json").status_code == 409
    assert as_user(bob).get(url).status_code == 404


def test_export_preferences_makes_a_ready_preference_dataset(alice, bob, tiny, other, media_root) -> None:
    battle(alice, ("A wins", "B loses"), vote="a", prompt="p1")
    battle(alice, ("A loses", "B wins"), vote="b", prompt="p2")
    battle(alice, ("same", "same!"), vote="tie", prompt="p3")  # skipped: no order
    battle(alice, ("bad", "worse"), vote="both_bad", prompt="p4")  # skipped
    # Two answers to one prompt, 👍 and 👎 (the second from a regenerate).
    good = chat(alice, "recommend a fryer", "The X200: 5 L, easy to clean.")
    turn = services.chat_turn_regenerate(user=alice, conversation_id=good.conversation_id)
    bad = services.answer_store(turn=turn, outcome=Outcome(text="I don't know."))
    services.feedback_set(owner=alice, message=good, rating=1)
    services.feedback_set(owner=alice, message=bad, rating=-1)
    # Bob's votes are not Alice's data.
    Deployment.objects.filter(name__in=["tiny", "other"]).update(shared=True)
    battle(bob, ("bob A", "bob B"), vote="a", prompt="bob's")

    response = as_user(alice).post("/api/chat/preferences/export/", {}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["pairs"] == {"arena": 2, "feedback": 1}
    dataset = Dataset.objects.get(pk=body["dataset"]["id"])
    assert (dataset.owner, dataset.kind, dataset.status, dataset.rows) == (alice, "preference", "ready", 3)
    assert dataset.name == "chat-preferences" and dataset.format == "prompt_chosen_rejected"
    assert dataset_rows(dataset=dataset, offset=0, limit=10) == [
        {"prompt": "p1", "chosen": "A wins", "rejected": "B loses"},
        {"prompt": "p2", "chosen": "B wins", "rejected": "A loses"},
        {"prompt": "recommend a fryer", "chosen": "The X200: 5 L, easy to clean.", "rejected": "I don't know."},
    ]
    again = as_user(alice).post("/api/chat/preferences/export/", {"name": "chat-preferences"}, format="json")
    assert again.status_code == 201 and again.json()["dataset"]["version"] == 2


def test_an_empty_export_is_a_clear_400(alice, bob, tiny, other, media_root) -> None:
    battle(alice, ("x", "y"), vote="tie")
    response = as_user(alice).post("/api/chat/preferences/export/", {}, format="json")
    assert response.status_code == 400
    assert "nothing to export yet" in response.json()["error"]["message"]
    assert not Dataset.objects.exists()
