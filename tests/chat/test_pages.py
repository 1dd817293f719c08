"""The chat and arena pages (Django test client): login, what they render,
and another user's conversations and battles never shown."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client

from webapp.chat import services
from webapp.chat.models import ArenaBattle
from webapp.chat.streaming import Outcome
from webapp.core.navigation import SECTIONS
from webapp.deployments.models import Deployment

pytestmark = pytest.mark.django_db


def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def deployment(owner, name: str, folder: Path, **fields) -> Deployment:
    return Deployment.objects.create(owner=owner, name=name, kind="local", model_path=str(folder), **fields)


def conversation_of(user, title: str, model: str = "tiny") -> int:
    turn = services.chat_turn_send(user=user, conversation_id=None, content=title, model=model)
    services.answer_store(turn=turn, outcome=Outcome(text="answer"))
    return turn.conversation.pk


def picker(page: str) -> list[dict]:
    start = page.index('<script id="chat-models" type="application/json">') + len('<script id="chat-models" type="application/json">')
    return json.loads(page[start:page.index("</script>", start)])


@pytest.mark.parametrize("url", ["/chat/", "/chat/1/", "/chat/arena/"])
def test_the_pages_need_a_login(client, url: str) -> None:
    response = client.get(url)
    assert response.status_code == 302 and response["Location"] == f"/login/?next={url}"


def test_chat_is_an_available_section_with_its_own_page(alice) -> None:
    assert next(s for s in SECTIONS if s.key == "chat").available
    home = browser(alice).get("/").content.decode()
    assert home.count("not in this build yet") == sum(1 for s in SECTIONS if not s.available)
    page = browser(alice).get("/chat/").content.decode()
    assert 'href="/chat/" class="nav-link active" aria-current="page"' in page
    assert "is not available in this build yet" not in page


def test_chat_page_lists_own_conversations_and_the_models_one_may_use(alice, bob, tmp_path: Path) -> None:
    deployment(alice, "tiny", tmp_path, default_params={"temperature": 0.3, "max_tokens": 128})
    deployment(bob, "bobs-shared", tmp_path, shared=True, status="unhealthy")
    deployment(bob, "bobs-private", tmp_path)
    Deployment.objects.create(owner=alice, name="vectors", kind="embedding")
    Deployment.objects.create(owner=bob, name="bobs-chat", kind="local", model_path=str(tmp_path))
    conversation_of(alice, "Alice asks about fryers")
    conversation_of(bob, "Bob's secret plan", model="bobs-chat")

    response = browser(alice).get("/chat/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Alice asks about fryers" in page and "Bob&#x27;s secret plan" not in page and "secret plan" not in page
    models = picker(page)
    # Healthy (or unchecked) first, unhealthy last; only what Alice may call, no embedding model.
    assert [m["name"] for m in models] == ["tiny", "bobs-shared"]
    assert models[0]["default_params"] == {"temperature": 0.3, "max_tokens": 128}
    assert '<option value="bobs-shared">bobs-shared (unhealthy)</option>' in page
    assert 'data-conversation=""' in page  # a new chat: nothing open


def test_opening_a_conversation_by_url(alice, bob, tmp_path: Path) -> None:
    deployment(alice, "tiny", tmp_path)
    deployment(bob, "bobs", tmp_path)
    mine = conversation_of(alice, "mine")
    theirs = conversation_of(bob, "Bob's chat", model="bobs")

    page = browser(alice).get(f"/chat/{mine}/").content.decode()
    assert f'id="chat-app" data-conversation="{mine}"' in page
    assert f'<li data-conversation="{mine}" class="current">' in page
    assert f'href="/api/chat/conversations/{mine}/export/"' in page

    for missing in (theirs, 999_999):
        response = browser(alice).get(f"/chat/{missing}/")
        assert response.status_code == 404 and b"Bob" not in response.content
    assert browser(bob).get(f"/chat/{theirs}/").status_code == 200


def test_no_model_yet_says_where_to_get_one(alice) -> None:
    page = browser(alice).get("/chat/").content.decode()
    assert "No model to chat with yet" in page and 'href="/deployments/new/"' in page
    assert picker(page) == []


def test_arena_page_shows_own_battles_with_names_hidden_until_the_vote(alice, bob, tmp_path: Path) -> None:
    for name in ("tiny-a", "tiny-b"):
        deployment(alice, name, tmp_path)
    deployment(bob, "bob-a", tmp_path)
    deployment(bob, "bob-b", tmp_path)
    plan = services.arena_start(owner=alice, prompt="Which fryer is best?", models=None)
    for side in "ab":
        services.arena_side_store(battle_id=plan.battle.pk, side=side, outcome=Outcome(text=f"answer {side}"))
    services.arena_start(owner=bob, prompt="Bob's duel", models=["bob-a", "bob-b"])

    response = browser(alice).get("/chat/arena/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Which fryer is best?" in page and "duel" not in page
    row = page[page.index(f'<tr data-battle="{plan.battle.pk}">'):]
    row = row[: row.index("</tr>")]
    assert "hidden" in row and "not voted" in row and "tiny-a" not in row and "tiny-b" not in row

    services.arena_vote(battle=ArenaBattle.objects.get(pk=plan.battle.pk), vote="a")
    page = browser(alice).get("/chat/arena/").content.decode()
    row = page[page.index(f'<tr data-battle="{plan.battle.pk}">'):]
    row = row[: row.index("</tr>")]
    assert "tiny-a" in row and "tiny-b" in row and "A is better" in row


def test_arena_with_fewer_than_two_models_says_so(alice, tmp_path: Path) -> None:
    deployment(alice, "only", tmp_path)
    page = browser(alice).get("/chat/arena/").content.decode()
    assert "The arena needs two models you can use; you have 1." in page
