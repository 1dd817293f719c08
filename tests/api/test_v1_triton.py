"""/v1 → Triton (a real tritonserver from nvidia-pytriton serving the tiny
BLOOM with FasterTransformer's and TensorRT-LLM's tensor names), through the
OpenAI SDK (sync, async, streaming) and LangChain."""
from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI, OpenAI

from tests.api.conftest import World
from tests.api.test_v1_local import PROMPT, RENDERED, reference_greedy
from tests.triton_support import TritonServer
from webapp.deployments.models import Deployment

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": PROMPT}]
FT = {"protocol": "fastertransformer"}
DEPLOYMENTS = {
    # name: (endpoint kind, server model, options)
    "tri-ft-grpc": ("grpc", "tiny_ft", {**FT, "transport": "grpc"}),
    "tri-ft-http": ("http", "tiny_ft", {**FT, "transport": "http"}),
    "tri-ft-stream": ("grpc", "tiny_ft_stream", {**FT, "stream": True}),
    "tri-trtllm": ("grpc", "tiny_trtllm_stream", {"protocol": "tensorrtllm", "stream": True}),
}


@pytest.fixture(scope="module")
def triton_models(world: World, triton_server: TritonServer, django_db_blocker) -> Iterator[list[str]]:
    with django_db_blocker.unblock():
        owner = Deployment.objects.get(name="tiny").owner
        for name, (transport, model, options) in DEPLOYMENTS.items():
            endpoint = triton_server.grpc_url if transport == "grpc" else triton_server.http_url
            Deployment.objects.create(owner=owner, name=name, kind="triton", endpoint_url=endpoint, server_model=model,
                                      model_path=str(world.model_dir), options=options)
    yield list(DEPLOYMENTS)
    with django_db_blocker.unblock():
        Deployment.objects.filter(name__in=DEPLOYMENTS).delete()


def api(world: World) -> OpenAI:
    return OpenAI(base_url=world.v1, api_key=world.alice_key, max_retries=0, timeout=60)


@pytest.mark.parametrize("model", list(DEPLOYMENTS))
def test_sync_chat_equals_the_model_greedy_answer(world: World, triton_models: list[str], model: str) -> None:
    expected, new_tokens, prompt_tokens = reference_greedy(world.model_dir, RENDERED, 12)
    reply = api(world).chat.completions.create(model=model, messages=MESSAGES, max_tokens=12, temperature=0)
    assert reply.choices[0].message.content == expected
    assert reply.usage.prompt_tokens == prompt_tokens
    if "trtllm" not in model:  # TensorRT-LLM answers text: its counts are re-tokenised estimates
        assert reply.usage.completion_tokens == new_tokens


@pytest.mark.parametrize("model", ["tri-ft-stream", "tri-trtllm", "tri-ft-http"])
def test_streaming_through_triton(world: World, triton_models: list[str], model: str) -> None:
    expected, _, _ = reference_greedy(world.model_dir, RENDERED, 12)
    chunks = list(api(world).chat.completions.create(model=model, messages=MESSAGES, max_tokens=12, temperature=0,
                                                     stream=True, stream_options={"include_usage": True}))
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(content) == expected
    if model != "tri-ft-http":  # decoupled models stream token by token; HTTP answers at once
        assert len(content) > 3
    assert chunks[-1].usage.completion_tokens > 0


def test_async_concurrent_seeded_sampling(world: World, triton_models: list[str]) -> None:
    async def run() -> list[str]:
        client = AsyncOpenAI(base_url=world.v1, api_key=world.alice_key, max_retries=0, timeout=120)
        replies = await asyncio.gather(*(
            client.completions.create(model="tri-ft-grpc", prompt=f"品类结构:{i}", max_tokens=10, temperature=1.0, top_p=0.9, seed=i)
            for i in (1, 2, 1, 2)
        ))
        await client.close()
        return [r.choices[0].text for r in replies]

    texts = asyncio.run(run())
    assert texts[0] == texts[2] and texts[1] == texts[3]


def test_langchain_with_triton(world: World, triton_models: list[str]) -> None:
    llm = ChatOpenAI(base_url=world.v1, api_key=world.alice_key, model="tri-ft-stream", temperature=0, max_tokens=10, max_retries=0)
    expected = reference_greedy(world.model_dir, RENDERED, 10)[0]
    assert llm.invoke(PROMPT).content == expected
    assert "".join(chunk.content for chunk in llm.stream(PROMPT)) == expected


def test_contrastive_is_refused_before_calling_triton(world: World, triton_models: list[str]) -> None:
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        api(world).chat.completions.create(model="tri-ft-grpc", messages=MESSAGES, extra_body={"decoder": "contrastive"})
    assert caught.value.body["param"] == "decoder"
