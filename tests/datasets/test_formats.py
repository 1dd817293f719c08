"""Each accepted format → its canonical rows (hand-written fixtures)."""
from __future__ import annotations

import pytest

from webapp.datasets.formats import RowError, convert_row, detect

U = lambda text: {"role": "user", "content": text}  # noqa: E731
A = lambda text: {"role": "assistant", "content": text}  # noqa: E731
S = lambda text: {"role": "system", "content": text}  # noqa: E731

CASES = [
    ("corpus", {"text": "空气炸锅的容量是5.5升。"}, "text", [{"text": "空气炸锅的容量是5.5升。"}]),
    ("instruction", {"input": "冰箱多少钱?", "output": "800元。"}, "input_output", [{"messages": [U("冰箱多少钱?"), A("800元。")]}]),
    ("instruction", {"instruction": "翻译成英文", "input": "你好", "output": "Hello"}, "alpaca",
     [{"messages": [U("翻译成英文\n你好"), A("Hello")]}]),
    ("instruction", {"instruction": "讲个笑话", "input": "", "output": "好的……"}, "alpaca",
     [{"messages": [U("讲个笑话"), A("好的……")]}]),
    ("instruction", {"prompt": "Hi", "completion": "Hello!"}, "prompt_completion", [{"messages": [U("Hi"), A("Hello!")]}]),
    ("instruction", {"prompt": "Hi", "response": "Hello!", "system": "Be brief."}, "prompt_response",
     [{"messages": [S("Be brief."), U("Hi"), A("Hello!")]}]),
    ("instruction", {"messages": [S("客服"), U("能退吗"), A("能"), U("运费?"), A("包邮")]}, "openai_chat",
     [{"messages": [S("客服"), U("能退吗"), A("能"), U("运费?"), A("包邮")]}]),
    ("instruction", {"conversations": [{"from": "human", "value": "在吗"}, {"from": "gpt", "value": "在的"}]}, "sharegpt",
     [{"messages": [U("在吗"), A("在的")]}]),
    ("instruction", {"instruction": "判断情感", "instances": [{"input": "好评", "output": "正面"}, {"input": "差评", "output": "负面"}]},
     "instances", [{"messages": [U("判断情感\n好评"), A("正面")]}, {"messages": [U("判断情感\n差评"), A("负面")]}]),
    ("preference", {"prompt": "Q", "chosen": "good", "rejected": "bad"}, "prompt_chosen_rejected",
     [{"prompt": "Q", "chosen": "good", "rejected": "bad"}]),
    ("preference", {"prompt": "Q", "chosen": "good", "reject": "bad"}, "prompt_chosen_reject",
     [{"prompt": "Q", "chosen": "good", "rejected": "bad"}]),
    ("preference", {"chosen": "\n\nHuman: 你好\n\nAssistant: 你好,有什么可以帮你?",
                    "rejected": "\n\nHuman: 你好\n\nAssistant: 走开。"}, "hh",
     [{"prompt": "\n\nHuman: 你好\n\nAssistant:", "chosen": "你好,有什么可以帮你?", "rejected": "走开。"}]),
    ("preference", {"prompt": "Q", "answers": [{"answer": "a", "score": 3}, {"answer": "b", "score": 1}, {"answer": "c", "score": 2}]},
     "ranked", [{"prompt": "Q", "chosen": "a", "rejected": "b"}, {"prompt": "Q", "chosen": "a", "rejected": "c"},
                {"prompt": "Q", "chosen": "c", "rejected": "b"}]),
    ("preference", {"input": {"messages": [U("Hi")]}, "preferred_output": [A("Hello!")], "non_preferred_output": [A("Go away")]},
     "openai_dpo", [{"prompt": [U("Hi")], "chosen": "Hello!", "rejected": "Go away"}]),
    ("prompts", {"prompt": "写一首诗"}, "prompt", [{"prompt": "写一首诗"}]),
    ("prompts", {"input": "冰箱多少钱?", "output": "800元。"}, "input_output", [{"prompt": "冰箱多少钱?"}]),
    ("prompts", {"prompt": "Q", "answers": [{"answer": "a", "score": 2}, {"answer": "b", "score": 1}, {"answer": "c", "score": 0}]},
     "ranked", [{"prompt": "Q"}]),
    ("prompts", {"messages": [U("a"), A("b"), U("c"), A("d")]}, "openai_chat", [{"prompt": [U("a"), A("b"), U("c")]}]),
    ("eval", {"question": "1+1=?", "class": "math", "std_answer": "2"}, "belle_eval",
     [{"id": None, "question": "1+1=?", "category": "math", "reference": "2"}]),
    ("eval", {"question_id": 81, "category": "writing", "turns": ["Write a poem", "Shorter"]}, "fastchat_eval",
     [{"id": 81, "question": "Write a poem", "category": "writing", "reference": ""}]),
]


@pytest.mark.parametrize(("kind", "row", "format_name", "expected"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_format_is_detected_and_converted(kind, row, format_name, expected) -> None:
    fmt = detect(row, kind)
    assert fmt is not None and fmt.name == format_name
    assert convert_row(row, fmt, kind) == expected


@pytest.mark.parametrize(
    ("kind", "row", "reason"),
    [
        ("instruction", {"input": "q", "output": ""}, "field 'output' is empty"),
        ("instruction", {"input": "q", "output": 5}, "field 'output' must be a string, not int"),
        ("instruction", {"messages": [U("only a question")]}, "no assistant turn to learn from"),
        ("instruction", {"conversations": [{"from": "alien", "value": "x"}]}, "conversations[0].from 'alien' is not a known role"),
        ("preference", {"prompt": "Q", "chosen": "same", "rejected": "same "}, "chosen and rejected are the same"),
        ("preference", {"prompt": "Q", "answers": [{"answer": "a", "score": 1}, {"answer": "b", "score": 1}]},
         "all answers have the same score: no pair to learn from"),
        ("preference", {"chosen": "good answer", "rejected": "bad answer"}, "no shared '\\n\\nHuman: … \\n\\nAssistant:' prompt before the answers differ"),
        ("corpus", {"text": "   "}, "field 'text' is empty"),
    ],
)
def test_bad_rows_give_a_reason(kind, row, reason) -> None:
    fmt = detect(row, kind)
    assert fmt is not None
    with pytest.raises(RowError) as info:
        convert_row(row, fmt, kind)
    assert str(info.value).startswith(reason)


def test_rows_of_another_kind_are_not_detected() -> None:
    assert detect({"text": "x"}, "instruction") is None
    assert detect({"prompt": "a", "chosen": "b", "rejected": "c"}, "instruction") is None
