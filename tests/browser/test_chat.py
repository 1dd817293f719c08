"""The chat console in the browser, against the real web server with the
tiny BLOOM served in-process by `local` deployments: streaming, stop, 👍,
a dropped connection, hostile answers, and the arena through to a
preference dataset."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.test_smoke import log_in
from tests.chat.conftest import down_deployment
from tests.support import wait_until
from webapp.chat import services
from webapp.chat.models import ArenaBattle, Conversation, Feedback, Message
from webapp.chat.streaming import Outcome
from webapp.datasets.models import Dataset
from webapp.deployments.models import Deployment

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "pw-Secret-123"
LONG = 100_000  # max tokens: minutes of generation unless stopped

# Records every state of the streaming answer's text: each websocket frame is
# its own task, so the observer sees the text grow delta by delta.
RECORD_STREAM = """() => {
  window.__stream = [];
  new MutationObserver(() => {
    const text = document.querySelector('#messages .msg.streaming .stream-text');
    if (text) { window.__stream.push(text.textContent); }
  }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
}"""


def local(owner, name: str, folder: Path, **fields) -> Deployment:
    return Deployment.objects.create(owner=owner, name=name, kind="local", model_path=str(folder), **fields)


def open_chat(page, username: str, url: str = "/chat/") -> None:
    log_in(page, username, PASSWORD, next_url=url)
    expect(page).to_have_url(url)
    expect(page.locator("body[data-live=open]")).to_have_count(1, timeout=10_000)


def wait_for_streamed_text(page) -> None:
    """Until the streaming answer shows some text (the tiny model may stream
    whitespace, which Playwright's text matchers normalise away)."""
    page.wait_for_function(
        "() => (document.querySelector('#messages .msg.streaming .stream-text') || {textContent: ''}).textContent.length > 0",
        timeout=30_000,
    )


def last_answer(page):
    return page.locator("#messages .msg.assistant").last


def test_chat_streams_rates_stops_and_regenerates(page, make_user, tiny_bloom: Path) -> None:
    user = make_user("chatter", password=PASSWORD)
    local(user, "tiny", tiny_bloom, default_params={"temperature": 0.7, "max_tokens": 64})
    open_chat(page, "chatter")

    # The panel shows the deployment's defaults.
    expect(page.locator("#chat-model")).to_have_value("tiny")
    expect(page.locator("#param-temperature")).to_have_value("0.7")
    expect(page.locator("#param-max_tokens")).to_have_value("64")

    # Send: tokens arrive one delta at a time, then the rendered answer replaces them.
    page.evaluate(RECORD_STREAM)
    page.select_option("#param-decoder", "greedy")
    page.fill("#param-max_tokens", "24")
    page.fill("#system-prompt", "You are a terse shopping assistant.")
    page.fill("#composer-input", "你好,推荐一款空气炸锅")
    page.press("#composer-input", "Enter")
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "complete", timeout=60_000)
    expect(page).to_have_url(re.compile(r"/chat/\d+/$"))
    stored = Message.objects.get(role="assistant")
    assert stored.status == "complete" and stored.completion_tokens == 24 and stored.params["decoder"] == "greedy"
    conversation = stored.conversation
    assert conversation.system_prompt == "You are a terse shopping assistant."
    assert conversation.params == {"decoder": "greedy", "temperature": 0.7, "top_p": 1, "top_k": 0,
                                   "max_tokens": 24, "repetition_penalty": 1}
    states = page.evaluate("window.__stream")
    growing = [s for i, s in enumerate(states) if s and (i == 0 or s != states[i - 1])]
    assert len(growing) >= 3, states  # several visible states, not one final paint
    assert all(b.startswith(a) and len(b) > len(a) for a, b in zip(growing, growing[1:]))
    assert growing[-1] == stored.content
    expect(answer.locator(".cursor")).to_have_count(0)
    expect(answer.locator(".msg-meta")).to_contain_text("+ 24 tokens")
    expect(answer.locator(".msg-meta")).to_contain_text("first token")
    expect(page.locator("#conversation-list li.current .conversation-link")).to_have_text("你好,推荐一款空气炸锅")

    # 👍 with a comment.
    answer.get_by_role("button", name="Good answer").click()
    expect(answer.get_by_role("button", name="Good answer")).to_have_attribute("aria-pressed", "true")
    answer.get_by_label("Comment on this answer").fill("clear and short")
    answer.get_by_role("button", name="Save comment").click()
    expect(answer.get_by_role("button", name="Saved")).to_be_visible()
    feedback = Feedback.objects.get(message=stored)
    assert (feedback.rating, feedback.comment) == (1, "clear and short")

    # Stop a long generation: the answer is marked stopped, with what it got.
    page.fill("#param-max_tokens", str(LONG))
    page.fill("#composer-input", "讲一个很长的故事")
    page.get_by_role("button", name="Send").click()
    wait_for_streamed_text(page)
    expect(page.locator("#send")).to_be_disabled()  # one answer at a time per conversation
    page.locator("#stop").click()
    answer = last_answer(page)
    expect(answer).to_have_attribute("data-status", "stopped", timeout=30_000)
    expect(answer.locator("[data-answer-status]")).to_have_text("stopped")
    stopped = Message.objects.filter(role="assistant").latest("id")
    assert stopped.status == "stopped" and 0 < stopped.completion_tokens < LONG
    expect(page.locator("#send")).to_be_enabled()

    # Regenerate replaces the stopped answer.
    page.fill("#param-max_tokens", "8")
    answer.get_by_role("button", name="Regenerate").click()
    expect(page.locator(f'#messages .msg[data-message="{stopped.pk}"]')).to_have_count(0, timeout=30_000)
    expect(last_answer(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    assert Message.objects.filter(role="assistant", active=True).count() == 2


def test_errors_inline_retry_edit_and_a_dropped_connection(page, make_user, tiny_bloom: Path) -> None:
    user = make_user("mender", password=PASSWORD)
    local(user, "tiny", tiny_bloom, default_params={"decoder": "greedy", "max_tokens": 4})
    down_deployment(user, "down")
    open_chat(page, "mender")

    # A refused parameter: one inline error on the field, the text given back, nothing stored.
    page.fill("#param-temperature", "7")
    page.fill("#composer-input", "hi")
    page.press("#composer-input", "Enter")
    expect(page.locator("#composer-error")).to_contain_text("'temperature' must be between 0 and 2")
    expect(page.locator("#param-temperature")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#composer-input")).to_have_value("hi")
    expect(page.locator("#messages .msg")).to_have_count(0)
    assert not Message.objects.exists()

    # Backend down: the failed answer is inline with a Retry; retry on a working model.
    page.select_option("#chat-model", "down")
    page.press("#composer-input", "Enter")
    failed = last_answer(page)
    expect(failed).to_have_attribute("data-status", "error", timeout=30_000)
    expect(failed.get_by_role("alert")).to_be_visible()
    assert Message.objects.get(role="assistant").status == "error"
    page.select_option("#chat-model", "tiny")
    expect(page.locator("#param-temperature")).not_to_have_attribute("aria-invalid", "true")  # the panel was reset
    failed.get_by_role("button", name="Retry").click()
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)
    expect(last_answer(page)).to_have_attribute("data-status", "complete", timeout=60_000)
    expect(last_answer(page).locator(".msg-head")).to_have_text("tiny")

    # Edit-and-resend the last user message: it and its answer are replaced.
    page.locator("#messages .msg.user").get_by_role("button", name="Edit").click()
    page.get_by_label("Edit your message").fill("hello again")
    page.get_by_role("button", name="Save & send").click()
    expect(page.locator("#messages .msg.user .msg-text")).to_have_text("hello again")
    expect(page.locator("#messages .msg")).to_have_count(2)
    expect(last_answer(page)).to_have_attribute("data-status", "complete", timeout=30_000)
    assert list(Message.objects.filter(active=True, role="user").values_list("content", flat=True)) == ["hello again"]

    # A dropped connection: the page reconnects and reloads the conversation
    # from REST; the interrupted answer is there, stored as stopped.
    page.fill("#param-max_tokens", str(LONG))
    page.fill("#composer-input", "再讲一个")
    page.press("#composer-input", "Enter")
    wait_for_streamed_text(page)
    page.evaluate("window.chatSocket.drop()")
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#connection")).to_have_attribute("data-state", "open", timeout=20_000)
    wait_until(lambda: Message.objects.filter(role="assistant", reply_to__content="再讲一个").exists(),
               timeout_s=10, what="the interrupted answer to be stored")
    interrupted = Message.objects.get(role="assistant", reply_to__content="再讲一个")
    assert interrupted.status == "stopped" and 0 < interrupted.completion_tokens < LONG
    expect(page.locator(f'#messages .msg[data-message="{interrupted.pk}"]')).to_have_attribute("data-status", "stopped", timeout=10_000)
    expect(page.locator("#messages .msg")).to_have_count(4)
    # …and the socket answers again.
    page.fill("#param-max_tokens", "4")
    page.fill("#composer-input", "好的")
    page.press("#composer-input", "Enter")
    expect(page.locator("#messages .msg")).to_have_count(6)
    expect(last_answer(page)).to_have_attribute("data-status", "complete", timeout=30_000)


def test_script_payloads_in_an_answer_do_not_run(page, make_user, tiny_bloom: Path) -> None:
    user = make_user("target", password=PASSWORD)
    local(user, "tiny", tiny_bloom)
    payload = (
        "<script>window.__pwned = 1</script>\n\n"
        '<img src=x onerror="window.__pwned = 2">\n\n'
        "[click me](javascript:window.__pwned=3)\n\n"
        '<a href="#" onclick="window.__pwned = 4">raw link</a>\n\n'
        "```html\n<script>window.__pwned = 5</script>\n```"
    )
    turn = services.chat_turn_send(user=user, conversation_id=None, model="tiny",
                                   content='<img src=x onerror="window.__pwned = 6">')
    answer = services.answer_store(turn=turn, outcome=Outcome(text=payload))
    open_chat(page, "target", url=f"/chat/{turn.conversation.pk}/")

    shown = page.locator(f'#messages .msg[data-message="{answer.pk}"]')
    expect(shown).to_have_attribute("data-status", "complete")
    # The payloads are there as text for the reader…
    expect(shown).to_contain_text("<script>window.__pwned = 1</script>")
    expect(shown).to_contain_text('<img src=x onerror="window.__pwned = 2">')
    expect(shown.locator("pre code")).to_have_text("<script>window.__pwned = 5</script>\n")
    expect(page.locator(".msg.user .msg-text")).to_have_text('<img src=x onerror="window.__pwned = 6">')
    # …and none became an element that runs.
    assert page.locator("#messages img, #messages script, #messages [onerror], #messages [onclick]").count() == 0
    assert page.locator('#messages a[href^="javascript"]').count() == 0
    page.get_by_text("click me").click()
    page.get_by_text("raw link").click()
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined"

    # The sidebar: rename, export link, delete.
    item = page.locator(f'#conversation-list li[data-conversation="{turn.conversation.pk}"]')
    expect(item.get_by_role("link", name="Export as JSON")).to_have_attribute(
        "href", f"/api/chat/conversations/{turn.conversation.pk}/export/")
    item.get_by_role("button", name="Rename").click()
    page.get_by_label("New title").fill("Payload tests")
    page.get_by_label("New title").press("Enter")
    expect(item.locator(".conversation-link")).to_have_text("Payload tests")
    wait_until(lambda: Conversation.objects.get(pk=turn.conversation.pk).title == "Payload tests",
               timeout_s=5, what="the new title to be stored")
    page.once("dialog", lambda dialog: dialog.accept())
    item.get_by_role("button", name="Delete").click()
    expect(item).to_have_count(0)
    expect(page).to_have_url("/chat/")
    expect(page.locator("#messages .msg")).to_have_count(0)
    assert not Conversation.objects.exists()


def test_arena_battle_vote_reveal_and_export_preferences(page, make_user, tiny_bloom: Path) -> None:
    user = make_user("judge", password=PASSWORD)
    # Seeded samples: two different (and not blank) answers, whichever side each lands on.
    local(user, "tiny-a", tiny_bloom, default_params={"temperature": 1.0, "seed": 1, "max_tokens": 8})
    local(user, "tiny-b", tiny_bloom, default_params={"temperature": 1.0, "seed": 2, "max_tokens": 12})
    open_chat(page, "judge", url="/chat/arena/")

    expect(page.locator("#arena-random")).to_be_checked()
    page.fill("#arena-prompt", "哪款空气炸锅最好?")
    page.get_by_role("button", name="Send to both").click()
    vote_a = page.get_by_role("button", name="A is better")
    expect(page.locator("#arena-battle")).to_be_visible(timeout=30_000)
    for side in "ab":
        expect(page.locator(f'.arena-side[data-side="{side}"]')).to_have_attribute("data-status", "complete", timeout=60_000)
        expect(page.locator(f"#arena-meta-{side}")).to_contain_text("tokens")
    expect(vote_a).to_be_enabled()
    # Anonymous until the vote: no name on the page.
    for name in ("tiny-a", "tiny-b"):
        expect(page.locator("#arena-battle")).not_to_contain_text(name)
        expect(page.locator("#battle-list")).not_to_contain_text(name)

    vote_a.click()
    battle = ArenaBattle.objects.get()
    expect(page.locator("#arena-vote-result")).to_contain_text(f"A was {battle.model_a}, B was {battle.model_b}")
    expect(page.locator("#arena-name-a .model-name")).to_have_text(battle.model_a)
    expect(page.locator("#arena-name-b .model-name")).to_have_text(battle.model_b)
    expect(vote_a).to_be_disabled()
    row = page.locator(f'#battle-list tr[data-battle="{battle.pk}"]')
    expect(row).to_contain_text(battle.model_a)
    expect(row).to_contain_text("A is better")
    battle.refresh_from_db()
    assert battle.vote == "a" and battle.voted_at is not None and battle.answer_a != battle.answer_b

    # One click: the vote becomes a preference dataset, linked from the page.
    page.get_by_role("button", name="Export preferences").click()
    link = page.locator("#export-link")
    expect(link).to_have_text("chat-preferences v1", timeout=30_000)
    expect(page.locator("#export-result")).to_contain_text("1 pairs from arena votes")
    link.click()
    dataset = Dataset.objects.get()
    expect(page).to_have_url(f"/datasets/{dataset.pk}/")
    assert (dataset.kind, dataset.status, dataset.rows) == ("preference", "ready", 1)
    expect(page.locator("#status")).to_have_text("Ready")
    expect(page.locator("#rows-body")).to_contain_text("哪款空气炸锅最好?")
    expect(page.locator("#rows-body")).to_contain_text('"chosen"')
