"""The triton backend against a real Triton server (tests.triton_support)
serving the tiny BLOOM; expected answers come from the same model's
`generate` in this process."""
from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from inference.base import (
    BackendFailed,
    BackendUnavailable,
    Chunk,
    GenerationRequest,
    InvalidParameter,
    SamplingParams,
)
from inference.config import BackendConfig, create_backend
from inference.text import apply_stop_strings
from inference.triton import Input, TritonBackend, parse_target, resolve_inputs
from tests.triton_support import TritonServer
from webapp.lib.embedded_redis import free_port

PROMPT = "User: hello there\n\nBot: "
SAMPLED = SamplingParams(max_new_tokens=16, temperature=1.0, top_k=50, top_p=0.95, repetition_penalty=1.1, seed=1234)
GREEDY = SamplingParams(max_new_tokens=12, decoder="greedy")


@dataclass
class TinyLM:
    """The tiny model, here, for reference outputs."""

    tokenizer: Any
    model: Any

    def generate(self, prompt: str, params: SamplingParams, *, eos_token_id: int | None) -> list[int]:
        """The new tokens `model.generate` gives for the same settings."""
        import torch

        ids = torch.tensor([self.tokenizer.encode(prompt)])
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "repetition_penalty": params.repetition_penalty,
        }
        if params.greedy:
            kwargs["do_sample"] = False
        else:
            torch.manual_seed(params.seed)
            kwargs.update(do_sample=True, top_k=params.top_k, top_p=params.top_p, temperature=params.temperature)
        with torch.no_grad():
            out = self.model.generate(
                ids, attention_mask=torch.ones_like(ids), pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=eos_token_id, **kwargs,
            )
        return out[0, ids.shape[1] :].tolist()

    def answer(self, prompt: str, params: SamplingParams) -> tuple[str, int]:
        """Text and token count up to (without) the first EOS."""
        tokens = self.generate(prompt, params, eos_token_id=self.tokenizer.eos_token_id)
        if self.tokenizer.eos_token_id in tokens:
            tokens = tokens[: tokens.index(self.tokenizer.eos_token_id)]
        return self.tokenizer.decode(tokens, skip_special_tokens=True), len(tokens)


@pytest.fixture(scope="session")
def tiny_lm(tiny_bloom: Path) -> TinyLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return TinyLM(
        AutoTokenizer.from_pretrained(tiny_bloom, local_files_only=True),
        AutoModelForCausalLM.from_pretrained(tiny_bloom, local_files_only=True).eval(),
    )


def endpoint(server: TritonServer, transport: str) -> str:
    return server.http_url if transport == "http" else server.grpc_url


@asynccontextmanager
async def triton(
    endpoint: str,
    model: str,
    *,
    model_path: Path | None,
    protocol: str = "fastertransformer",
    stream: bool = False,
    timeout_s: float = 30,
) -> AsyncIterator[TritonBackend]:
    backend = create_backend(
        BackendConfig(
            kind="triton",
            model_path=str(model_path) if model_path else None,
            endpoint=endpoint,
            server_model=model,
            options={"protocol": protocol, "stream": stream},
            timeout_s=timeout_s,
        )
    )
    assert isinstance(backend, TritonBackend)
    try:
        yield backend
    finally:
        await backend.close()


async def collect(chunks: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in chunks]


def request(params: SamplingParams, prompt: str = PROMPT) -> GenerationRequest:
    return GenerationRequest(params, prompt=prompt)


# -- FasterTransformer ------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
async def test_ft_generate_equals_model_generate(triton_server, tiny_bloom, tiny_lm, transport, params):
    text, tokens = tiny_lm.answer(PROMPT, params)
    async with triton(endpoint(triton_server, transport), "tiny_ft", model_path=tiny_bloom) as backend:
        completion = await backend.generate(request(params))
    assert completion.text == text
    assert completion.completion_tokens == tokens == params.max_new_tokens
    assert completion.prompt_tokens == len(tiny_lm.tokenizer.encode(PROMPT))
    assert completion.finish_reason == "length"


@pytest.mark.asyncio
async def test_ft_chat_messages_use_the_prompt_template(triton_server, tiny_bloom, tiny_lm):
    chat = GenerationRequest(GREEDY, messages=({"role": "user", "content": "hello there"},))
    async with triton(triton_server.grpc_url, "tiny_ft", model_path=tiny_bloom) as backend:
        completion = await backend.generate(chat)
    assert completion.text == tiny_lm.answer(PROMPT, GREEDY)[0]  # PROMPT is the seed template around it


