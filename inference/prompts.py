"""Prompt rendering for engines that take raw text.

The seed's template is `User: {prompt}\\n\\nBot: ` for every user turn, the
answer followed by the tokenizer's EOS in history; a system message is put
first, followed by a blank line. `chat_template` uses the tokenizer's own
chat template (with the generation prompt).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inference.base import InvalidParameter

SEED_TEMPLATE = "User: {prompt}\n\nBot: "
CHAT_TEMPLATE = "chat_template"
ROLES = ("system", "user", "assistant")


def check_messages(messages: Any) -> tuple[dict[str, str], ...]:
    """Validates OpenAI-style messages; text content parts are joined."""
    if not isinstance(messages, list) or not messages:
        raise InvalidParameter("'messages' must be a non-empty array", param="messages")
    checked: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidParameter(f"messages[{index}] must be an object", param=f"messages[{index}]")
        role = message.get("role")
        if role == "developer":
            role = "system"
        if role not in ROLES:
            raise InvalidParameter(
                f"messages[{index}].role must be one of system, user, assistant (got {role!r})",
                param=f"messages[{index}].role",
            )
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise InvalidParameter(
                        f"messages[{index}].content: only text parts are supported", param=f"messages[{index}].content"
                    )
                texts.append(part["text"])
            content = "".join(texts)
        if content is None and role == "assistant":
            content = ""
        if not isinstance(content, str):
            raise InvalidParameter(f"messages[{index}].content must be a string", param=f"messages[{index}].content")
        checked.append({"role": role, "content": content})
    if checked[-1]["role"] == "assistant":
        raise InvalidParameter("the last message must not be the assistant's", param="messages")
    return tuple(checked)


def render(messages: Sequence[dict[str, str]], template: str, tokenizer: Any | None) -> str:
    """The text the model continues."""
    if template == CHAT_TEMPLATE:
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise InvalidParameter("this model's tokenizer has no chat template", param="messages")
        return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    if "{prompt}" not in template:
        raise InvalidParameter(f"prompt template {template!r} has no {{prompt}} slot", param="model")
    eos = (getattr(tokenizer, "eos_token", None) or "") if tokenizer is not None else ""
    parts: list[str] = []
    for message in messages:
        if message["role"] == "system":
            parts.append(message["content"] + "\n\n")
        elif message["role"] == "user":
            parts.append(template.format(prompt=message["content"]))
        else:
            parts.append(message["content"] + eos)
    return "".join(parts)
