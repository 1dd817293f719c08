"""Streaming ingest: raw upload → canonical JSONL, with per-row errors.

Pure Python (no Django) so the benchmark and the Celery task share it. Memory
stays flat whatever the file size: lines are read one at a time with a length
cap, JSON arrays are parsed item by item (ijson), gzip is decompressed as a
stream under a ratio limit, and the canonical rows are written as they come.
"""
from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import ijson
import orjson

from webapp.datasets.formats import BY_NAME, Format, RowError, convert_row, detect

MiB = 1024 * 1024


class IngestError(Exception):
    """The whole file is refused; str() says why (and where)."""


@dataclass(frozen=True)
class IngestOptions:
    kind: str
    format: str | None = None  # None: detected from the first rows
    on_error: str = "skip"  # "skip" bad rows, or "reject" the file at the first one
    txt_mode: str = "paragraphs"  # corpus .txt: "paragraphs" (blank-line separated) or "lines"
    max_row_bytes: int = 4 * MiB
    max_gzip_ratio: int = 100  # decompressed / compressed
    max_decompressed_bytes: int = 20 * 1024 * MiB
    keep_errors: int = 100
    detect_rows: int = 20  # rows sampled to detect the format


@dataclass
class RowIssue:
    line: int
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason}


@dataclass
class IngestReport:
    format: str = ""
    encoding: str = "utf-8"
    compressed: bool = False
    source_rows: int = 0
    rows: int = 0
    error_count: int = 0
    errors: list[RowIssue] = field(default_factory=list)

    def add_error(self, line: int, reason: str, keep: int) -> None:
        self.error_count += 1
        if len(self.errors) < keep:
            self.errors.append(RowIssue(line, reason))


# --- bytes: gzip with a ratio guard ---------------------------------------------


