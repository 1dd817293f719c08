"""/v1 through the OpenAI SDK and LangChain against a live web server, local
backend (the tiny BLOOM in the server process) and embeddings."""
from __future__ import annotations

import asyncio
import base64
import json
import time
from functools import lru_cache
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
import torch
from langchain_openai import ChatOpenAI, OpenAIEmbeddings
from openai import AsyncOpenAI, OpenAI
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.api.conftest import World
from tests.support import wait_until

# The marker makes pytest-django create the test database; the tests talk to
# the web server over HTTP and only read the database after their calls (SQLite: a
# read holds a lock until the test's transaction ends).
pytestmark = pytest.mark.django_db

PROMPT = "你好,推荐一款空气炸锅"
RENDERED = f"User: {PROMPT}\n\nBot: "


@lru_cache(maxsize=8)
def reference_greedy(model_dir: Path, text: str, max_new: int) -> tuple[str, int, int]:
    """(answer, answer tokens, prompt tokens) from transformers' own greedy generate."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True).eval()
    ids = tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**ids, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    new = out[0, ids["input_ids"].shape[1]:].tolist()
    if tokenizer.eos_token_id in new:
        new = new[: new.index(tokenizer.eos_token_id)]
    return tokenizer.decode(new, skip_special_tokens=True), len(new), ids["input_ids"].shape[1]


def client(world: World, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=world.v1, api_key=key or world.alice_key, max_retries=0, timeout=60)


def aclient(world: World, key: str | None = None) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=world.v1, api_key=key or world.alice_key, max_retries=0, timeout=120)


def chat(world: World, **kwargs):
    kwargs.setdefault("model", "tiny")
    kwargs.setdefault("messages", [{"role": "user", "content": PROMPT}])
    return client(world).chat.completions.create(**kwargs)


def test_models_lists_what_the_key_may_call(world: World) -> None:
    ids = {model.id for model in client(world).models.list()}
    assert {"tiny", "tiny-short", "embed", "upstream"} <= ids
    assert "bob-private" not in ids and "switched-off" not in ids
    assert client(world).models.retrieve("tiny").owned_by == "v1-alice"
    bob_ids = {model.id for model in client(world, world.bob_key).models.list()}
    assert "bob-private" in bob_ids and "tiny" not in bob_ids


def test_chat_greedy_matches_transformers_and_counts_real_tokens(world: World) -> None:
    expected, new_tokens, prompt_tokens = reference_greedy(world.model_dir, RENDERED, 12)
    reply = chat(world, max_tokens=12, temperature=0)
    assert reply.id.startswith("chatcmpl-") and reply.object == "chat.completion" and reply.model == "tiny"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == expected
    assert reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.completion_tokens == new_tokens
    assert reply.usage.total_tokens == prompt_tokens + new_tokens
    assert reply.choices[0].finish_reason == ("length" if new_tokens == 12 else "stop")


def test_stream_has_openai_shape(world: World) -> None:
    expected, new_tokens, prompt_tokens = reference_greedy(world.model_dir, RENDERED, 12)
    chunks = list(chat(world, max_tokens=12, temperature=0, stream=True, stream_options={"include_usage": True}))
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    roles = [c for c in chunks if c.choices and c.choices[0].delta.role]
    assert roles == [chunks[0]] and chunks[0].choices[0].delta.role == "assistant"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == expected
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length" if new_tokens == 12 else "stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == new_tokens
    assert chunks[-1].usage.prompt_tokens == prompt_tokens
    assert all(c.usage is None for c in chunks[:-1])


def test_raw_stream_ends_with_done_and_no_usage_unless_asked(world: World) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{world.v1}/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {world.alice_key}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert all("usage" not in e for e in events) and events[-1]["choices"][0]["finish_reason"] == "length"


def test_seed_gives_repeatable_sampling(world: World) -> None:
    def sample(seed: int) -> str:
        return chat(world, max_tokens=16, temperature=1.0, top_p=0.95, seed=seed).choices[0].message.content

    assert sample(7) == sample(7)
    assert len({sample(seed) for seed in (1, 2, 3, 4)}) > 1


def test_fifty_concurrent_streams_each_get_their_own_answer(world: World) -> None:
    async def run() -> None:
        api = aclient(world)

        async def stream_one(seed: int) -> str:
            parts = []
            stream = await api.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"{PROMPT} #{seed}"}],
                max_tokens=12, temperature=1.0, seed=seed, stream=True)
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
            return "".join(parts)

        async def whole(seed: int) -> str:
            reply = await api.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"{PROMPT} #{seed}"}],
                max_tokens=12, temperature=1.0, seed=seed)
            return reply.choices[0].message.content

        streamed = await asyncio.gather(*(stream_one(seed) for seed in range(50)))
        alone = [await whole(seed) for seed in range(0, 50, 7)]
        assert all(streamed[seed] == alone[i] for i, seed in enumerate(range(0, 50, 7)))
        assert len(set(streamed)) > 25  # different prompts and seeds, different answers
        await api.close()

    asyncio.run(run())


def test_n_choices_stop_strings_and_seed_extras(world: World) -> None:
    reply = chat(world, max_tokens=8, n=3, seed=11, temperature=1.0)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    assert len({c.message.content for c in reply.choices}) > 1  # seed + i per choice
    assert 3 <= reply.usage.completion_tokens <= 24 and reply.usage.prompt_tokens == reference_greedy(world.model_dir, RENDERED, 12)[2]
    expected, _, _ = reference_greedy(world.model_dir, RENDERED, 12)
    cut = expected[len(expected) // 2 : len(expected) // 2 + 2]
    stopped = chat(world, max_tokens=12, temperature=0, stop=[cut])
    assert stopped.choices[0].message.content == expected[: expected.index(cut)]
    assert stopped.choices[0].finish_reason == "stop"
    streamed = chat(world, max_tokens=12, temperature=0, stop=cut, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == expected[: expected.index(cut)]


def test_seed_extras_decoder_and_max_length(world: World) -> None:
    _, _, prompt_tokens = reference_greedy(world.model_dir, RENDERED, 12)
    seed_style = chat(world, temperature=0.95, top_p=0.7, seed=2020,
                      extra_body={"decoder": "sample", "max_length": prompt_tokens + 6, "repetition_penalty": 1.0})
    assert seed_style.usage.completion_tokens <= 6
    assert seed_style.choices[0].finish_reason == "length" or seed_style.usage.completion_tokens < 6
    contrastive = chat(world, max_tokens=10, extra_body={"decoder": "contrastive", "penalty_alpha": 0.6, "top_k": 4})
    again = chat(world, max_tokens=10, extra_body={"decoder": "contrastive", "penalty_alpha": 0.6, "top_k": 4})
    assert contrastive.choices[0].message.content == again.choices[0].message.content
    greedy = chat(world, max_tokens=10, extra_body={"decoder": "greedy"})
    assert greedy.choices[0].message.content == reference_greedy(world.model_dir, RENDERED, 10)[0]


def test_deployment_defaults_apply_and_requests_override_them(world: World) -> None:
    short = chat(world, model="tiny-short")
    assert short.usage.completion_tokens <= 5
    assert short.choices[0].message.content == reference_greedy(world.model_dir, RENDERED, 5)[0]
    longer = chat(world, model="tiny-short", max_tokens=9)
    assert longer.choices[0].message.content == reference_greedy(world.model_dir, RENDERED, 9)[0]


def test_completions_string_list_and_stream(world: World) -> None:
    api = client(world)
    expected, new_tokens, prompt_tokens = reference_greedy(world.model_dir, "品类结构:", 8)
    one = api.completions.create(model="tiny", prompt="品类结构:", max_tokens=8, temperature=0)
    assert one.id.startswith("cmpl-") and one.object == "text_completion"
    assert one.choices[0].text == expected and one.usage.prompt_tokens == prompt_tokens
    many = api.completions.create(model="tiny", prompt=["品类结构:", "售后服务:"], max_tokens=8, temperature=0)
    assert [c.index for c in many.choices] == [0, 1] and many.choices[0].text == expected
    assert many.choices[1].text == reference_greedy(world.model_dir, "售后服务:", 8)[0]
    streamed = api.completions.create(model="tiny", prompt="品类结构:", max_tokens=8, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == expected


def test_embeddings_float_and_base64(world: World) -> None:
    api = client(world)
    result = api.embeddings.create(model="embed", input=["空气炸锅", "air fryer"])
    assert [d.index for d in result.data] == [0, 1] and len(result.data[0].embedding) == 384
    assert result.usage.prompt_tokens > 0 and result.usage.total_tokens == result.usage.prompt_tokens
    assert abs(np.linalg.norm(result.data[0].embedding) - 1.0) < 1e-4
    raw = httpx.post(f"{world.v1}/embeddings", headers={"Authorization": f"Bearer {world.alice_key}"}, timeout=60,
                     json={"model": "embed", "input": "空气炸锅", "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, result.data[0].embedding, atol=1e-6)


def test_langchain_chat_and_embeddings(world: World) -> None:
    llm = ChatOpenAI(base_url=world.v1, api_key=world.alice_key, model="tiny", temperature=0, max_tokens=10, max_retries=0)
    expected = reference_greedy(world.model_dir, RENDERED, 10)[0]
    assert llm.invoke(PROMPT).content == expected
    assert "".join(chunk.content for chunk in llm.stream(PROMPT)) == expected
    # LangChain tokenises with tiktoken by default, which downloads its
    # vocabulary: offline, send strings instead (any non-OpenAI model needs this).
    embeddings = OpenAIEmbeddings(base_url=world.v1, api_key=world.alice_key, model="embed",
                                  check_embedding_ctx_length=False, max_retries=0)
    docs = embeddings.embed_documents(["空气炸锅的价格", "洗衣机的售后"])
    query = embeddings.embed_query("空气炸锅多少钱")
    assert len(docs) == 2 and len(query) == 384
    assert np.dot(query, docs[0]) > np.dot(query, docs[1])


# ---------------------------------------------------------------- errors

def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def post(world: World, path: str, body: dict | bytes, key: str | None = "alice") -> httpx.Response:
    headers = {} if key is None else {"Authorization": f"Bearer {world.alice_key if key == 'alice' else key}"}
    if isinstance(body, bytes):
        return httpx.post(f"{world.v1}{path}", content=body, headers={**headers, "Content-Type": "application/json"}, timeout=60)
    return httpx.post(f"{world.v1}{path}", json=body, headers=headers, timeout=60)


MESSAGES = [{"role": "user", "content": "hi"}]


def test_authentication_errors(world: World) -> None:
    missing = post(world, "/chat/completions", {"model": "tiny", "messages": MESSAGES}, key=None)
    assert missing.status_code == 401 and error_of(missing)["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        client(world, "wbk_nope_nope").chat.completions.create(model="tiny", messages=MESSAGES)
    with pytest.raises(openai.AuthenticationError):
        client(world, world.revoked_key).models.list()


def test_unknown_and_foreign_models_are_404(world: World) -> None:
    for model in ("no-such-model", "bob-private", "switched-off"):
        with pytest.raises(openai.NotFoundError) as caught:
            chat(world, model=model)
        assert caught.value.body["param"] == "model" and caught.value.body["code"] == "model_not_found"


@pytest.mark.parametrize("body, param", [
    ({"temperature": 5}, "temperature"),
    ({"top_p": "high"}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"n": 99}, "n"),
    ({"stop": [1, 2]}, "stop"),
    ({"extra": {"decoder": "beam"}}, "decoder"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": None}, "model"),
    ({"stream": "yes"}, "stream"),
    ({"extra": {"max_length": 2}}, "max_length"),
])
def test_bad_parameters_are_400_naming_the_param(world: World, body: dict, param: str) -> None:
    request = {"model": "tiny", "messages": MESSAGES, **{k: v for k, v in body.items() if k != "extra"}, **body.get("extra", {})}
    for stream in (False, True):
        response = post(world, "/chat/completions", {**request, "stream": request.get("stream", stream)})
        assert response.status_code == 400, response.text
        error = error_of(response)
        assert error["param"] == param and error["type"] == "invalid_request_error"


def test_other_client_errors(world: World) -> None:
    assert post(world, "/chat/completions", b"{not json").status_code == 400
    too_big = post(world, "/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]})
    assert too_big.status_code == 413 and error_of(too_big)["code"] == "request_too_large"
    wrong = post(world, "/embeddings", {"model": "tiny", "input": "x"})
    assert wrong.status_code == 400 and error_of(wrong)["param"] == "model"
    wrong = post(world, "/chat/completions", {"model": "embed", "messages": MESSAGES})
    assert wrong.status_code == 400 and error_of(wrong)["param"] == "model"
    tokens = post(world, "/embeddings", {"model": "embed", "input": [[1, 2, 3]]})
    assert tokens.status_code == 400 and error_of(tokens)["param"] == "input"
    assert httpx.get(f"{world.v1}/chat/completions", headers={"Authorization": f"Bearer {world.alice_key}"}).status_code == 405
    assert httpx.get(f"{world.v1}/nowhere", headers={"Authorization": f"Bearer {world.alice_key}"}).status_code == 404


def test_backend_down_is_503_and_upstream_failure_is_502(world: World) -> None:
    with pytest.raises(openai.APIStatusError) as down:
        chat(world, model="down")
    assert down.value.status_code == 503 and down.value.body["code"] == "backend_unavailable"
    with pytest.raises(openai.APIStatusError) as failed:
        chat(world, model="upstream-missing")
    assert failed.value.status_code == 502 and "no-such-model" in failed.value.body["message"]
    # The streaming request fails the same way, before the stream starts.
    with pytest.raises(openai.APIStatusError) as failed_stream:
        list(chat(world, model="down", stream=True))
    assert failed_stream.value.status_code == 503


def test_concurrency_limit_per_key_and_slot_freed_on_disconnect(world: World) -> None:
    headers = {"Authorization": f"Bearer {world.limited_key}"}
    body = {"model": "slow", "messages": MESSAGES, "stream": True}  # 100 chunks, 0.1 s apart
    with httpx.Client(timeout=60) as http:
        with http.stream("POST", f"{world.v1}/chat/completions", json=body, headers=headers) as held:
            assert held.status_code == 200
            lines = held.iter_lines()  # (dropping the iterator would close the connection)
            next(lines)  # the stream is running
            second = http.post(f"{world.v1}/chat/completions", headers=headers,
                               json={"model": "tiny", "messages": MESSAGES, "max_tokens": 2})
            assert second.status_code == 429 and error_of(second)["type"] == "rate_limit_error"
        # The client went away mid-stream: its slot is released.
        wait_until(lambda: httpx.post(f"{world.v1}/chat/completions", headers=headers, timeout=60,
                                      json={"model": "tiny", "messages": MESSAGES, "max_tokens": 2}).status_code == 200,
                   timeout_s=20, what="the slot to be released")


def test_failure_after_the_stream_started_is_an_error_event_then_done(world: World) -> None:
    for model, message in (("breaks", "before finishing"), ("error-event", "CUDA out of memory")):
        with httpx.stream("POST", f"{world.v1}/chat/completions", timeout=60,
                          json={"model": model, "messages": MESSAGES, "stream": True},
                          headers={"Authorization": f"Bearer {world.alice_key}"}) as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        events = [json.loads(line[6:]) for line in lines[:-1]]
        assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "partial"
        assert message in events[-1]["error"]["message"] and events[-1]["error"]["code"] == "backend_error"
    with pytest.raises(openai.APIError):
        list(chat(world, model="breaks", stream=True))


def test_every_request_is_logged_and_summed_per_key(world: World, django_db_blocker) -> None:
    from webapp.accounts.models import ApiKey
    from webapp.api.gateway import LogWriter
    from webapp.api.models import RequestLog
    from webapp.api.selectors import usage_by_key

    reply = chat(world, model="tiny", max_tokens=3, temperature=0)
    post(world, "/chat/completions", {"model": "no-such-model", "messages": MESSAGES})
    # Rows are written in batches a moment after the answer. (Not polled: on
    # SQLite this test's read transaction would block the server's insert.)
    time.sleep(LogWriter.FLUSH_AFTER_S + 1.5)
    with django_db_blocker.unblock():
        logs = RequestLog.objects.filter(api_key__name="alice", api_key__owner__username="v1-alice")
        ok = logs.filter(status_code=200, model="tiny", completion_tokens=reply.usage.completion_tokens).first()
        assert ok is not None and ok.prompt_tokens == reply.usage.prompt_tokens and ok.latency_ms >= 0
        assert logs.filter(status_code=404, model="no-such-model").exists()
        summary = {row["name"]: row for row in usage_by_key(keys=ApiKey.objects.filter(owner=logs.first().owner))}
        assert summary["alice"]["request_count"] >= 2 and summary["alice"]["completion_tokens"] >= reply.usage.completion_tokens
