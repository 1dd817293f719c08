"""Reading the canonical JSONL and turning it into token tensors per stage.

pt  — `{"text"}` documents, tokenised, joined with EOS and cut into
      `max_length` blocks; loss on every token (the seed's
      `train_on_inputs: true`).
sft — `{"prompt","response"}` or `{"messages":[{"role","content"}]}` rendered
      through the prompt template; labels are -100 on system, user and template
      tokens and on padding, so the loss counts only answer tokens, on every
      assistant turn (the seed's `train_on_inputs: false`).
"""
from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from training_jobs.config import CHAT_TEMPLATE, ConfigError

IGNORE_INDEX = -100  # labels the loss skips (PyTorch cross-entropy's default)


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass
class EncodedData:
    examples: list[Example]
    dropped: int = 0  # rows that could not fit max_length with their answer
    rows: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(len(e.input_ids) for e in self.examples)


def read_jsonl(path: str | Path, *, field_name: str = "train_data") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) for each non-blank line; a bad line names file and line."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{field_name}: file {path} does not exist")
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{field_name}: {path} line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{field_name}: {path} line {number}: expected a JSON object")
            yield number, row


def row_kind(row: dict[str, Any]) -> str:
    if "messages" in row:
        return "instruction"
    if "prompt" in row and "chosen" in row and ("rejected" in row or "reject" in row):
        return "preference"
    if "prompt" in row and "response" in row:
        return "instruction"
    if "prompt" in row:
        return "prompts"
    if "text" in row:
        return "corpus"
    return "unknown"


STAGE_KIND = {"pt": "corpus", "sft": "instruction", "rm": "preference", "dpo": "preference", "ppo": "prompts"}
# Kinds a stage also reads: PPO takes the prompt of a preference row.
STAGE_ALSO_READS = {"ppo": {"preference"}}
KIND_FIELDS = {
    "corpus": '{"text"}', "instruction": '{"prompt","response"} or {"messages"}',
    "preference": '{"prompt","chosen","rejected"}', "prompts": '{"prompt"}',
}


def check_stage_data(stage: str, path: str | Path, field_name: str) -> None:
    """The first row must be of the stage's kind (pt: corpus; sft: instruction;
    rm/dpo: preference; ppo: prompts)."""
    expected = STAGE_KIND[stage]
    for number, row in read_jsonl(path, field_name=field_name):
        kind = row_kind(row)
        if kind != expected and kind not in STAGE_ALSO_READS.get(stage, set()):
            raise ConfigError(
                f"{field_name}: {path} line {number} holds {kind} data; stage {stage} needs {expected} rows {KIND_FIELDS[expected]}"
            )
        return
    raise ConfigError(f"{field_name}: {path} has no rows")


# --- pt -----------------------------------------------------------------------


def encode_corpus(path: str | Path, tokenizer: Any, max_length: int, field_name: str = "train_data") -> EncodedData:
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    rows = 0
    for number, row in read_jsonl(path, field_name=field_name):
        text = row.get("text")
        if not isinstance(text, str):
            raise ConfigError(f"{field_name}: {path} line {number}: field 'text' must be a string")
        rows += 1
        if text:
            stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
            stream.append(eos)
    examples = []
    for start in range(0, len(stream), max_length):
        block = stream[start : start + max_length]
        if len(block) < 2:  # nothing to predict
            continue
        examples.append(Example(input_ids=block, labels=list(block)))
    return EncodedData(examples=examples, rows=rows)


# --- sft ----------------------------------------------------------------------

Segment = tuple[list[int], bool]  # (token ids, counted in the loss)


def conversation(row: dict[str, Any], path: Path, number: int, field_name: str) -> list[dict[str, str]]:
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise ConfigError(f"{field_name}: {path} line {number}: 'messages' must be a non-empty list")
        for index, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
                raise ConfigError(
                    f"{field_name}: {path} line {number}: messages[{index}].role must be system, user or assistant"
                )
            if not isinstance(message.get("content"), str):
                raise ConfigError(f"{field_name}: {path} line {number}: messages[{index}].content must be a string")
        if not any(m["role"] == "assistant" for m in messages):
            raise ConfigError(f"{field_name}: {path} line {number}: no assistant message to learn from")
        return messages
    prompt, response = row.get("prompt"), row.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str):
        raise ConfigError(f"{field_name}: {path} line {number}: 'prompt' and 'response' must be strings")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]


def template_segments(messages: list[dict[str, str]], template: str, tokenizer: Any) -> list[Segment]:
    """Segments for `User: {prompt}\\n\\nBot: ` style templates: the system text
    and each rendered user turn are context; each answer + EOS is learned."""

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    segments: list[Segment] = []
    bos = tokenizer.bos_token_id if getattr(tokenizer, "add_bos_token", False) else None
    if bos is not None:
        segments.append(([bos], False))
    for message in messages:
        if message["role"] == "system":
            segments.append((ids(message["content"] + "\n\n"), False))
        elif message["role"] == "user":
            segments.append((ids(template.format(prompt=message["content"])), False))
        else:
            segments.append((ids(message["content"]) + [tokenizer.eos_token_id], True))
    return segments


