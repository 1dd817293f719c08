"""The judge client through the real HTTP stack (openai SDK → local scripted
judge): usage, retries on 429/5xx, timeouts, refusals, and the key kept out
of every error."""
from __future__ import annotations

import asyncio
import json
import socket
import time
import urllib.request

import pytest

from tests.evaluations.scripted_judge import (
    MODEL,
    Reply,
    always,
    failing,
    rate_limited,
    score_reply,
    scripted_judge,
    too_slow,
)
from webapp.evaluations.judging.client import JudgeClient, JudgeFailed

KEY = "sk-test-7f3a9c1e5b"


def _client(base_url: str, *, timeout_s: float = 5.0, max_retries: int = 3, api_key: str = KEY) -> JudgeClient:
    return JudgeClient(base_url, "gpt-4", api_key, timeout_s=timeout_s, max_retries=max_retries)


@pytest.mark.asyncio
async def test_reply_text_usage_and_request_shape() -> None:
    script = lambda prompt, call: Reply("8 6\nBoth fine.", prompt_tokens=321, completion_tokens=12)  # noqa: E731
    with scripted_judge(script) as judge:
        async with _client(judge.base_url) as client:
            reply = await client.judge("Compare these two answers.", max_tokens=256)
    assert (reply.text, reply.prompt_tokens, reply.completion_tokens) == ("8 6\nBoth fine.", 321, 12)
    assert reply.latency_ms >= 0
    [request] = judge.requests
    assert request.path == "/v1/chat/completions"
    assert request.prompt == "Compare these two answers."
    assert request.authorization == f"Bearer {KEY}"
    assert request.body["model"] == "gpt-4"
    assert request.body["temperature"] == 0
    assert request.body["max_tokens"] == 256
    assert request.body["messages"] == [{"role": "user", "content": "Compare these two answers."}]


@pytest.mark.asyncio
async def test_429_twice_then_success_is_retried_and_honours_retry_after() -> None:
    with scripted_judge(rate_limited(2, then=always("7 7"))) as judge:
        async with _client(judge.base_url, max_retries=3) as client:
            started = time.perf_counter()
            reply = await client.judge("p")
            elapsed = time.perf_counter() - started
    assert reply.text == "7 7"
    assert judge.calls == 3
    # retry-after-ms: 1 was honoured; the SDK's own backoff would wait ≥ 1.1 s for two retries
    assert elapsed < 1.0
    assert reply.latency_ms >= 2  # the latency covers the retries


@pytest.mark.asyncio
async def test_500_then_success_is_retried() -> None:
    with scripted_judge(failing(500, 1, then=always("[[A]]"))) as judge:
        async with _client(judge.base_url, max_retries=2) as client:
            reply = await client.judge("p")
    assert reply.text == "[[A]]"
    assert judge.calls == 2


@pytest.mark.asyncio
async def test_retries_exhausted_raise_judge_failed_with_the_status() -> None:
    with scripted_judge(rate_limited(100, then=always("never"))) as judge:
        async with _client(judge.base_url, max_retries=2) as client:
            with pytest.raises(JudgeFailed) as failed:
                await client.judge("p")
    assert judge.calls == 3
    assert failed.value.status == 429
    assert "HTTP 429 (after 3 attempts)" in failed.value.message
    assert "Rate limit reached" in failed.value.message


@pytest.mark.asyncio
async def test_a_reply_slower_than_the_timeout_fails_naming_the_timeout() -> None:
    with scripted_judge(too_slow(5.0)) as judge:
        async with _client(judge.base_url, timeout_s=0.3, max_retries=0) as client:
            started = time.perf_counter()
            with pytest.raises(JudgeFailed) as failed:
                await client.judge("p")
            elapsed = time.perf_counter() - started
    assert judge.calls == 1
    assert "did not answer within the 0.3 s timeout" in failed.value.message
    assert failed.value.status is None
    assert elapsed < 3.0


@pytest.mark.asyncio
async def test_401_fails_at_once_and_never_shows_the_key() -> None:
    # A careless server echoes the key in its error message.
    script = lambda prompt, call: Reply(f"Incorrect API key provided: {KEY}", status=401)  # noqa: E731
    with scripted_judge(script) as judge:
        async with _client(judge.base_url, max_retries=5) as client:
            with pytest.raises(JudgeFailed) as failed:
                await client.judge("p")
    assert judge.calls == 1
    assert judge.requests[0].authorization == f"Bearer {KEY}"
    assert failed.value.status == 401
    assert "HTTP 401" in failed.value.message and "Incorrect API key provided: ***" in failed.value.message
    assert KEY not in failed.value.message and KEY not in str(failed.value) and KEY not in repr(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


@pytest.mark.asyncio
async def test_other_4xx_are_not_retried() -> None:
    script = lambda prompt, call: Reply("max_tokens is too large", status=400)  # noqa: E731
    with scripted_judge(script) as judge:
        async with _client(judge.base_url, max_retries=5) as client:
            with pytest.raises(JudgeFailed, match="HTTP 400: .*max_tokens is too large"):
                await client.judge("p")
    assert judge.calls == 1


@pytest.mark.asyncio
async def test_unreachable_judge_fails_naming_the_url() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    async with _client(base_url, max_retries=0, timeout_s=2.0) as client:
        with pytest.raises(JudgeFailed, match=f"could not connect to the judge at {base_url}"):
            await client.judge("p")


@pytest.mark.asyncio
async def test_no_key_sends_a_placeholder_and_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-the-environment")
    with scripted_judge(always("8 6")) as judge:
        async with _client(judge.base_url, api_key="") as client:
            await client.judge("p")
    assert judge.requests[0].authorization == "Bearer EMPTY"


def test_client_repr_has_no_key() -> None:
    client = _client("http://127.0.0.1:9/v1")
    assert KEY not in repr(client) and KEY not in str(vars(client).get("base_url"))
    asyncio.run(client.close())


@pytest.mark.asyncio
async def test_32_concurrent_calls_overlap_on_the_scripted_judge() -> None:
    # The benchmark's setting: 32 in flight, 200 ms each; serially this is 6.4 s.
    with scripted_judge(lambda prompt, call: score_reply(8, 6), latency_s=0.2) as judge:
        async with _client(judge.base_url) as client:
            started = time.perf_counter()
            replies = await asyncio.gather(*(client.judge(f"question {i}") for i in range(32)))
            elapsed = time.perf_counter() - started
    assert [r.text.splitlines()[0] for r in replies] == ["8 6"] * 32
    assert sorted(r.prompt for r in judge.requests) == sorted(f"question {i}" for i in range(32))
    assert elapsed < 2.0


def test_scripted_judge_lists_its_model_and_numbers_calls() -> None:
    seen: list[int] = []

    def script(prompt: str, call: int) -> Reply:
        seen.append(call)
        return Reply(prompt.upper())

    with scripted_judge(script) as judge:
        with urllib.request.urlopen(f"{judge.base_url}/models", timeout=5) as response:
            models = json.load(response)
        for text in ("a", "b"):
            request = urllib.request.Request(
                f"{judge.base_url}/chat/completions", method="POST",
                data=json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=5) as response:
                body = json.load(response)
    assert [m["id"] for m in models["data"]] == [MODEL]
    assert body["choices"][0]["message"]["content"] == "B"
    assert body["usage"]["prompt_tokens"] >= 1
    assert seen == [1, 2] and [r.call for r in judge.requests] == [1, 2]
