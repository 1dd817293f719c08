"""The local backend against the tiny BLOOM (ALiBi) and LLaMA (rotary) models:
exactness against `model.generate`, batching independence, seeds, budgets,
EOS, cancellation, contrastive search, streaming text and engine failures."""
from __future__ import annotations

import asyncio
import contextvars
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from inference.base import (
    BackendFailed,
    Chunk,
    Completion,
    GenerationRequest,
    InvalidParameter,
    SamplingParams,
)
from inference.config import BackendConfig, create_backend
from inference.local import Engine, Job, LocalBackend
from inference.text import REPLACEMENT, apply_stop_strings

PROMPTS = [
    "User: 这款手机的电池续航怎么样？\n\nBot: ",
    "hello",
    "The quick brown fox jumps over the lazy dog and then",
    "价格",
    "Please describe the return policy for electronics bought online during the holiday sale. " * 2,
    "a",
    "退货需要几天？",
    "User: What is the warranty?\n\nBot: ",
]
GREEDY = SamplingParams(max_new_tokens=24, decoder="greedy")
# The tiny BLOOM's greedy answer is one token repeated; a repetition penalty
# makes its answers varied enough for batching comparisons to mean something.
VARIED = SamplingParams(max_new_tokens=24, decoder="greedy", repetition_penalty=1.3)

_capture: contextvars.ContextVar[list[Job] | None] = contextvars.ContextVar("capture", default=None)


