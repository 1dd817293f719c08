"""Dataset statistics gathered in one pass while the canonical rows are
written: rows, characters, length distributions with a histogram and
percentiles, exact duplicates, source field coverage, eval categories and a
reproducible random sample. Pure Python (no Django).

Token lengths are exact up to TOKEN_SAMPLE rows; above that they are measured
on a uniform random sample of TOKEN_SAMPLE rows (reservoir sampling), which
keeps ingest fast on million-row files: a byte-level BPE tokenizer manages
about 10,000 rows/s on two cores, five times slower than the rest of the
pipeline. The stats say which (`token_length.sampled_rows`).
"""
from __future__ import annotations

import random
from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

TOKEN_SAMPLE = 100_000
TOKENIZE_BATCH = 2000
SAMPLE_SIZE = 20
HISTOGRAM_BINS = 20

TokenCounter = Callable[[list[str]], list[int]]


def row_text(row: dict[str, Any]) -> str:
    """The text whose length matters for training, per canonical kind."""
    if "messages" in row:
        return "\n".join(m["content"] for m in row["messages"])
    if "chosen" in row:
        prompt = row["prompt"]
        prompt_text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
        return f"{prompt_text}\n{row['chosen']}"
    if "question" in row:
        return row["question"]
    if "prompt" in row:
        prompt = row["prompt"]
        return prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
    return row.get("text", "")


def percentile(sorted_values: Any, q: float) -> int:
    if not len(sorted_values):
        return 0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return int(sorted_values[index])


def distribution(values: Any) -> dict[str, Any]:
    if not len(values):
        return {}
    ordered = np.sort(np.frombuffer(values, dtype=np.uint32) if isinstance(values, array) else np.asarray(values))
    low, high = int(ordered[0]), int(ordered[-1])
    width = max(1, -(-(high - low + 1) // HISTOGRAM_BINS))
    counts = np.bincount(np.minimum((ordered - low) // width, HISTOGRAM_BINS - 1).astype(np.int64), minlength=HISTOGRAM_BINS)
    return {
        "mean": round(float(ordered.mean()), 1),
        "min": low, "p50": percentile(ordered, 0.5), "p90": percentile(ordered, 0.9),
        "p95": percentile(ordered, 0.95), "p99": percentile(ordered, 0.99), "max": high,
        "histogram": [{"from": low + i * width, "to": low + (i + 1) * width - 1, "count": int(c)} for i, c in enumerate(counts)],
    }


class StatsCollector:
    def __init__(self, count_tokens: TokenCounter | None = None, seed: int = 0, token_sample: int | None = TOKEN_SAMPLE) -> None:
        """token_sample=None counts the tokens of every row, batch by batch."""
        self.count_tokens = count_tokens
        self.token_sample = token_sample
        self.streamed_lengths = array("I")
        self.rows = 0
        self.characters = 0
        self.char_lengths = array("I")
        self.texts: list[str] = []  # reservoir of texts whose tokens are counted
        # hash() of each canonical JSON line, 8 bytes a row (a set would take
        # ~100 bytes); duplicates are counted once at the end. 64 bits: a false
        # duplicate among a million rows has odds of about 1 in 10^7.
        self.hashes = array("q")
        self.fields: Counter[str] = Counter()
        self.sources = 0
        self.categories: Counter[str] = Counter()
        self.sample: list[dict[str, Any]] = []
        self.rng = random.Random(seed)

    def add_source(self, item: dict[str, Any]) -> None:
        self.sources += 1
        for key, value in item.items():
            if value not in (None, "", [], {}):
                self.fields[key] += 1

    def add(self, row: dict[str, Any], line: str) -> None:
        self.rows += 1
        text = row_text(row)
        self.characters += len(text)
        self.char_lengths.append(len(text))
        self.hashes.append(hash(line))
        if "category" in row:
            self.categories[row["category"]] += 1
        # Reservoir sampling (Algorithm R) for the shown sample and, when the
        # file is large, for the rows whose tokens are counted.
        # One draw serves both reservoirs: each stays a uniform sample.
        slot = self.rows - 1 if self.rows <= SAMPLE_SIZE else self.rng.randrange(self.rows)
        if slot < SAMPLE_SIZE:
            if slot == len(self.sample):
                self.sample.append(row)
            else:
                self.sample[slot] = row
        if self.count_tokens is None:
            return
        if self.token_sample is None:
            self.texts.append(text)
            if len(self.texts) >= TOKENIZE_BATCH:
                self.streamed_lengths.extend(self.count_tokens(self.texts))
                self.texts = []
        elif len(self.texts) < self.token_sample:
            self.texts.append(text)
        elif slot < self.token_sample:
            self.texts[slot] = text

    def _token_lengths(self) -> array:
        lengths = self.streamed_lengths
        assert self.count_tokens is not None
        for start in range(0, len(self.texts), TOKENIZE_BATCH):
            lengths.extend(self.count_tokens(self.texts[start : start + TOKENIZE_BATCH]))
        return lengths

    def result(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "rows": self.rows,
            "characters": self.characters,
            "char_length": distribution(self.char_lengths),
            "token_length": {},
            "duplicates": int(len(self.hashes) - len(np.unique(np.frombuffer(self.hashes, dtype=np.int64)))) if self.rows else 0,
            "field_coverage": {k: round(v / max(self.sources, 1), 4) for k, v in sorted(self.fields.items())},
            "sample": self.sample,
        }
        if self.count_tokens is not None and self.rows:
            sampled = len(self.texts) if self.token_sample is not None and self.rows > len(self.texts) else None
            stats["token_length"] = distribution(self._token_lengths())
            stats["token_length"]["sampled_rows"] = sampled
        if self.categories:
            stats["categories"] = dict(self.categories.most_common())
        return stats


def tokenizer_counter(model_dir: str) -> TokenCounter | None:
    """Token counts from a model folder's tokenizer.json through `tokenizers`
    (no transformers or torch import: fast start, small memory)."""
    from pathlib import Path

    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    return lambda texts: [len(e.ids) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]