@pytest.mark.asyncio
async def test_ft_not_decoupled_streams_one_chunk_then_finish(triton_server, tiny_bloom, tiny_lm):
    async with triton(triton_server.http_url, "tiny_ft", model_path=tiny_bloom) as backend:
        chunks = await collect(backend.stream(request(SAMPLED)))
    assert [c.finish_reason for c in chunks] == [None, "length"]
    assert chunks[0].text == tiny_lm.answer(PROMPT, SAMPLED)[0]
    assert chunks[0].tokens == SAMPLED.max_new_tokens


@pytest.mark.asyncio
async def test_ft_decoupled_stream_over_grpc(triton_server, tiny_bloom, tiny_lm):
    text, tokens = tiny_lm.answer(PROMPT, SAMPLED)
    async with triton(triton_server.grpc_url, "tiny_ft_stream", model_path=tiny_bloom, stream=True) as backend:
        chunks = await collect(backend.stream(request(SAMPLED)))
        completion = await backend.generate(request(SAMPLED))
    assert "".join(c.text for c in chunks) == text == completion.text
    assert len([c for c in chunks if c.tokens]) == tokens  # one response per token
    assert sum(c.tokens for c in chunks) == completion.completion_tokens == SAMPLED.max_new_tokens
    assert chunks[-1].finish_reason == "length" and all(c.finish_reason is None for c in chunks[:-1])
    assert all(c.prompt_tokens == len(tiny_lm.tokenizer.encode(PROMPT)) for c in chunks)


@pytest.fixture(scope="module")
def eos_case(tiny_bloom: Path, tiny_lm: TinyLM, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, int]:
    """A tokenizer folder whose EOS is a token the sampled answer contains,
    so the model really emits "EOS" mid-answer: (folder, text before it,
    its position)."""
    tokens = tiny_lm.generate(PROMPT, SAMPLED, eos_token_id=None)
    tokenizer = tiny_lm.tokenizer
    position = next(
        i
        for i, token in enumerate(tokens)
        if i >= 3
        and token not in tokens[:i]
        and (name := tokenizer.convert_ids_to_tokens(token)) is not None  # ids past the tokenizer's vocabulary
        and token not in tokenizer.all_special_ids
        and name not in PROMPT  # as a special token it must not split the prompt differently
    )
    folder = tmp_path_factory.mktemp("eos-tokenizer")
    shutil.copy(tiny_bloom / "tokenizer.json", folder / "tokenizer.json")
    config = json.loads((tiny_bloom / "tokenizer_config.json").read_text())
    config["eos_token"] = tokenizer.convert_ids_to_tokens(tokens[position])
    (folder / "tokenizer_config.json").write_text(json.dumps(config))

    from transformers import AutoTokenizer

    copy = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert copy.eos_token_id == tokens[position]
    assert copy.encode(PROMPT) == tokenizer.encode(PROMPT)
    return folder, copy.decode(tokens[:position], skip_special_tokens=True), position


@pytest.mark.asyncio
@pytest.mark.parametrize("model", ["tiny_ft_noeos", "tiny_ft", "tiny_ft_stream"])
async def test_ft_answer_ends_at_the_first_eos(triton_server, eos_case, model):
    """tiny_ft_noeos generates past the end id: the client must cut; the
    others stop there themselves."""
    folder, text, position = eos_case
    async with triton(triton_server.grpc_url, model, model_path=folder, stream=model.endswith("_stream")) as backend:
        completion = await backend.generate(request(SAMPLED))
    assert position < SAMPLED.max_new_tokens
    assert (completion.text, completion.completion_tokens, completion.finish_reason) == (text, position, "stop")


@pytest.mark.asyncio
async def test_ft_max_length_is_a_budget_for_prompt_and_answer(triton_server, tiny_bloom, tiny_lm):
    prompt_tokens = len(tiny_lm.tokenizer.encode(PROMPT))
    async with triton(triton_server.grpc_url, "tiny_ft", model_path=tiny_bloom) as backend:
        completion = await backend.generate(request(SamplingParams(max_length=prompt_tokens + 5, decoder="greedy")))
        assert completion.completion_tokens == 5
        with pytest.raises(InvalidParameter) as error:
            await backend.generate(request(SamplingParams(max_length=prompt_tokens, decoder="greedy")))
    assert error.value.param == "max_length"


