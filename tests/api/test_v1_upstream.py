"""The openai backend: our gateway → a second instance of our own /v1 (an
OpenAI-compatible upstream like vLLM), through the SDK and LangChain."""
from __future__ import annotations

import asyncio

import pytest
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI, OpenAI

from tests.api.conftest import World
from tests.api.test_v1_local import PROMPT, RENDERED, reference_greedy

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": PROMPT}]


def test_sync_answers_match_the_upstream_model(world: World) -> None:
    api = OpenAI(base_url=world.v1, api_key=world.alice_key, max_retries=0, timeout=60)
    expected, new_tokens, prompt_tokens = reference_greedy(world.model_dir, RENDERED, 12)
    reply = api.chat.completions.create(model="upstream", messages=MESSAGES, max_tokens=12, temperature=0)
    assert reply.model == "upstream" and reply.choices[0].message.content == expected
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (prompt_tokens, new_tokens)
    completion = api.completions.create(model="upstream", prompt="品类结构:", max_tokens=8, temperature=0)
    assert completion.choices[0].text == reference_greedy(world.model_dir, "品类结构:", 8)[0]


def test_stream_passes_through_with_usage(world: World) -> None:
    api = OpenAI(base_url=world.v1, api_key=world.alice_key, max_retries=0, timeout=60)
    expected, new_tokens, prompt_tokens = reference_greedy(world.model_dir, RENDERED, 12)
    chunks = list(api.chat.completions.create(model="upstream", messages=MESSAGES, max_tokens=12, temperature=0,
                                              stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].usage.completion_tokens == new_tokens and chunks[-1].usage.prompt_tokens == prompt_tokens


def test_async_client_seed_and_seed_style_extras(world: World) -> None:
    async def run() -> tuple[list[str], str]:
        api = AsyncOpenAI(base_url=world.v1, api_key=world.alice_key, max_retries=0, timeout=60)
        replies = await asyncio.gather(*(
            api.chat.completions.create(model="upstream", messages=MESSAGES, max_tokens=10, temperature=1.0, seed=5)
            for _ in range(4)
        ))
        direct = await AsyncOpenAI(base_url=f"{world.upstream}/v1", api_key=world.alice_key, max_retries=0).chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=10, temperature=1.0, seed=5)
        await api.close()
        return [r.choices[0].message.content for r in replies], direct.choices[0].message.content

    texts, direct = asyncio.run(run())
    assert set(texts) == {direct}  # the seed reaches the upstream unchanged
    api = OpenAI(base_url=world.v1, api_key=world.alice_key, max_retries=0, timeout=60)
    _, _, prompt_tokens = reference_greedy(world.model_dir, RENDERED, 12)
    # max_length (prompt + answer) is turned into max_tokens with the deployment's tokenizer.
    reply = api.chat.completions.create(model="upstream", messages=MESSAGES, temperature=0,
                                        extra_body={"max_length": prompt_tokens + 4, "decoder": "greedy"})
    assert reply.usage.completion_tokens <= 4
    assert reply.choices[0].message.content == reference_greedy(world.model_dir, RENDERED, 4)[0]


def test_langchain_through_the_upstream(world: World) -> None:
    llm = ChatOpenAI(base_url=world.v1, api_key=world.alice_key, model="upstream", temperature=0, max_tokens=10, max_retries=0)
    expected = reference_greedy(world.model_dir, RENDERED, 10)[0]
    assert llm.invoke(PROMPT).content == expected
    assert "".join(chunk.content for chunk in llm.stream(PROMPT)) == expected


def test_upstream_bad_request_comes_back_as_400_with_its_message(world: World) -> None:
    import openai

    api = OpenAI(base_url=world.v1, api_key=world.alice_key, max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError) as caught:
        # Contrastive search is ours (local backend) only: the gateway refuses it before calling upstream.
        api.chat.completions.create(model="upstream", messages=MESSAGES, extra_body={"decoder": "contrastive"})
    assert caught.value.body["param"] == "decoder"
