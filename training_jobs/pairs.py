"""Rendering prompts and responses for the preference stages (rm, dpo, ppo).

One rule everywhere, so that the reward model is trained and queried on the
same tokens: a sequence is `prompt ids + response ids + EOS`, where the prompt
is rendered exactly as SFT renders its context (the seed's
`User: {prompt}\\n\\nBot: `, or the tokenizer's chat template) and the response
never carries its own EOS. The reward model reads its score at that final EOS
(found from the attention mask, never by searching for a pad or EOS id, which
may be the same token).

Canonical rows (the datasets app's contract):
  preference {"prompt", "chosen", "rejected"}  (prompt: a string or a message list)
  prompts    {"prompt"}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training_jobs.config import CHAT_TEMPLATE, ConfigError
from training_jobs.data import read_jsonl, template_segments

Prompt = str | list[dict[str, str]]


def prompt_messages(prompt: Any, path: Path | str, number: int, field_name: str) -> list[dict[str, str]]:
    """The message list of a canonical prompt (a string is one user turn); it
    must end with a user turn — the one the response answers."""
    where = f"{field_name}: {path} line {number}"
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list) or not prompt:
        raise ConfigError(f"{where}: 'prompt' must be a string or a non-empty message list")
    for index, message in enumerate(prompt):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise ConfigError(f"{where}: prompt[{index}].role must be system, user or assistant")
        if not isinstance(message.get("content"), str):
            raise ConfigError(f"{where}: prompt[{index}].content must be a string")
    if prompt[-1]["role"] != "user":
        raise ConfigError(f"{where}: the prompt's last message must be the user's")
    return prompt


def prompt_ids(messages: list[dict[str, str]], tokenizer: Any, template: str) -> list[int]:
    """Token ids of the context up to where the assistant's answer starts."""
    if template == CHAT_TEMPLATE:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("prompt_template: 'chat_template' chosen but the tokenizer has no chat template")
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    ids: list[int] = []
    for segment, _ in template_segments(messages, template, tokenizer):
        ids.extend(segment)
    return ids


def response_ids(response: str, tokenizer: Any) -> list[int]:
    """The response's tokens without EOS (sequence() appends the one EOS)."""
    return list(tokenizer(response, add_special_tokens=False)["input_ids"])


def sequence(prompt: list[int], response: list[int], eos_id: int, max_length: int) -> tuple[list[int], int] | None:
    """`prompt + response + [eos]` cut to max_length, and the prompt length
    kept. The response is kept whole when it fits with at least one prompt
    token; otherwise the oldest prompt tokens go first, then the response's
    tail (the EOS always stays last). None when not even one prompt token and
    the EOS fit."""
    if max_length < 2 or not prompt:
        return None
    room_for_response = max_length - 2  # one prompt token, the EOS
    response = response[:room_for_response]
    keep_prompt = min(len(prompt), max_length - 1 - len(response))
    kept = prompt[len(prompt) - keep_prompt :]
    return kept + response + [eos_id], len(kept)


@dataclass
class Pair:
    """One preference pair, tokenised: chosen and rejected share the prompt."""

    chosen: list[int]
    rejected: list[int]
    prompt_length: int  # of the chosen sequence (equal for both unless cut differently)
    rejected_prompt_length: int


@dataclass
class EncodedPairs:
    pairs: list[Pair]
    rows: int = 0
    dropped: int = 0
    notes: list[str] = field(default_factory=list)


def encode_preferences(
    path: str | Path, tokenizer: Any, template: str, max_length: int, field_name: str = "train_data"
) -> EncodedPairs:
    data = EncodedPairs(pairs=[])
    eos = tokenizer.eos_token_id
    for number, row in read_jsonl(path, field_name=field_name):
        data.rows += 1
        messages = prompt_messages(row.get("prompt"), path, number, field_name)
        for name in ("chosen", "rejected"):
            if not isinstance(row.get(name), str):
                hint = " (the seed's 'reject' is read as 'rejected' by the datasets app)" if name == "rejected" and "reject" in row else ""
                raise ConfigError(f"{field_name}: {path} line {number}: field '{name}' must be a string{hint}")
        context = prompt_ids(messages, tokenizer, template)
        chosen = sequence(context, response_ids(row["chosen"], tokenizer), eos, max_length)
        rejected = sequence(context, response_ids(row["rejected"], tokenizer), eos, max_length)
        if chosen is None or rejected is None:
            data.dropped += 1
            continue
        data.pairs.append(Pair(chosen[0], rejected[0], chosen[1], rejected[1]))
    if data.dropped:
        data.notes.append(f"{data.dropped} of {data.rows} rows dropped: they do not fit max_length")
    return data


def encode_prompts(
    path: str | Path, tokenizer: Any, template: str, prompt_length: int, field_name: str = "train_data"
) -> tuple[list[list[int]], int]:
    """(prompt ids cut to their last prompt_length tokens, rows) for PPO."""
    prompts: list[list[int]] = []
    rows = 0
    for number, row in read_jsonl(path, field_name=field_name):
        rows += 1
        ids = prompt_ids(prompt_messages(row.get("prompt"), path, number, field_name), tokenizer, template)
        if ids:
            prompts.append(ids[-prompt_length:])
    return prompts, rows