def chat_template_segments(messages: list[dict[str, str]], tokenizer: Any) -> list[Segment]:
    """Segments from the tokenizer's chat template, found by rendering the
    conversation turn by turn: what an assistant turn adds after the
    generation prompt is learned, the rest is context."""

    def render(upto: int, generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(messages[:upto], tokenize=False, add_generation_prompt=generation_prompt)

    segments: list[Segment] = []
    done = ""
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prefix = render(index, True)
        full = render(index + 1, False)
        if not prefix.startswith(done) or not full.startswith(prefix):
            raise ConfigError("prompt_template: the tokenizer's chat template does not render turn by turn; use a plain template")
        context, answer = prefix[len(done) :], full[len(prefix) :]
        if context:
            segments.append((tokenizer(context, add_special_tokens=False)["input_ids"], False))
        segments.append((tokenizer(answer, add_special_tokens=False)["input_ids"], True))
        done = full
    return segments


def fit_segments(segments: list[Segment], max_length: int) -> list[Segment] | None:
    """Make the conversation fit, keeping answers where possible: drop the
    oldest turns first, then cut the oldest context tokens; None when the last
    answer cannot fit with at least one context token before it."""
    segments = list(segments)
    total = sum(len(ids) for ids, _ in segments)
    while total > max_length and sum(1 for _, learn in segments if learn) > 1:
        # Drop everything up to and including the first learned segment.
        first_learned = next(i for i, (_, learn) in enumerate(segments) if learn)
        total -= sum(len(ids) for ids, _ in segments[: first_learned + 1])
        segments = segments[first_learned + 1 :]
    if total <= max_length:
        return segments
    excess = total - max_length
    context = sum(len(ids) for ids, learn in segments if not learn)
    if context - excess < 1:
        return None
    trimmed: list[Segment] = []
    for ids, learn in segments:
        if not learn and excess > 0:
            cut = min(excess, len(ids))
            ids = ids[cut:]
            excess -= cut
        if ids:
            trimmed.append((ids, learn))
    return trimmed


def encode_sft_row(messages: list[dict[str, str]], tokenizer: Any, template: str, max_length: int) -> Example | None:
    if template == CHAT_TEMPLATE:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("prompt_template: 'chat_template' chosen but the tokenizer has no chat template")
        segments = chat_template_segments(messages, tokenizer)
    else:
        segments = template_segments(messages, template, tokenizer)
    fitted = fit_segments(segments, max_length)
    if fitted is None:
        return None
    input_ids: list[int] = []
    labels: list[int] = []
    for ids, learn in fitted:
        input_ids.extend(ids)
        labels.extend(ids if learn else [IGNORE_INDEX] * len(ids))
    return Example(input_ids=input_ids, labels=labels)


def encode_instructions(
    path: str | Path, tokenizer: Any, template: str, max_length: int, field_name: str = "train_data"
) -> EncodedData:
    path = Path(path)
    data = EncodedData(examples=[])
    for number, row in read_jsonl(path, field_name=field_name):
        data.rows += 1
        example = encode_sft_row(conversation(row, path, number, field_name), tokenizer, template, max_length)
        if example is None:
            data.dropped += 1
        else:
            data.examples.append(example)
    if data.dropped:
        data.notes.append(f"{data.dropped} of {data.rows} rows dropped: the answer does not fit max_length")
    return data


# --- batching -------------------------------------------------------------------


def plan_batches(lengths: list[int], micro_batch_size: int, seed: int, epoch: int, group_by_length: bool) -> list[list[int]]:
    """Micro-batches (lists of example indices) for one epoch, deterministic in
    (seed, epoch) so that a resumed run sees exactly the same order.

    With length grouping, indices are shuffled, cut into mega-chunks of 64
    micro-batches, sorted by length inside each chunk and cut into
    micro-batches, whose order is then shuffled: padding stays small while the
    data order stays random at the scale of a chunk."""
    rng = random.Random(seed * 100003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        chunk = micro_batch_size * 64
        grouped: list[int] = []
        for start in range(0, len(order), chunk):
            grouped.extend(sorted(order[start : start + chunk], key=lambda i: -lengths[i]))
        order = grouped
    batches = [order[i : i + micro_batch_size] for i in range(0, len(order), micro_batch_size)]
    if len(batches) > 1 and len(batches[-1]) < micro_batch_size:
        batches.pop()  # every micro-batch full: equal weight per step
    if group_by_length:
        rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example of the micro-batch."""
    width = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), width), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}
