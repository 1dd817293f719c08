"""OpenAI request fields → `SamplingParams`, validated before anything
streams. Each error names the offending field (`param`) as OpenAI does.

Accepted beyond OpenAI's set, as vLLM does: `top_k`, `repetition_penalty`,
and the seed's `decoder` (sample | greedy | contrastive), `penalty_alpha` and
`max_length` (prompt + answer, as the seed's clients send).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from inference.base import DECODERS, InvalidParameter, SamplingParams

MAX_STOP_SEQUENCES = 4
MAX_N = 8


def _number(body: Mapping[str, Any], name: str, low: float, high: float, *, integer: bool = False) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
        raise InvalidParameter(f"'{name}' must be a number", param=name)
    if integer and not (isinstance(value, int) or float(value).is_integer()):
        raise InvalidParameter(f"'{name}' must be an integer", param=name)
    if not low <= value <= high:
        raise InvalidParameter(f"'{name}' must be between {low:g} and {high:g} (got {value})", param=name)
    return int(value) if integer else float(value)


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise InvalidParameter("'stop' must be a string or an array of strings", param="stop")
    if len(stop) > MAX_STOP_SEQUENCES:
        raise InvalidParameter(f"'stop' takes at most {MAX_STOP_SEQUENCES} sequences", param="stop")
    return tuple(s for s in stop if s)


def sampling_params(body: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> SamplingParams:
    """Request body merged over the deployment's defaults (request wins)."""
    merged: dict[str, Any] = {**(defaults or {}), **{k: v for k, v in body.items() if v is not None}}
    max_new = _number(merged, "max_completion_tokens", 1, 1_000_000, integer=True)
    if max_new is None:
        max_new = _number(merged, "max_tokens", 1, 1_000_000, integer=True)
    decoder = merged.get("decoder", "sample")
    if decoder not in DECODERS:
        raise InvalidParameter(f"'decoder' must be one of {', '.join(DECODERS)} (got {decoder!r})", param="decoder")
    temperature = _number(merged, "temperature", 0, 2)
    seed = _number(merged, "seed", -(2**63), 2**64 - 1, integer=True)
    return SamplingParams(
        max_new_tokens=max_new,
        max_length=_number(merged, "max_length", 1, 1_000_000, integer=True),
        decoder=decoder,
        temperature=1.0 if temperature is None else temperature,
        top_p=_default(_number(merged, "top_p", 0, 1), 1.0),
        top_k=max(_default(_number(merged, "top_k", -1, 100_000, integer=True), 0), 0),  # -1: off, as vLLM
        repetition_penalty=_default(_number(merged, "repetition_penalty", 0.01, 10), 1.0),
        presence_penalty=_default(_number(merged, "presence_penalty", -2, 2), 0.0),
        frequency_penalty=_default(_number(merged, "frequency_penalty", -2, 2), 0.0),
        penalty_alpha=_default(_number(merged, "penalty_alpha", 0, 1), 0.6),
        contrastive_top_k=_default(_number(merged, "contrastive_top_k", 1, 64, integer=True), 4),
        seed=None if seed is None else seed % 2**63,
        stop=_stop(merged),
    )


def _default(value: Any, default: Any) -> Any:
    return default if value is None else value


def choice_count(body: Mapping[str, Any]) -> int:
    n = _number(body, "n", 1, MAX_N, integer=True)
    return 1 if n is None else n