# -- TensorRT-LLM ensemble --------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["http", "grpc"])
@pytest.mark.parametrize("params", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
async def test_trtllm_generate(triton_server, tiny_bloom, tiny_lm, transport, params):
    text, _ = tiny_lm.answer(PROMPT, params)
    url = endpoint(triton_server, transport)
    async with triton(url, "tiny_trtllm", model_path=tiny_bloom, protocol="tensorrtllm") as backend:
        completion = await backend.generate(request(params))
    assert completion.text == text
    # Usage is counted with the tokenizer: the answer's tokens, the prompt's.
    assert completion.completion_tokens == len(tiny_lm.tokenizer.encode(text, add_special_tokens=False))
    assert completion.prompt_tokens == len(tiny_lm.tokenizer.encode(PROMPT))


@pytest.mark.asyncio
async def test_trtllm_stream(triton_server, tiny_bloom, tiny_lm):
    text, _ = tiny_lm.answer(PROMPT, SAMPLED)
    async with triton(
        triton_server.grpc_url, "tiny_trtllm_stream", model_path=tiny_bloom, protocol="tensorrtllm", stream=True
    ) as backend:
        chunks = await collect(backend.stream(request(SAMPLED)))
    assert "".join(c.text for c in chunks) == text
    assert len([c for c in chunks if c.text]) > 3
    assert sum(c.tokens for c in chunks) == len(tiny_lm.tokenizer.encode(text, add_special_tokens=False))
    assert chunks[-1].finish_reason == "length"


@pytest.mark.asyncio
async def test_trtllm_without_tokenizer_counts_responses(triton_server, tiny_lm):
    async with triton(
        triton_server.grpc_url, "tiny_trtllm_stream", model_path=None, protocol="tensorrtllm", stream=True
    ) as backend:
        completion = await backend.generate(request(SAMPLED))
        with pytest.raises(InvalidParameter) as error:
            await backend.generate(request(SamplingParams(max_length=64)))
    assert completion.text == tiny_lm.answer(PROMPT, SAMPLED)[0]
    assert completion.completion_tokens == SAMPLED.max_new_tokens  # one streamed response per token
    assert completion.finish_reason == "length"
    assert error.value.param == "max_length"


# -- stopping early -----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "model,protocol", [("tiny_ft_stream", "fastertransformer"), ("tiny_trtllm_stream", "tensorrtllm")]
)
async def test_aclose_mid_stream_cancels_and_the_backend_goes_on(triton_server, tiny_bloom, model, protocol):
    long = SamplingParams(max_new_tokens=400, temperature=1.0, seed=7)
    async with triton(triton_server.grpc_url, model, model_path=tiny_bloom, protocol=protocol, stream=True) as backend:
        stream = backend.stream(request(long))
        seen = [await anext(stream) for _ in range(2)]
        await stream.aclose()
        assert all(c.finish_reason is None for c in seen)
        completion = await backend.generate(request(GREEDY))
    assert completion.completion_tokens > 0


@pytest.mark.asyncio
async def test_gateway_stop_strings_end_the_stream(triton_server, tiny_bloom, tiny_lm):
    text, _ = tiny_lm.answer(PROMPT, SAMPLED)
    stop = text[len(text) // 2 :][:2]
    async with triton(triton_server.grpc_url, "tiny_ft_stream", model_path=tiny_bloom, stream=True) as backend:
        chunks = await collect(apply_stop_strings(backend.stream(request(SAMPLED)), [stop]))
    assert "".join(c.text for c in chunks) == text[: text.index(stop)]
    assert chunks[-1].finish_reason == "stop"


# -- refusals and failures ---------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params,param",
    [
        (SamplingParams(decoder="contrastive"), "decoder"),
        (SamplingParams(presence_penalty=0.5), "presence_penalty"),
        (SamplingParams(frequency_penalty=0.5), "frequency_penalty"),
    ],
)
async def test_unsupported_parameters(triton_server, tiny_bloom, params, param):
    async with triton(triton_server.grpc_url, "tiny_ft", model_path=tiny_bloom) as backend:
        with pytest.raises(InvalidParameter) as error:
            await backend.generate(request(params))
    assert error.value.param == param


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_nothing_listening_is_unavailable(tiny_bloom, transport):
    port = free_port()  # free: nobody listens there, as when Triton is down
    url = f"http://127.0.0.1:{port}" if transport == "http" else f"grpc://127.0.0.1:{port}"
    async with triton(url, "tiny_ft", model_path=tiny_bloom) as backend:
        with pytest.raises(BackendUnavailable) as error:
            await backend.generate(request(GREEDY))
        health = await backend.health()
    assert f"Triton at 127.0.0.1:{port} is unreachable" in error.value.message
    assert error.value.status == 503
    assert not health.ok and "unreachable" in health.detail


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_a_server_that_never_answers_is_unavailable(tiny_bloom, transport):
    with socket.socket() as listener:  # the kernel accepts connections; nobody ever answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        url = f"http://127.0.0.1:{port}" if transport == "http" else f"grpc://127.0.0.1:{port}"
        async with triton(url, "tiny_ft", model_path=tiny_bloom, timeout_s=0.5) as backend:
            started = time.monotonic()
            with pytest.raises(BackendUnavailable) as error:
                await backend.generate(request(GREEDY))
            health = await backend.health()
    assert time.monotonic() - started < 5
    assert "is unreachable" in error.value.message
    assert not health.ok


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_unknown_model_fails_and_is_unhealthy(triton_server, tiny_bloom, transport):
    async with triton(endpoint(triton_server, transport), "no_such_model", model_path=tiny_bloom) as backend:
        with pytest.raises(BackendFailed) as error:
            await backend.generate(request(GREEDY))
        health = await backend.health()
    assert "unknown model" in error.value.message and error.value.status == 502
    assert not health.ok and "no_such_model" in health.detail