class _CountingReader(io.RawIOBase):
    """Counts the compressed bytes gzip pulls from the file."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        self.count += len(data)
        buffer[: len(data)] = data
        return len(data)


class _GuardedGzip(io.RawIOBase):
    """Decompresses as a stream; refuses a decompression bomb early."""

    def __init__(self, raw: IO[bytes], options: IngestOptions) -> None:
        self.counter = _CountingReader(raw)
        self.gzip = gzip.GzipFile(fileobj=io.BufferedReader(self.counter, 64 * 1024))
        self.out = 0
        self.options = options

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.gzip.read(len(buffer))
        except (OSError, EOFError) as exc:
            raise IngestError(f"the gzip stream is corrupt or truncated ({exc})") from None
        self.out += len(data)
        # A ratio over the limit after the first MiB is a bomb, not a text file.
        if self.out > MiB and self.out > self.options.max_gzip_ratio * max(self.counter.count, 1):
            raise IngestError(
                f"decompression ratio over {self.options.max_gzip_ratio}:1 — refusing a possible gzip bomb"
            )
        if self.out > self.options.max_decompressed_bytes:
            raise IngestError(f"decompressed size over {self.options.max_decompressed_bytes // MiB} MiB")
        buffer[: len(data)] = data
        return len(data)


def open_bytes(path: Path, options: IngestOptions) -> tuple[io.BufferedReader, bool]:
    raw = path.open("rb")
    compressed = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    if compressed:
        return io.BufferedReader(_GuardedGzip(raw, options), 256 * 1024), True
    return io.BufferedReader(raw, 256 * 1024), False  # type: ignore[arg-type]


# --- text: encoding, lines with a length cap -------------------------------------


def sniff_encoding(head: bytes) -> str:
    """utf-8-sig, utf-8 or gb18030 (GBK is a subset), judged line by line on
    the first bytes: a UTF-8 file with a few bad lines stays UTF-8 (those
    lines become row errors); anything else is refused."""
    if not head:
        raise IngestError("the file is empty")
    if b"\x00" in head:
        raise IngestError("the file is binary (it contains NUL bytes), not text")
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8-sig"
    lines = head.split(b"\n")
    if len(lines) > 1:
        lines = lines[:-1]  # the last one may be cut mid-character
    def valid(codec: str) -> int:
        count = 0
        for line in lines:
            try:
                line.decode(codec)
                count += 1
            except UnicodeDecodeError:
                pass
        return count
    utf8, gb = valid("utf-8"), valid("gb18030")
    if utf8 == len(lines) or (utf8 >= gb and utf8 * 2 >= len(lines)):
        return "utf-8"
    if gb * 2 >= len(lines):
        return "gb18030"
    raise IngestError("the file is neither UTF-8 nor GB18030/GBK text; convert it to UTF-8")


def iter_lines(
    stream: io.BufferedReader, encoding: str, max_bytes: int, raw_utf8: bool = False
) -> Iterator[tuple[int, str | bytes | RowError]]:
    """(line number, text or the reason it is unusable), never holding more
    than max_bytes of one line in memory. With raw_utf8, UTF-8 lines come as
    bytes for a parser that validates UTF-8 itself (orjson): no decode twice."""
    number = 0
    codec = "utf-8" if encoding == "utf-8-sig" else encoding
    first = True
    while True:
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        number += 1
        if len(line) > max_bytes and not line.endswith(b"\n"):
            while True:  # drain the rest of the oversized line
                rest = stream.readline(MiB)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, RowError(f"line is over the size limit of {max_bytes // MiB} MiB")
            continue
        if first and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        first = False
        if raw_utf8 and codec == "utf-8":
            yield number, line
            continue
        try:
            yield number, line.decode(codec).rstrip("\r\n")
        except UnicodeDecodeError:
            yield number, RowError(f"invalid {codec.upper()} bytes")


# --- records --------------------------------------------------------------------


Record = tuple[int, Any]  # (line or item number, parsed object or RowError)


def _json_lines(lines: Iterator[tuple[int, str | bytes | RowError]]) -> Iterator[Record]:
    for number, text in lines:
        if isinstance(text, RowError):
            yield number, text
            continue
        if not text.strip():
            continue
        try:
            # orjson is ~4x faster than json and checks UTF-8 on bytes; on
            # failure the stdlib gives the message with a column.
            yield number, orjson.loads(text)
        except orjson.JSONDecodeError:
            if isinstance(text, bytes):
                try:
                    text = text.decode("utf-8")
                except UnicodeDecodeError:
                    yield number, RowError("invalid UTF-8 bytes")
                    continue
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                yield number, RowError(f"bad JSON: {exc.msg} (column {exc.colno})")


class _Utf8Reencoder(io.RawIOBase):
    """Bytes in another encoding → UTF-8 bytes, for ijson (which reads UTF-8)."""

    def __init__(self, stream: io.BufferedReader, encoding: str) -> None:
        self.text = io.TextIOWrapper(stream, encoding=encoding)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            chunk = self.text.read(64 * 1024)
            if not chunk:
                return 0
            self.pending = chunk.encode("utf-8")
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size


def _json_array(stream: io.BufferedReader, encoding: str) -> Iterator[Record]:
    source: Any = stream
    if encoding == "utf-8-sig":
        stream.read(3)
    elif encoding != "utf-8":
        source = _Utf8Reencoder(stream, encoding)
    index = 0
    try:
        for index, item in enumerate(ijson.items(source, "item", use_float=True), start=1):
            yield index, item
    except ijson.JSONError as exc:
        raise IngestError(f"bad JSON array after item {index}: {exc}") from None


def _text_documents(lines: Iterator[tuple[int, str | RowError]], mode: str) -> Iterator[Record]:
    if mode == "lines":
        for number, text in lines:
            if isinstance(text, RowError):
                yield number, text
            elif text.strip():
                yield number, {"text": text.strip()}
        return
    paragraph: list[str] = []
    start = 0
    for number, text in lines:
        if isinstance(text, RowError):
            yield number, text
            continue
        if text.strip():
            if not paragraph:
                start = number
            paragraph.append(text.strip())
        elif paragraph:
            yield start, {"text": "\n".join(paragraph)}
            paragraph = []
    if paragraph:
        yield start, {"text": "\n".join(paragraph)}


def _peek(stream: io.BufferedReader, size: int = 64 * 1024) -> bytes:
    return stream.peek(size)[:size]


def records(path: Path, options: IngestOptions, report: IngestReport) -> Iterator[Record]:
    stream, report.compressed = open_bytes(path, options)
    head = _peek(stream)
    report.encoding = sniff_encoding(head)
    stripped = head.decode(report.encoding, errors="ignore").lstrip("\ufeff \t\r\n")
    if stripped.startswith("["):
        yield from _json_array(stream, report.encoding)
        return
    if options.kind == "corpus" and not stripped.startswith("{"):
        yield from _text_documents(iter_lines(stream, report.encoding, options.max_row_bytes), options.txt_mode)
        return
    yield from _json_lines(iter_lines(stream, report.encoding, options.max_row_bytes, raw_utf8=True))


# --- the pipeline ----------------------------------------------------------------


def choose_format(samples: list[Any], options: IngestOptions) -> Format:
    if options.format:
        fmt = BY_NAME.get(options.format)
        if fmt is None:
            raise IngestError(f"unknown format {options.format!r}")
        return fmt
    votes: dict[str, int] = {}
    for item in samples:
        if isinstance(item, dict):
            fmt = detect(item, options.kind)
            if fmt is not None:
                votes[fmt.name] = votes.get(fmt.name, 0) + 1
    if not votes:
        keys = sorted({k for item in samples if isinstance(item, dict) for k in item})[:12]
        raise IngestError(
            f"no {options.kind} format matches these rows (fields seen: {', '.join(keys) or 'none'}); "
            "check the kind, or pick the format"
        )
    return BY_NAME[max(votes, key=votes.__getitem__)]


def ingest(
    path: Path,
    out: IO[str] | None,
    options: IngestOptions,
    on_row: Callable[[dict[str, Any], str], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    on_source: Callable[[dict[str, Any]], None] | None = None,
) -> IngestReport:
    """Convert `path` to canonical JSONL written to `out`. Raises IngestError
    when the file is refused (or at the first bad row with on_error=reject).
    `transform` rewrites each canonical row before it is written; `on_row`
    sees each written row with its JSON line, `on_source` each accepted
    source object."""
    report = IngestReport()
    stream = records(path, options, report)
    samples: list[Record] = []
    for record in stream:
        samples.append(record)
        if len(samples) >= options.detect_rows:
            break
    if not samples:
        raise IngestError("the file holds no rows (only blank lines)")
    fmt = choose_format([item for _, item in samples if not isinstance(item, RowError)], options)
    report.format = fmt.name

    def all_records() -> Iterator[Record]:
        yield from samples
        yield from stream

    for number, item in all_records():
        report.source_rows += 1
        try:
            if isinstance(item, RowError):
                raise item
            if not isinstance(item, dict):
                raise RowError(f"expected a JSON object, got {type(item).__name__}")
            if not fmt.keys <= item.keys():
                missing = ", ".join(sorted(fmt.keys - item.keys()))
                raise RowError(f"missing field(s) {missing} of format {fmt.name}")
            converted = convert_row(item, fmt, options.kind)
            if transform is not None:
                converted = [transform(row) for row in converted]
        except RowError as exc:
            if options.on_error == "reject":
                raise IngestError(f"line {number}: {exc}") from None
            report.add_error(number, str(exc), options.keep_errors)
            continue
        if on_source is not None:
            on_source(item)
        for row in converted:
            report.rows += 1
            line = orjson.dumps(row).decode()
            if out is not None:
                out.write(line)
                out.write("\n")
            if on_row is not None:
                on_row(row, line)
        if on_progress is not None and report.source_rows % 10_000 == 0:
            on_progress(report.source_rows)
    if report.rows == 0:
        raise IngestError(f"no usable rows ({report.error_count} bad rows)")
    return report


def preview(path: Path, options: IngestOptions, limit: int = 10) -> dict[str, Any]:
    """What an upload would give, from its first rows, before anything is
    stored: detected format and encoding, converted rows, row errors."""
    report = IngestReport()
    samples: list[Record] = []
    for record in records(path, options, report):
        samples.append(record)
        if len(samples) >= max(limit, options.detect_rows):
            break
    fmt = choose_format([item for _, item in samples if not isinstance(item, RowError)], options)
    rows: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    for number, item in samples[:limit]:
        try:
            if isinstance(item, RowError):
                raise item
            if not isinstance(item, dict) or not fmt.keys <= item.keys():
                raise RowError(f"does not match format {fmt.name}")
            rows.extend(convert_row(item, fmt, options.kind))
        except RowError as exc:
            errors.append({"line": number, "reason": str(exc)})
    return {"format": fmt.name, "format_label": fmt.label, "encoding": report.encoding,
            "compressed": report.compressed, "rows": rows[:limit], "errors": errors}