@pytest.fixture(autouse=True)
def _record_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets a test see the token ids of its own request (asyncio tasks copy
    the context, so concurrent requests each see only theirs)."""
    submit = Engine.submit

    def recording(self: Engine, job: Job) -> None:
        captured = _capture.get()
        if captured is not None:
            captured.append(job)
        submit(self, job)

    monkeypatch.setattr(Engine, "submit", recording)


def _backend(path: Path, **options: Any) -> LocalBackend:
    backend = create_backend(BackendConfig(kind="local", model_path=str(path), options=options))
    assert isinstance(backend, LocalBackend)
    return backend


@pytest.fixture(scope="module")
def backends(tiny_bloom: Path, tiny_llama: Path) -> Iterator[dict[str, LocalBackend]]:
    made = {"bloom": _backend(tiny_bloom), "llama": _backend(tiny_llama)}
    yield made
    for backend in made.values():
        asyncio.run(backend.close())


@pytest.fixture(scope="module")
def references(tiny_bloom: Path, tiny_llama: Path) -> dict[str, tuple[Any, Any]]:
    loaded = {}
    for arch, path in (("bloom", tiny_bloom), ("llama", tiny_llama)):
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()
        loaded[arch] = (tokenizer, model)
    return loaded


async def run(backend: LocalBackend, request: GenerationRequest) -> tuple[Completion, list[int]]:
    """The completion and the token ids the engine generated for it."""
    jobs: list[Job] = []
    token = _capture.set(jobs)
    try:
        completion = await backend.generate(request)
    finally:
        _capture.reset(token)
    return completion, jobs[0].row.generated


async def chunks_of(backend: LocalBackend, request: GenerationRequest) -> tuple[list[Chunk], list[int]]:
    jobs: list[Job] = []
    token = _capture.set(jobs)
    try:
        chunks = [chunk async for chunk in backend.stream(request)]
    finally:
        _capture.reset(token)
    return chunks, jobs[0].row.generated


def reference_ids(references: dict, arch: str, prompt: str, **generate: Any) -> list[int]:
    tokenizer, model = references[arch]
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, **generate)
    return out[0, ids.shape[1] :].tolist()


async def wait_idle(backend: LocalBackend, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while backend.engine is not None and (backend.engine.active_rows or backend.engine.pending):
        assert time.monotonic() < deadline, "the engine still counts active rows"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------
# Exactness


@pytest.mark.asyncio
@pytest.mark.parametrize("arch", ["bloom", "llama"])
async def test_greedy_matches_model_generate(backends, references, arch: str) -> None:
    backend = backends[arch]
    for prompt in PROMPTS[:5]:
        completion, ids = await run(backend, GenerationRequest(GREEDY, prompt=prompt))
        assert ids == reference_ids(references, arch, prompt, max_new_tokens=24)
        assert completion.completion_tokens == len(ids) == 24
        assert completion.finish_reason == "length"
        tokenizer = references[arch][0]
        assert completion.text == tokenizer.decode(ids, skip_special_tokens=True)
        assert completion.prompt_tokens == len(tokenizer(prompt)["input_ids"])
    # The multiplicative repetition penalty means what it means in transformers.
    completion, ids = await run(backend, GenerationRequest(VARIED, prompt=PROMPTS[0]))
    assert ids == reference_ids(references, arch, PROMPTS[0], max_new_tokens=24, repetition_penalty=1.3)


@pytest.mark.asyncio
@pytest.mark.parametrize("arch", ["bloom", "llama"])
async def test_greedy_batched_equals_alone(backends, arch: str) -> None:
    backend = backends[arch]
    alone = [(await run(backend, GenerationRequest(VARIED, prompt=p)))[1] for p in PROMPTS]
    assert len({tuple(ids) for ids in alone}) > 4  # the comparison is not between identical answers

    together = await asyncio.gather(*(run(backend, GenerationRequest(VARIED, prompt=p)) for p in PROMPTS))
    assert [ids for _, ids in together] == alone

    async def late(prompt: str, delay: float) -> list[int]:
        await asyncio.sleep(delay)  # joins a batch that is already decoding
        return (await run(backend, GenerationRequest(VARIED, prompt=prompt)))[1]

    staggered = await asyncio.gather(*(late(p, 0.004 * i) for i, p in enumerate(PROMPTS)))
    assert staggered == alone

    # Mixed budgets: rows leave the batch at different steps and the left
    # padding is trimmed under the rows that stay.
    budgets = [3, 24, 7, 24, 1, 12, 24, 5]
    mixed = await asyncio.gather(
        *(
            run(backend, GenerationRequest(SamplingParams(max_new_tokens=n, decoder="greedy", repetition_penalty=1.3), prompt=p))
            for p, n in zip(PROMPTS, budgets)
        )
    )
    assert [ids for _, ids in mixed] == [ids[:n] for ids, n in zip(alone, budgets)]
    await wait_idle(backend)


# --------------------------------------------------------------------------
# Sampling


@pytest.mark.asyncio
async def test_seeded_sampling_is_repeatable_alone_or_batched(backends) -> None:
    backend = backends["llama"]
    params = SamplingParams(max_new_tokens=20, temperature=0.9, top_p=0.95, top_k=50, seed=1234)
    request = GenerationRequest(params, prompt=PROMPTS[0])
    first = (await backend.generate(request)).text
    assert (await backend.generate(request)).text == first
    other_seed = GenerationRequest(SamplingParams(max_new_tokens=20, temperature=0.9, top_p=0.95, top_k=50, seed=99), prompt=PROMPTS[0])
    assert (await backend.generate(other_seed)).text != first

    # Among 8 concurrent requests with assorted settings (plain sampling,
    # penalties, greedy, unseeded) the seeded one gives the same text.
    neighbours = [
        SamplingParams(max_new_tokens=25, seed=i, presence_penalty=0.5 * (i % 3), frequency_penalty=0.3)
        for i in range(3)
    ] + [
        SamplingParams(max_new_tokens=9, decoder="greedy"),
        SamplingParams(max_new_tokens=30),
        SamplingParams(max_new_tokens=15, temperature=1.5, top_k=5, seed=5),
        SamplingParams(max_new_tokens=20, repetition_penalty=1.2, seed=6),
    ]
    results = await asyncio.gather(
        *(backend.generate(GenerationRequest(p, prompt=PROMPTS[i + 1])) for i, p in enumerate(neighbours)),
        backend.generate(request),
    )
    assert results[-1].text == first


@pytest.mark.asyncio
async def test_top_k_one_is_greedy_and_presence_penalty_avoids_repeats(backends) -> None:
    backend = backends["bloom"]
    _, greedy = await run(backend, GenerationRequest(GREEDY, prompt=PROMPTS[2]))
    _, top1 = await run(backend, GenerationRequest(SamplingParams(max_new_tokens=24, top_k=1, seed=3), prompt=PROMPTS[2]))
    assert top1 == greedy
    assert len(set(greedy)) == 1  # the tiny BLOOM repeats one token...
    params = SamplingParams(max_new_tokens=24, decoder="greedy", presence_penalty=2.0)
    _, penalised = await run(backend, GenerationRequest(params, prompt=PROMPTS[2]))
    assert len(set(penalised)) == len(penalised)  # ...and never repeats with a presence penalty of 2


# --------------------------------------------------------------------------
# Budgets, EOS, validation


@pytest.mark.asyncio
async def test_token_budgets(backends, references) -> None:
    backend = backends["llama"]
    tokenizer = references["llama"][0]
    prompt_len = len(tokenizer(PROMPTS[2])["input_ids"])

    chunks, ids = await chunks_of(backend, GenerationRequest(SamplingParams(max_new_tokens=5, seed=1), prompt=PROMPTS[2]))
    assert sum(c.tokens for c in chunks) == len(ids) == 5
    assert chunks[-1].finish_reason == "length"
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert all(c.prompt_tokens == prompt_len for c in chunks)

    completion = await backend.generate(GenerationRequest(SamplingParams(max_length=prompt_len + 3, decoder="greedy"), prompt=PROMPTS[2]))
    assert (completion.completion_tokens, completion.finish_reason) == (3, "length")

    # The default budget (the tiny BLOOM's greedy answer never reaches EOS).
    completion = await backends["bloom"].generate(GenerationRequest(SamplingParams(decoder="greedy"), prompt=PROMPTS[2]))
    assert (completion.completion_tokens, completion.finish_reason) == (256, "length")

    # The context (2048 positions) caps any budget.
    repeats = 700
    while len(tokenizer("hello " * repeats)["input_ids"]) >= 2048:
        repeats -= 1
    long_prompt = "hello " * repeats
    long_len = len(tokenizer(long_prompt)["input_ids"])
    assert 2000 < long_len < 2048
    completion = await backend.generate(GenerationRequest(SamplingParams(max_new_tokens=500, decoder="greedy"), prompt=long_prompt))
    assert completion.completion_tokens == 2048 - long_len


@pytest.mark.asyncio
async def test_invalid_parameters(backends) -> None:
    backend = backends["llama"]

    async def error(request: GenerationRequest) -> InvalidParameter:
        with pytest.raises(InvalidParameter) as caught:
            await backend.generate(request)
        return caught.value

    assert (await error(GenerationRequest(SamplingParams(max_length=3), prompt=PROMPTS[2]))).param == "max_length"
    assert (await error(GenerationRequest(SamplingParams(max_new_tokens=0), prompt="hi"))).param == "max_tokens"
    too_long = "hello " * 1000  # 3 tokens a repeat: over 2048
    assert (await error(GenerationRequest(SamplingParams(max_new_tokens=5), prompt=too_long))).param == "prompt"
    messages = ({"role": "user", "content": too_long},)
    assert (await error(GenerationRequest(SamplingParams(max_new_tokens=5), messages=messages))).param == "messages"
    assert (await error(GenerationRequest(SamplingParams(max_new_tokens=5)))).param == "prompt"
    # Nothing was queued by the refused requests.
    await wait_idle(backend)


@pytest.mark.asyncio
async def test_eos_finishes_with_stop(tiny_llama: Path, tmp_path: Path, references) -> None:
    """Makes a token the greedy path produces the model's EOS (in
    generation_config.json), so the same prompt now ends on it."""
    prompt = PROMPTS[2]
    greedy = reference_ids(references, "llama", prompt, max_new_tokens=24)
    position = next(i for i in range(3, len(greedy)) if greedy[i] not in greedy[:i])
    folder = tmp_path / "llama-eos"
    shutil.copytree(tiny_llama, folder)
    config_file = folder / "generation_config.json"
    generation = json.loads(config_file.read_text())
    generation["eos_token_id"] = greedy[position]
    config_file.write_text(json.dumps(generation))

    backend = _backend(folder)
    try:
        chunks, ids = await chunks_of(backend, GenerationRequest(GREEDY, prompt=prompt))
        assert ids == greedy[: position + 1]
        assert chunks[-1].finish_reason == "stop"
        assert sum(c.tokens for c in chunks) == position + 1  # the EOS counts, it has no text
        tokenizer = references["llama"][0]
        assert "".join(c.text for c in chunks) == tokenizer.decode(greedy[:position], skip_special_tokens=True)
        model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).eval()
        ids_in = tokenizer(prompt, return_tensors="pt").input_ids
        out = model.generate(ids_in, attention_mask=torch.ones_like(ids_in), do_sample=False, max_new_tokens=24)
        assert out[0, ids_in.shape[1] :].tolist() == ids  # transformers stops on the same token
    finally:
        await backend.close()


@pytest.mark.asyncio
async def test_messages_use_the_seed_template(backends) -> None:
    backend = backends["bloom"]
    messages = ({"role": "user", "content": "这款手机支持快充吗？"},)
    chat = await backend.generate(GenerationRequest(VARIED, messages=messages))
    raw = await backend.generate(GenerationRequest(VARIED, prompt="User: 这款手机支持快充吗？\n\nBot: "))
    assert chat == raw


# --------------------------------------------------------------------------
# Cancellation


@pytest.mark.asyncio
async def test_aclose_frees_the_slot(backends) -> None:
    backend = backends["bloom"]  # its greedy answer never reaches EOS
    jobs: list[Job] = []
    token = _capture.set(jobs)
    stream = backend.stream(GenerationRequest(SamplingParams(max_new_tokens=2000, decoder="greedy"), prompt=PROMPTS[1]))
    received = [await stream.__anext__(), await stream.__anext__()]
    _capture.reset(token)
    assert all(c.finish_reason is None for c in received)
    await stream.aclose()
    await wait_idle(backend)
    assert len(jobs[0].row.generated) < 2000
    assert jobs[0].cancelled
    completion = await backend.generate(GenerationRequest(SamplingParams(max_new_tokens=4, seed=2), prompt="next"))
    assert completion.completion_tokens == 4


@pytest.mark.asyncio
async def test_stop_string_and_task_cancellation_stop_the_engine(backends) -> None:
    backend = backends["bloom"]
    # The tiny BLOOM's greedy answer to "hi" is "hihihi…": the gateway's stop
    # string wrapper ends it at once and closes our stream.
    request = GenerationRequest(SamplingParams(max_new_tokens=2000, decoder="greedy"), prompt="hi")
    chunks = [chunk async for chunk in apply_stop_strings(backend.stream(request), ["hihi"])]
    assert chunks[-1].finish_reason == "stop"
    assert sum(c.tokens for c in chunks) < 10
    await wait_idle(backend)

    async def consume() -> None:
        async for _ in backend.stream(request):
            pass

    task = asyncio.create_task(consume())
    deadline = time.monotonic() + 5
    while backend.engine.active_rows != 1:
        assert time.monotonic() < deadline, "the request never started"
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle(backend)


# --------------------------------------------------------------------------
# Contrastive search


@pytest.mark.asyncio
@pytest.mark.parametrize("arch", ["bloom", "llama"])
async def test_contrastive_search(backends, arch: str) -> None:
    backend = backends[arch]
    differs = False
    for prompt in PROMPTS[:4]:
        _, greedy = await run(backend, GenerationRequest(GREEDY, prompt=prompt))
        plain = SamplingParams(max_new_tokens=24, decoder="contrastive", penalty_alpha=0.0)
        _, zero = await run(backend, GenerationRequest(plain, prompt=prompt))
        assert zero == greedy  # alpha 0: the most likely candidate, always

        search = SamplingParams(max_new_tokens=24, decoder="contrastive", penalty_alpha=0.6, contrastive_top_k=4)
        _, first = await run(backend, GenerationRequest(search, prompt=prompt))
        _, again = await run(backend, GenerationRequest(search, prompt=prompt))
        assert first == again and len(first) == 24
        differs |= first != greedy
    assert differs

    # Contrastive rows batch among themselves, with different k, without
    # changing each other's answers.
    requests = [
        GenerationRequest(SamplingParams(max_new_tokens=12, decoder="contrastive", contrastive_top_k=k), prompt=p)
        for k, p in zip((4, 2, 6, 4), PROMPTS)
    ]
    alone = [(await run(backend, r))[1] for r in requests]
    together = await asyncio.gather(*(run(backend, r) for r in requests), run(backend, GenerationRequest(GREEDY, prompt="x")))
    assert [ids for _, ids in together[:-1]] == alone
    await wait_idle(backend)


# --------------------------------------------------------------------------
# Streaming text


def _byte_tokens(tokenizer: Any, text: str) -> list[int]:
    """One token per UTF-8 byte (the byte-level alphabet is in the vocabulary)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    ids = [tokenizer.convert_tokens_to_ids(table[b]) for b in text.encode("utf-8")]
    assert tokenizer.unk_token_id not in ids
    return ids


