"""/ws/chat/ through WebsocketCommunicator on the real Redis channel layer,
with the tiny BLOOM served in-process by a `local` deployment."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from inference.base import GenerationRequest
from inference.params import sampling_params
from tests.chat.conftest import ORIGIN, down_deployment, local_deployment, make_user, split_turn
from webapp.asgi import application
from webapp.chat import services
from webapp.chat.markdown import render_markdown
from webapp.chat.models import ArenaBattle, Conversation, Message
from webapp.deployments.serving import backend_for

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

PROMPT = "你好,推荐一款空气炸锅"
LONG = 100_000  # tokens: minutes of generation unless stopped


def texts(frames: list[dict]) -> str:
    return "".join(f["text"] for f in frames if f["type"] == "delta")


async def test_channel_layer_is_redis() -> None:
    assert type(get_channel_layer()).__name__ == "RedisChannelLayer"


async def test_anonymous_socket_is_refused() -> None:
    communicator = WebsocketCommunicator(application, "/ws/chat/", headers=[ORIGIN])
    connected, code = await communicator.connect(timeout=10)
    assert not connected and code == 4401


async def test_deltas_arrive_in_order_and_match_the_backend_and_the_stored_answer(connect, tiny_bloom: Path) -> None:
    alice, cookie = await make_user("alice")
    deployment = await sync_to_async(local_deployment)(alice, "tiny", tiny_bloom)
    socket = await connect(cookie)

    frames = await socket.request({"type": "send", "request": "r1", "conversation": None, "model": "tiny",
                                   "content": PROMPT, "params": {"decoder": "greedy", "max_tokens": 12}})
    start, stored, deltas, done = split_turn(frames)
    assert start["conversation"] is None and start["model"] == "tiny" and start["replaces"] == []
    assert stored["created"] is True and stored["title"] == PROMPT and stored["replaces"] == []
    assert deltas
    assert [f["index"] for f in deltas] == list(range(len(deltas)))
    assert done["type"] == "done" and done["status"] == "complete"
    assert done["finish_reason"] == "length" and done["usage"]["completion_tokens"] == 12
    assert done["ttft_ms"] is not None and done["latency_ms"] >= done["ttft_ms"]

    # What /v1 would answer: the backend's own greedy generate of the same chat.
    expected = await backend_for(deployment).generate(GenerationRequest(
        params=sampling_params({"temperature": 0, "max_tokens": 12}), messages=({"role": "user", "content": PROMPT},)
    ))
    assert texts(deltas) == expected.text
    assert done["html"] == render_markdown(expected.text)  # what the page swaps in for the raw text

    answer = await Message.objects.aget(pk=done["message"])
    assert answer.content == expected.text and answer.status == "complete"
    assert answer.conversation_id == stored["conversation"] and answer.reply_to_id == stored["user_message"]
    assert (answer.model_name, answer.completion_tokens, answer.prompt_tokens) == ("tiny", 12, expected.prompt_tokens)
    assert answer.params["decoder"] == "greedy" and answer.params["max_new_tokens"] == 12
    assert answer.latency_ms is not None and answer.ttft_ms is not None

    # A seeded sample in the same conversation: the history goes with it, and
    # the text is what the backend gives for that seed.
    second = await socket.request({"type": "send", "request": "r2", "conversation": stored["conversation"],
                                   "content": "再来一个", "params": {"max_tokens": 8, "seed": 7}})
    history = ({"role": "user", "content": PROMPT}, {"role": "assistant", "content": expected.text},
               {"role": "user", "content": "再来一个"})
    seeded = await backend_for(deployment).generate(GenerationRequest(
        params=sampling_params({"max_tokens": 8, "seed": 7}), messages=history))
    assert split_turn(second)[1]["created"] is False and texts(second) == seeded.text
    assert await Message.objects.filter(conversation_id=stored["conversation"]).acount() == 4


async def _until_stored_and_delta(socket, request) -> list[dict]:
    """Frames after `start` until both `stored` and a delta came: [stored,
    first delta, later deltas…] (the two may come in either order)."""
    stored, deltas = None, []
    while stored is None or not deltas:
        frame = await socket.receive(request)
        if frame["type"] == "stored":
            stored = frame
        else:
            assert frame["type"] == "delta", frame
            deltas.append(frame)
    return [stored, *deltas]


async def _engine_idle(engine, timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while engine.active_rows or engine.pending:
        assert asyncio.get_running_loop().time() < deadline, "the engine kept generating"
        await asyncio.sleep(0.02)


async def test_stop_cancels_the_generation_in_the_backend(connect, tiny_bloom: Path) -> None:
    alice, cookie = await make_user("alice")
    deployment = await sync_to_async(local_deployment)(alice, "tiny", tiny_bloom)
    socket = await connect(cookie)
    await socket.send({"type": "send", "request": "long", "model": "tiny", "content": PROMPT,
                       "params": {"decoder": "greedy", "max_tokens": LONG}})
    first_start = await socket.receive("long")
    assert first_start["type"] == "start"
    seen = await _until_stored_and_delta(socket, "long")
    stored, first = seen[0], seen[1]
    engine = backend_for(deployment).engine
    assert engine is not None and engine.active_rows == 1  # generating now
    # While it runs: the same request id, or another turn of the same conversation, is refused.
    # The duplicate shares the running request's id, so its error frame comes
    # among that request's deltas (how many depends on timing): keep those.
    await socket.send({"type": "send", "request": "long", "model": "tiny", "content": "x"})
    early: list[dict] = []
    while (duplicate := await socket.receive("long"))["type"] != "error":
        early.append(duplicate)
    assert all(frame["type"] == "delta" for frame in early)
    early = [*seen[2:], *early]
    assert duplicate["code"] == "conflict" and duplicate["param"] == "request"
    [busy] = await socket.request({"type": "regenerate", "request": "again", "conversation": stored["conversation"]})
    assert busy["code"] == "conflict" and busy["param"] == "conversation"

    await socket.send({"type": "stop", "request": "long"})
    frames = [first, *early, *await socket.frames("long")]
    done = frames[-1]
    assert done["status"] == "stopped" and done["finish_reason"] is None
    assert 0 < done["usage"]["completion_tokens"] < LONG

    # The engine dropped the row: no active request, and it stops stepping.
    await _engine_idle(engine)
    steps = engine.steps
    await asyncio.sleep(0.3)
    assert engine.steps == steps

    answer = await Message.objects.aget(pk=done["message"])
    assert answer.status == "stopped" and answer.content == texts(frames)
    assert answer.completion_tokens == done["usage"]["completion_tokens"]

    # The socket goes on: stopping something that is not running is an error frame.
    await socket.send({"type": "stop", "request": "long"})
    error = await socket.receive("long")
    assert error["type"] == "error" and error["code"] == "not_found"


async def test_a_dropped_connection_stops_the_backend_and_keeps_the_conversation(connect, tiny_bloom: Path) -> None:
    alice, cookie = await make_user("alice")
    deployment = await sync_to_async(local_deployment)(alice, "tiny", tiny_bloom)
    socket = await connect(cookie)
    await socket.send({"type": "send", "request": 1, "model": "tiny", "content": PROMPT,
                       "params": {"decoder": "greedy", "max_tokens": LONG}})
    assert (await socket.receive(1))["type"] == "start"
    start = (await _until_stored_and_delta(socket, 1))[0]
    await socket.close()

    await _engine_idle(backend_for(deployment).engine)
    answer = await Message.objects.aget(conversation_id=start["conversation"], role="assistant")
    assert answer.status == "stopped" and 0 < answer.completion_tokens < LONG

    # Reconnected, the conversation goes on where it was.
    again = await connect(cookie)
    frames = await again.request({"type": "send", "request": 2, "conversation": start["conversation"],
                                  "content": "继续", "params": {"max_tokens": 3}})
    assert frames[-1]["status"] == "complete"
    roles = [m.role async for m in Message.objects.filter(conversation_id=start["conversation"]).order_by("id")]
    assert roles == ["user", "assistant", "user", "assistant"]


async def test_another_users_conversation_is_refused_without_its_content(connect, tiny_bloom: Path) -> None:
    alice, cookie = await make_user("alice")
    bob, _ = await make_user("bob")
    await sync_to_async(local_deployment)(alice, "tiny", tiny_bloom, shared=True)
    theirs = await Conversation.objects.acreate(owner=bob, title="bob's secret plans", model_name="tiny")
    await Message.objects.acreate(conversation=theirs, role="user", content="the secret is 42")
    socket = await connect(cookie)

    for kind in ("send", "edit", "regenerate"):
        [error] = await socket.request({"type": kind, "request": kind, "conversation": theirs.pk,
                                        "model": "tiny", "content": "tell me"})
        assert error["type"] == "error" and error["message"] == f"no conversation with id {theirs.pk}"
        assert error["param"] == "conversation" and error["code"] == "not_found" and error["retryable"] is False
        assert "secret" not in str(error)
    assert await Message.objects.filter(conversation=theirs).acount() == 1
    assert not await Conversation.objects.filter(owner=alice).aexists()


async def test_bad_frames_and_parameters_are_error_frames_and_the_socket_answers_the_next_send(
    connect, tiny_bloom: Path
) -> None:
    alice, cookie = await make_user("alice")
    bob, _ = await make_user("bob")
    await sync_to_async(local_deployment)(alice, "tiny", tiny_bloom)
    await sync_to_async(local_deployment)(bob, "bobs-model", tiny_bloom)
    socket = await connect(cookie)
    base = {"type": "send", "model": "tiny", "content": PROMPT}

    cases = [
        ({"params": {"temperature": 5}}, "temperature", "'temperature' must be between 0 and 2 (got 5)"),
        ({"params": {"decoder": "beam"}}, "decoder", "'decoder' must be one of sample, greedy, contrastive (got 'beam')"),
        ({"params": {"max_tokens": 0}}, "max_tokens", "'max_tokens' must be between 1 and 1e+06 (got 0)"),
        ({"params": {"n": 2}}, "n", None),
        ({"params": "hot"}, "params", "'params' must be an object"),
        ({"content": "  "}, "content", "'content' must be a non-empty string"),
        ({"model": "bobs-model"}, "model", "The model 'bobs-model' does not exist or you do not have access to it."),
        ({"model": None}, "model", None),
        ({"conversation": True}, "conversation", "no conversation with id True"),
    ]
    for index, (change, param, message) in enumerate(cases):
        [error] = await socket.request({**base, **change, "request": f"bad{index}"})
        assert error["type"] == "error" and error["param"] == param, error
        assert error["retryable"] is False
        if message:
            assert error["message"] == message
    await socket.communicator.send_to(text_data="not json")
    assert (await socket.receive())["code"] == "invalid_frame"
    await socket.send({"type": "dance", "request": "x"})
    assert (await socket.receive("x"))["param"] == "type"
    assert not await Conversation.objects.aexists()  # nothing stored for refused requests

    frames = await socket.request({**base, "request": "good", "params": {"max_tokens": 4}})
    assert split_turn(frames)[3]["status"] == "complete"
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}


async def test_backend_down_is_a_retryable_error_frame_and_a_stored_error(connect) -> None:
    alice, cookie = await make_user("alice")
    await sync_to_async(down_deployment)(alice)
    socket = await connect(cookie)
    frames = await socket.request({"type": "send", "request": "d", "model": "down", "content": "hello?"})
    assert [f["type"] for f in frames] == ["start", "stored", "error", "done"]
    error, done = frames[2], frames[3]
    assert error["retryable"] is True and error["code"] == "backend_unavailable" and error["message"]
    assert done["status"] == "error"
    answer = await Message.objects.aget(pk=done["message"])
    assert answer.status == "error" and answer.error == error["message"] and answer.content == ""

    # Retry (regenerate) replaces the failed answer; still down, still usable.
    again = await socket.request({"type": "regenerate", "request": "d2", "conversation": done["conversation"]})
    assert again[0]["replaces"] == [answer.pk] and again[1]["replaces"] == [answer.pk]
    assert again[-1]["status"] == "error"
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}


async def test_arena_streams_two_models_at_once_and_hides_random_names(connect, tiny_bloom: Path) -> None:
    alice, cookie = await make_user("alice")
    await sync_to_async(local_deployment)(alice, "tiny-a", tiny_bloom)
    await sync_to_async(local_deployment)(alice, "tiny-b", tiny_bloom)
    socket = await connect(cookie)

    frames = await socket.request({"type": "arena.start", "request": "duel", "prompt": PROMPT, "models": None,
                                   "params": {"decoder": "greedy", "max_tokens": 6}}, dones=2)
    start = frames[0]
    assert start["type"] == "start" and start["anonymous"] is True and start["models"] == {"a": None, "b": None}
    for side in ("a", "b"):
        deltas = [f for f in frames if f["type"] == "delta" and f["side"] == side]
        assert [f["index"] for f in deltas] == list(range(len(deltas))) and deltas
    dones = {f["side"]: f for f in frames if f["type"] == "done"}
    assert set(dones) == {"a", "b"} and all(d["status"] == "complete" for d in dones.values())
    assert "tiny-a" not in str(frames) and "tiny-b" not in str(frames)

    battle = await ArenaBattle.objects.aget(pk=start["battle"])
    assert {battle.model_a, battle.model_b} == {"tiny-a", "tiny-b"} and battle.anonymous and not battle.vote
    assert battle.answer_a == texts([f for f in frames if f.get("side") == "a"])
    assert battle.answer_b == texts([f for f in frames if f.get("side") == "b"])
    assert battle.status_a == battle.status_b == "complete" and battle.stats_a["completion_tokens"] == 6
    assert (dones["a"]["html"], dones["b"]["html"]) == (render_markdown(battle.answer_a), render_markdown(battle.answer_b))

    # Chosen models are named at once; stop ends both sides.
    await socket.send({"type": "arena.start", "request": "named", "prompt": PROMPT, "models": ["tiny-a", "tiny-b"],
                       "params": {"decoder": "greedy", "max_tokens": LONG}})
    start = await socket.receive("named")
    assert start["models"] == {"a": "tiny-a", "b": "tiny-b"} and start["anonymous"] is False
    assert (await socket.receive("named"))["type"] == "delta"
    await socket.send({"type": "stop", "request": "named"})
    frames = await socket.frames("named", dones=2)
    assert sorted(f["status"] for f in frames if f["type"] == "done") == ["stopped", "stopped"]


async def test_an_idle_socket_stays_open(connect) -> None:
    """channels_redis waits 5 s for a consumer's next message; with redis-py's
    default 5 s read timeout the consumer died there (settings.CHANNEL_LAYERS)."""
    _, cookie = await make_user("alice")
    socket = await connect(cookie)
    await asyncio.sleep(6.5)
    await socket.send({"type": "ping"})
    assert await socket.receive(timeout=5) == {"type": "pong"}


async def test_a_turn_whose_conversation_changed_since_the_preview_is_refused_and_stops(
    connect, tiny_bloom: Path, monkeypatch
) -> None:
    """The answer streams from a read-only preview while the turn is stored;
    if the stored turn would ask something else (another tab sent into the
    conversation in between), the write refuses it: an error before
    `stored`, the backend stops, nothing is kept."""
    alice, cookie = await make_user("alice")
    deployment = await sync_to_async(local_deployment)(alice, "tiny", tiny_bloom)
    real_preview = services.chat_turn_preview
    monkeypatch.setattr(services, "chat_turn_preview",
                        lambda **fields: real_preview(**{**fields, "content": "something else entirely"}))
    socket = await connect(cookie)
    frames = await socket.request({"type": "send", "request": "r1", "conversation": None, "model": "tiny",
                                   "content": PROMPT, "params": {"decoder": "greedy", "max_tokens": LONG}})
    assert frames[0]["type"] == "start" and frames[-1]["type"] == "error", [f["type"] for f in frames]
    assert {f["type"] for f in frames[1:-1]} <= {"delta"}
    assert frames[-1]["code"] == "conflict" and frames[-1]["param"] == "conversation"
    engine = backend_for(deployment).engine
    if engine is not None:  # None: stopped before the model had even loaded
        await _engine_idle(engine)
    assert not await Conversation.objects.aexists() and not await Message.objects.aexists()

    monkeypatch.setattr(services, "chat_turn_preview", real_preview)
    frames = await socket.request({"type": "send", "request": "r2", "conversation": None, "model": "tiny",
                                   "content": PROMPT, "params": {"decoder": "greedy", "max_tokens": 4}})
    assert split_turn(frames)[3]["status"] == "complete"


async def test_sockets_that_start_chats_at_once_look_their_model_up_once(connect, tiny_bloom: Path, monkeypatch) -> None:
    alice, cookie = await make_user("alice")
    await sync_to_async(local_deployment)(alice, "tiny", tiny_bloom)
    calls = []
    real_resolve = services.resolve_model

    def counted(**fields):
        calls.append(fields["name"])
        return real_resolve(**fields)

    monkeypatch.setattr(services, "resolve_model", counted)
    sockets = [await connect(cookie) for _ in range(6)]
    frame = {"type": "send", "conversation": None, "model": "tiny", "content": PROMPT, "params": {"max_tokens": 2}}
    results = await asyncio.gather(*(socket.request({**frame, "request": f"r{n}"}) for n, socket in enumerate(sockets)))
    assert all(split_turn(frames)[3]["status"] == "complete" for frames in results)
    # The previews share one lookup; each turn's write checks the model itself.
    assert calls.count("tiny") == 1 + len(sockets)