@pytest.mark.asyncio
@pytest.mark.parametrize("transport", ["http", "grpc"])
async def test_health_ok(triton_server, tiny_bloom, transport):
    async with triton(endpoint(triton_server, transport), "tiny_ft", model_path=tiny_bloom) as backend:
        health = await backend.health()
    assert health.ok, health.detail


@pytest.mark.asyncio
async def test_wrong_protocol_for_the_model_fails(triton_server, tiny_bloom):
    async with triton(triton_server.grpc_url, "tiny_trtllm", model_path=tiny_bloom) as backend:
        with pytest.raises(BackendFailed) as error:
            await backend.generate(request(GREEDY))
    assert "no input_ids input" in error.value.message and "(fastertransformer)" in error.value.message


# -- settings (no server) -----------------------------------------------------


@pytest.mark.parametrize(
    "endpoint,transport,expected",
    [
        ("http://triton:8000", None, ("http", "triton:8000", False)),
        ("https://triton:8000/", None, ("http", "triton:8000", True)),
        ("grpc://triton:8001", None, ("grpc", "triton:8001", False)),
        ("triton:8001", None, ("grpc", "triton:8001", False)),
        ("triton:8000", "http", ("http", "triton:8000", False)),
        ("grpc://triton:8001", "grpc", ("grpc", "triton:8001", False)),
    ],
)
def test_endpoint_and_transport(endpoint, transport, expected):
    target = parse_target(endpoint, transport)
    assert (target.transport, target.address, target.ssl) == expected


@pytest.mark.parametrize(
    "options,endpoint,model_path,param",
    [
        ({"transport": "grpc"}, "http://triton:8000", "tok", "transport"),
        ({"transport": "websocket"}, "triton:8001", "tok", "transport"),
        ({"stream": True}, "http://triton:8000", "tok", "stream"),
        ({"protocol": "vllm"}, "triton:8001", "tok", "protocol"),
        ({}, "triton:8001", None, "model_path"),
        ({}, "ftp://triton:8001", "tok", "endpoint"),
    ],
)
def test_bad_settings_are_refused(tiny_bloom, options, endpoint, model_path, param):
    config = BackendConfig(
        kind="triton", endpoint=endpoint, server_model="m", options=options,
        model_path=str(tiny_bloom) if model_path else None,
    )
    with pytest.raises(InvalidParameter) as error:
        TritonBackend(config)
    assert error.value.param == param


def test_inputs_follow_the_declared_types_and_refuse_what_the_model_lacks():
    seed = Input(("random_seed", "seed"), [[5]], "UINT64", "seed")
    end_id = Input(("end_id",), [[2]], "UINT32")
    top_k = Input(("top_k",), [[1]], "INT32", "decoder")
    resolved = resolve_inputs([seed, end_id, top_k], {"seed": "UINT64", "top_k": "UINT32"}, "m", "tensorrtllm")
    assert [(name, array.dtype.name, datatype) for name, array, datatype in resolved] == [
        ("seed", "uint64", "UINT64"),
        ("top_k", "uint32", "UINT32"),  # end_id is plumbing: dropped when the model lacks it
    ]
    with pytest.raises(InvalidParameter) as error:
        resolve_inputs([seed], {"top_k": "INT32"}, "m", "tensorrtllm")
    assert error.value.param == "seed"