@pytest.mark.asyncio
async def test_chinese_streams_whole_characters(backends, references, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model is scripted to spell its answer one UTF-8 byte per token, so
    every character is split over three tokens; no chunk may carry U+FFFD."""
    backend = backends["llama"]
    tokenizer = references["llama"][0]
    answer = "你好，手机续航很好"
    script = _byte_tokens(tokenizer, answer) + [tokenizer.eos_token_id]
    assert REPLACEMENT in tokenizer.decode(script[:1])
    await backend.generate(GenerationRequest(SamplingParams(max_new_tokens=1), prompt="warm up"))
    model = backend.engine.model
    forward = model.forward
    calls = {"n": 0}

    def scripted(*args: Any, **kwargs: Any) -> Any:
        out = forward(*args, **kwargs)
        out.logits[:, -1, :] = -1e4
        out.logits[:, -1, script[min(calls["n"], len(script) - 1)]] = 0.0
        calls["n"] += 1
        return out

    monkeypatch.setattr(model, "forward", scripted)
    chunks, ids = await chunks_of(backend, GenerationRequest(SamplingParams(max_new_tokens=64, seed=0), prompt="这款手机的电池续航怎么样？"))
    monkeypatch.undo()
    assert ids == script
    assert "".join(c.text for c in chunks) == answer
    assert not any(REPLACEMENT in c.text for c in chunks)
    assert any(c.tokens and not c.text for c in chunks)  # partial characters were held back
    assert chunks[-1].finish_reason == "stop"


@pytest.mark.asyncio
async def test_streamed_text_is_the_decoded_answer(backends, references) -> None:
    backend = backends["llama"]
    tokenizer = references["llama"][0]
    requests = [GenerationRequest(SamplingParams(max_new_tokens=20, seed=s, top_k=40), prompt=PROMPTS[0]) for s in range(6)]
    for chunks, ids in await asyncio.gather(*(chunks_of(backend, r) for r in requests)):
        assert "".join(c.text for c in chunks) == tokenizer.decode(ids, skip_special_tokens=True)
        assert sum(c.tokens for c in chunks) == len(ids)


# --------------------------------------------------------------------------
# Failures and lifecycle


@pytest.mark.asyncio
async def test_engine_errors_reach_the_stream_and_the_engine_survives(backends, monkeypatch: pytest.MonkeyPatch) -> None:
    backend = backends["bloom"]
    await backend.generate(GenerationRequest(SamplingParams(max_new_tokens=1), prompt="warm up"))
    model = backend.engine.model
    forward = model.forward
    calls = {"n": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:  # a decode step, after the prefill
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return forward(*args, **kwargs)

    monkeypatch.setattr(model, "forward", failing)
    received: list[Chunk] = []
    with pytest.raises(BackendFailed) as caught:
        async for chunk in backend.stream(GenerationRequest(GREEDY, prompt="hello")):
            received.append(chunk)
    assert "illegal memory access" in caught.value.message
    assert sum(c.tokens for c in received) == 2  # the tokens before the failing step
    monkeypatch.undo()
    assert backend.engine.alive
    await wait_idle(backend)
    completion = await backend.generate(GenerationRequest(GREEDY, prompt="hello"))
    assert completion.completion_tokens == 24


@pytest.mark.asyncio
async def test_health_and_close(tiny_bloom: Path, tmp_path: Path) -> None:
    backend = _backend(tiny_bloom, max_batch_size=4, batch_wait_ms=1)
    health = await backend.health()
    assert health.ok and backend.engine is None  # checked without loading the model
    await backend.generate(GenerationRequest(SamplingParams(max_new_tokens=2), prompt="hi"))
    assert (await backend.health()).ok
    engine = backend.engine
    await backend.close()
    assert not engine.alive and engine.model is None
    # A closed backend loads again on the next request.
    assert (await backend.generate(GenerationRequest(SamplingParams(max_new_tokens=2), prompt="hi"))).completion_tokens == 2
    await backend.close()

    assert not (await _backend(tmp_path / "missing").health()).ok
    (tmp_path / "empty").mkdir()
    assert not (await _backend(tmp_path / "empty").health()).ok
    broken = tmp_path / "broken"
    shutil.copytree(tiny_bloom, broken)
    (broken / "config.json").write_text("{not json")
    health = await _backend(broken).health()
    assert not health.ok and "config" in health.detail


@pytest.mark.asyncio
async def test_two_backends_loading_at_once_both_get_the_whole_model(tiny_bloom: Path, references) -> None:
    """Two local deployments of one model answering an arena battle load
    concurrently; transformers' loading is not thread-safe (a tied lm_head
    could stay on the meta device), so loads are serialised."""
    first, second = _backend(tiny_bloom), _backend(tiny_bloom)
    try:
        request = GenerationRequest(VARIED, prompt=PROMPTS[0])
        answers = await asyncio.gather(run(first, request), run(second, request))
        expected = reference_ids(references, "bloom", PROMPTS[0], max_new_tokens=24, repetition_penalty=1.3)
        assert [ids for _, ids in answers] == [expected, expected]
        for backend in (first, second):
            assert backend.engine.model.lm_head.weight.device.type == "cpu"
    finally:
        await first.close()
        await second.close()


@pytest.mark.asyncio
async def test_batch_size_limit_queues_the_rest(tiny_llama: Path) -> None:
    backend = _backend(tiny_llama, max_batch_size=2)
    try:
        requests = [GenerationRequest(SamplingParams(max_new_tokens=6, decoder="greedy"), prompt=p) for p in PROMPTS[:5]]
        alone = [(await backend.generate(r)).text for r in requests]
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, backend.engine.active_rows)
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        together = await asyncio.gather(*(backend.generate(r) for r in requests))
        watcher.cancel()
        assert [c.text for c in together] == alone
        assert peak <= 2
    finally:
        await backend.close()
