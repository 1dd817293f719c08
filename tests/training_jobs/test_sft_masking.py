"""The exact label vectors of hand-written examples (loss on answers only)."""
from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer

from training_jobs.data import IGNORE_INDEX, encode_sft_row, fit_segments, plan_batches

M = IGNORE_INDEX


@pytest.fixture(scope="module")
def tok(tiny_bloom: Path):
    return AutoTokenizer.from_pretrained(tiny_bloom)


def ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def test_single_turn_labels_only_the_answer_and_eos(tok) -> None:
    example = encode_sft_row(
        [{"role": "user", "content": "冰箱多少钱?"}, {"role": "assistant", "content": "800元。"}],
        tok, "User: {prompt}\n\nBot: ", 64,
    )
    prompt = ids(tok, "User: 冰箱多少钱?\n\nBot: ")
    answer = ids(tok, "800元。") + [tok.eos_token_id]
    assert example.input_ids == prompt + answer
    assert example.labels == [M] * len(prompt) + answer


def test_multi_turn_learns_every_assistant_turn_and_not_system_or_user(tok) -> None:
    messages = [
        {"role": "system", "content": "你是客服。"},
        {"role": "user", "content": "能退货吗?"},
        {"role": "assistant", "content": "七天内可以。"},
        {"role": "user", "content": "运费呢?"},
        {"role": "assistant", "content": "我们承担。"},
    ]
    example = encode_sft_row(messages, tok, "User: {prompt}\n\nBot: ", 256)
    system = ids(tok, "你是客服。\n\n")
    user1 = ids(tok, "User: 能退货吗?\n\nBot: ")
    bot1 = ids(tok, "七天内可以。") + [tok.eos_token_id]
    user2 = ids(tok, "User: 运费呢?\n\nBot: ")
    bot2 = ids(tok, "我们承担。") + [tok.eos_token_id]
    assert example.input_ids == system + user1 + bot1 + user2 + bot2
    assert example.labels == [M] * len(system + user1) + bot1 + [M] * len(user2) + bot2


def test_truncation_drops_oldest_turns_then_oldest_context_and_keeps_the_answer() -> None:
    segments = [([1, 2, 3], False), ([4, 5], True), ([6, 7, 8, 9], False), ([10, 11], True)]
    assert fit_segments(segments, 100) == segments
    assert fit_segments(segments, 6) == [([6, 7, 8, 9], False), ([10, 11], True)]
    assert fit_segments(segments, 4) == [([8, 9], False), ([10, 11], True)]
    assert fit_segments(segments, 2) is None  # the answer leaves no room for context


def test_a_row_whose_answer_cannot_fit_is_dropped(tok) -> None:
    long_answer = "很长的回答。" * 50
    row = [{"role": "user", "content": "问"}, {"role": "assistant", "content": long_answer}]
    assert encode_sft_row(row, tok, "User: {prompt}\n\nBot: ", 32) is None


def test_length_grouped_batches_are_deterministic_and_cover_the_data() -> None:
    lengths = [((i * 37) % 50) + 1 for i in range(200)]
    first = plan_batches(lengths, 4, seed=1, epoch=0, group_by_length=True)
    assert first == plan_batches(lengths, 4, seed=1, epoch=0, group_by_length=True)
    assert first != plan_batches(lengths, 4, seed=1, epoch=1, group_by_length=True)
    assert sorted(i for b in first for i in b) == list(range(200))
    # Grouping keeps each micro-batch's lengths close: less padding.
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first)
    random_spread = sum(
        max(lengths[i] for i in b) - min(lengths[i] for i in b)
        for b in plan_batches(lengths, 4, seed=1, epoch=0, group_by_length=False)
    )
    assert spread < random_spread / 5


def test_chat_template_learns_what_each_assistant_turn_adds(tiny_bloom: Path) -> None:
    tok = AutoTokenizer.from_pretrained(tiny_bloom)
    tok.chat_template = (
        "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    messages = [
        {"role": "user", "content": "能退货吗?"},
        {"role": "assistant", "content": "可以。"},
        {"role": "user", "content": "运费呢?"},
        {"role": "assistant", "content": "包邮。"},
    ]
    example = encode_sft_row(messages, tok, "chat_template", 256)
    context1 = ids(tok, "<|user|>能退货吗?</s><|assistant|>")
    answer1 = ids(tok, "可以。</s>")
    context2 = ids(tok, "<|user|>运费呢?</s><|assistant|>")
    answer2 = ids(tok, "包邮。</s>")
    assert example.input_ids == context1 + answer1 + context2 + answer2
    assert example.labels == [M] * len(context1) + answer1 + [M] * len(context2) + answer2


def test_chat_template_without_one_is_a_config_error(tok) -> None:
    from training_jobs.config import ConfigError

    tok.chat_template = None
    with pytest.raises(ConfigError, match="prompt_template: 'chat_template' chosen but the tokenizer has no chat template"):
        encode_sft_row([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], tok, "chat_template", 64)
