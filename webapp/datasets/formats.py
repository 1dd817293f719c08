"""Accepted input formats per dataset kind and their canonical rows.

Pure Python (no Django): the ingest pipeline and the benchmark call it row by
row. A format is detected from a row's keys; `convert` returns the canonical
rows (a ranked preference row expands to several) or raises RowError with the
reason, which the pipeline reports with the line number.

Canonical rows (the contract with training_jobs):
  corpus      {"text"}
  instruction {"messages": [{"role": "system"|"user"|"assistant", "content"}]}
  preference  {"prompt", "chosen", "rejected"}  (prompt: str or message list)
  prompts     {"prompt"}
  eval        {"id", "question", "category", "reference"}
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KINDS = ("corpus", "instruction", "preference", "prompts", "eval")
Row = dict[str, Any]


class RowError(ValueError):
    """A row that cannot be converted; str() is the reason shown to the user."""


@dataclass(frozen=True)
class Format:
    name: str
    kind: str
    label: str
    keys: frozenset[str]  # all must be present for detection
    convert: Callable[[Row], list[Row]]


def _text(row: Row, field: str, *, allow_empty: bool = False) -> str:
    value = row.get(field)
    if value is None:
        raise RowError(f"missing field '{field}'")
    if not isinstance(value, str):
        raise RowError(f"field '{field}' must be a string, not {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise RowError(f"field '{field}' is empty")
    return value


def _with_system(row: Row, messages: list[Row]) -> list[Row]:
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        return [{"role": "system", "content": system}, *messages]
    return messages


def _turns(user: str, assistant: str) -> list[Row]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _join(instruction: str, extra: str) -> str:
    return f"{instruction}\n{extra}" if extra.strip() else instruction


# --- corpus ------------------------------------------------------------------


def corpus_text(row: Row) -> list[Row]:
    return [{"text": _text(row, "text")}]


# --- instruction -------------------------------------------------------------


ROLE_ALIASES = {
    "system": "system", "user": "user", "human": "user", "assistant": "assistant",
    "gpt": "assistant", "bot": "assistant", "chatgpt": "assistant", "model": "assistant",
}


def _check_conversation(messages: list[Row]) -> list[Row]:
    if not any(m["role"] == "assistant" for m in messages):
        raise RowError("no assistant turn to learn from")
    if not any(m["role"] == "user" for m in messages):
        raise RowError("no user turn")
    return messages


def _message_list(raw: Any, field: str, role_key: str, content_key: str) -> list[Row]:
    if not isinstance(raw, list) or not raw:
        raise RowError(f"field '{field}' must be a non-empty list")
    messages = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise RowError(f"{field}[{index}] must be an object")
        role = ROLE_ALIASES.get(str(item.get(role_key, "")).lower())
        if role is None:
            raise RowError(f"{field}[{index}].{role_key} {item.get(role_key)!r} is not a known role")
        content = item.get(content_key)
        if not isinstance(content, str):
            raise RowError(f"{field}[{index}].{content_key} must be a string")
        messages.append({"role": role, "content": content})
    return messages


def openai_chat(row: Row) -> list[Row]:
    return [{"messages": _check_conversation(_message_list(row["messages"], "messages", "role", "content"))}]


def sharegpt(row: Row) -> list[Row]:
    messages = _message_list(row["conversations"], "conversations", "from", "value")
    return [{"messages": _check_conversation(_with_system(row, messages))}]


def alpaca(row: Row) -> list[Row]:
    user = _join(_text(row, "instruction"), _text(row, "input", allow_empty=True) if "input" in row else "")
    return [{"messages": _with_system(row, _turns(user, _text(row, "output")))}]


def seed_input_output(row: Row) -> list[Row]:
    return [{"messages": _with_system(row, _turns(_text(row, "input"), _text(row, "output")))}]


def prompt_completion(row: Row) -> list[Row]:
    return [{"messages": _with_system(row, _turns(_text(row, "prompt"), _text(row, "completion")))}]


def prompt_response(row: Row) -> list[Row]:
    return [{"messages": _with_system(row, _turns(_text(row, "prompt"), _text(row, "response")))}]


def instruction_instances(row: Row) -> list[Row]:
    instruction = _text(row, "instruction")
    instances = row["instances"]
    if not isinstance(instances, list) or not instances:
        raise RowError("field 'instances' must be a non-empty list")
    out = []
    for index, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise RowError(f"instances[{index}] must be an object")
        try:
            user = _join(instruction, _text(instance, "input", allow_empty=True) if "input" in instance else "")
            out.append({"messages": _turns(user, _text(instance, "output"))})
        except RowError as exc:
            raise RowError(f"instances[{index}]: {exc}") from None
    return out


# --- preference --------------------------------------------------------------


def _pair(prompt: Any, chosen: str, rejected: str) -> Row:
    if chosen.strip() == rejected.strip():
        raise RowError("chosen and rejected are the same")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def preference_explicit(row: Row) -> list[Row]:
    return [_pair(_text(row, "prompt"), _text(row, "chosen"), _text(row, "rejected"))]


def preference_seed(row: Row) -> list[Row]:
    return [_pair(_text(row, "prompt"), _text(row, "chosen"), _text(row, "reject"))]


ASSISTANT_MARK = "\n\nAssistant:"


def preference_hh(row: Row) -> list[Row]:
    """Anthropic HH style: both sides hold the whole dialogue; the prompt is
    their common prefix up to and including the last `\\n\\nAssistant:`."""
    chosen, rejected = _text(row, "chosen"), _text(row, "rejected")
    common = 0
    limit = min(len(chosen), len(rejected))
    while common < limit and chosen[common] == rejected[common]:
        common += 1
    cut = chosen.rfind(ASSISTANT_MARK, 0, common + len(ASSISTANT_MARK))
    if cut < 0 or cut + len(ASSISTANT_MARK) > common:
        raise RowError("no shared '\\n\\nHuman: … \\n\\nAssistant:' prompt before the answers differ")
    end = cut + len(ASSISTANT_MARK)
    return [_pair(chosen[:end], chosen[end:].lstrip(" "), rejected[end:].lstrip(" "))]


def preference_ranked(row: Row) -> list[Row]:
    prompt = _text(row, "prompt")
    answers = row["answers"]
    if not isinstance(answers, list) or len(answers) < 2:
        raise RowError("field 'answers' needs at least two answers")
    scored = []
    for index, item in enumerate(answers):
        if not isinstance(item, dict) or not isinstance(item.get("score"), (int, float)):
            raise RowError(f"answers[{index}] needs 'answer' and a numeric 'score'")
        scored.append((item["score"], _text(item, "answer")))
    pairs = [
        {"prompt": prompt, "chosen": a, "rejected": b}
        for score_a, a in scored for score_b, b in scored
        if score_a > score_b and a.strip() != b.strip()
    ]
    if not pairs:
        raise RowError("all answers have the same score: no pair to learn from")
    return pairs


def _assistant_text(value: Any, field: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and isinstance(value[0], dict) and isinstance(value[0].get("content"), str):
        return value[0]["content"]
    raise RowError(f"field '{field}' must be a string or a list with one assistant message")


def preference_openai_dpo(row: Row) -> list[Row]:
    source = row["input"]
    if not isinstance(source, dict) or "messages" not in source:
        raise RowError("field 'input' must be an object with 'messages'")
    prompt = _message_list(source["messages"], "input.messages", "role", "content")
    chosen = _assistant_text(row["preferred_output"], "preferred_output")
    rejected = _assistant_text(row["non_preferred_output"], "non_preferred_output")
    return [_pair(prompt, chosen, rejected)]


# --- prompts -----------------------------------------------------------------


def prompt_only(row: Row) -> list[Row]:
    return [{"prompt": _text(row, "prompt")}]


# --- eval --------------------------------------------------------------------


def belle_eval(row: Row) -> list[Row]:
    return [{
        "id": row.get("id"),
        "question": _text(row, "question"),
        "category": _text(row, "class"),
        "reference": row.get("std_answer") or "",
    }]


def fastchat_eval(row: Row) -> list[Row]:
    turns = row["turns"]
    if not isinstance(turns, list) or not turns or not isinstance(turns[0], str) or not turns[0].strip():
        raise RowError("field 'turns' must be a non-empty list of strings")
    reference = row.get("reference") or ""
    if isinstance(reference, list):
        reference = reference[0] if reference else ""
    return [{"id": row.get("question_id"), "question": turns[0], "category": _text(row, "category"), "reference": reference}]


def _f(name: str, kind: str, label: str, keys: tuple[str, ...], convert: Callable[[Row], list[Row]]) -> Format:
    return Format(name, kind, label, frozenset(keys), convert)


# Detection order matters: more specific key sets first.
FORMATS: tuple[Format, ...] = (
    _f("text", "corpus", 'JSON Lines with "text"', ("text",), corpus_text),
    _f("openai_chat", "instruction", 'OpenAI chat {"messages"}', ("messages",), openai_chat),
    _f("sharegpt", "instruction", 'ShareGPT {"conversations"}', ("conversations",), sharegpt),
    _f("instances", "instruction", '{"instruction","instances"}', ("instruction", "instances"), instruction_instances),
    _f("alpaca", "instruction", 'Alpaca {"instruction","input","output"}', ("instruction", "output"), alpaca),
    _f("input_output", "instruction", 'the seed\'s {"input","output"}', ("input", "output"), seed_input_output),
    _f("prompt_completion", "instruction", '{"prompt","completion"}', ("prompt", "completion"), prompt_completion),
    _f("prompt_response", "instruction", '{"prompt","response"}', ("prompt", "response"), prompt_response),
    _f("openai_dpo", "preference", 'OpenAI DPO {"input","preferred_output","non_preferred_output"}',
       ("input", "preferred_output", "non_preferred_output"), preference_openai_dpo),
    _f("ranked", "preference", 'ranked {"prompt","answers"}', ("prompt", "answers"), preference_ranked),
    _f("prompt_chosen_rejected", "preference", '{"prompt","chosen","rejected"}', ("prompt", "chosen", "rejected"), preference_explicit),
    _f("prompt_chosen_reject", "preference", 'the seed\'s {"prompt","chosen","reject"}', ("prompt", "chosen", "reject"), preference_seed),
    _f("hh", "preference", 'implicit prompt {"chosen","rejected"} (Human/Assistant)', ("chosen", "rejected"), preference_hh),
    _f("prompt", "prompts", '{"prompt"}', ("prompt",), prompt_only),
    _f("belle_eval", "eval", 'BELLE {"question","class","std_answer"}', ("question", "class"), belle_eval),
    _f("fastchat_eval", "eval", 'FastChat {"question_id","category","turns"}', ("question_id", "turns"), fastchat_eval),
)
BY_NAME = {f.name: f for f in FORMATS}


def detect(row: Row, kind: str) -> Format | None:
    """The first format of `kind` whose keys the row has. For prompts, any
    instruction or preference format also qualifies (its prompt is taken)."""
    kinds = {kind} | ({"instruction", "preference"} if kind == "prompts" else set())
    keys = row.keys()
    for fmt in FORMATS:
        if fmt.kind in kinds and fmt.keys <= keys:
            return fmt
    return None


def prompt_of(canonical: Row, fmt: Format) -> Row:
    """A prompts row from a canonical instruction or preference row."""
    if fmt.kind == "instruction":
        messages = canonical["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        context = messages[: last_user + 1]
        if len(context) == 1:
            return {"prompt": context[0]["content"]}
        return {"prompt": context}
    if fmt.kind == "preference":
        return {"prompt": canonical["prompt"]}
    return canonical


def convert_row(row: Row, fmt: Format, kind: str) -> list[Row]:
    rows = fmt.convert(row)
    if kind == "prompts" and fmt.kind != "prompts":
        unique = []
        for item in rows:  # a ranked row gives several pairs with one prompt
            prompt = prompt_of(item, fmt)
            if prompt not in unique:
                unique.append(prompt)
        return unique
    return rows


# --- eval categories ---------------------------------------------------------

# BELLE's classes → the judge's categories; anything unlisted is "general".
DEFAULT_CATEGORY_MAP = {"math": "math", "code": "coding", "coding": "coding"}


def normalise_class(raw: str) -> str:
    """`closed\\u00a0qa` → `closed qa`: no-break and repeated spaces folded, lower case."""
    return " ".join(raw.replace("\u00a0", " ").split()).lower()


def categorise(row: Row, mapping: dict[str, str]) -> Row:
    """Canonical eval row with `category` = judge category, `class` = the normalised source class."""
    source_class = normalise_class(row["category"])
    return {**row, "class": source_class, "category": mapping.get(source_class, "general")}
