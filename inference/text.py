"""Text helpers shared by the backends that tokenise themselves (local,
Triton FasterTransformer): incremental detokenisation and stop strings."""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from inference.base import Chunk

REPLACEMENT = "\ufffd"


class IncrementalDecoder:
    """Turns a growing list of token ids into text deltas.

    Byte-level BPE splits one Chinese character over several tokens, so a
    delta that ends in U+FFFD is held back until the next token completes it.
    Only a short window is re-decoded each step (the prefix/read offsets trick),
    so a long answer costs O(n), not O(n²).
    """

    def __init__(self, tokenizer: Any, *, skip_special_tokens: bool = True) -> None:
        self.tokenizer = tokenizer
        self.skip = skip_special_tokens
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=self.skip, clean_up_tokenization_spaces=False)

    def push(self, new_ids: Sequence[int]) -> str:
        """Add tokens; return the text they complete (may be "")."""
        self.ids.extend(int(i) for i in new_ids)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith(REPLACEMENT):
            delta = full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            return delta
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character at the end)."""
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return full[len(prefix) :] if len(full) > len(prefix) else ""


class StopMatcher:
    """Finds the earliest stop string in streamed text without emitting a
    prefix of one too early: text that could still become a stop string is
    held back until it cannot."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.hold = max((len(s) for s in self.stops), default=0)
        self.pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit, stopped)."""
        if not self.stops:
            return text, False
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out = self.pending[: min(hits)]
            self.pending = ""
            return out, True
        keep = 0
        for stop in self.stops:
            for size in range(min(len(stop) - 1, len(self.pending)), 0, -1):
                if self.pending.endswith(stop[:size]):
                    keep = max(keep, size)
                    break
        out, self.pending = self.pending[: len(self.pending) - keep], self.pending[len(self.pending) - keep :]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


async def apply_stop_strings(chunks: AsyncIterator[Chunk], stops: Sequence[str]) -> AsyncIterator[Chunk]:
    """Wraps a backend stream: cuts the text at the first stop string (which is
    not returned, as in OpenAI's API), ends with finish_reason "stop", and
    closes the inner stream so the engine stops generating."""
    matcher = StopMatcher(stops)
    prompt_tokens = 0
    try:
        async for chunk in chunks:
            prompt_tokens = chunk.prompt_tokens or prompt_tokens
            text, stopped = matcher.feed(chunk.text)
            if stopped:
                yield Chunk(text, chunk.tokens, prompt_tokens, "stop")
                return
            if chunk.finish_reason:
                yield Chunk(text + matcher.flush(), chunk.tokens, prompt_tokens, chunk.finish_reason)
                return
            if text or chunk.tokens:
                yield Chunk(text, chunk.tokens, prompt_tokens)
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
