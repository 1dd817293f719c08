"""The progress protocol: one JSON object per line, on stdout and appended to
`<output_dir>/progress.jsonl`. Every object has `event` and `ts` (Unix time);
training_jobs/README.md lists the events. Only rank 0 writes."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO


def _clean(value: Any) -> Any:
    # JSON has no NaN/Infinity; a diverged loss is reported as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Progress:
    def __init__(self, output_dir: str | Path | None, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stdout
        self.path = Path(output_dir) / "progress.jsonl" if output_dir else None
        if self.enabled and self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, "ts": round(time.time(), 3), **_clean(fields)}
        if not self.enabled:
            return record
        line = json.dumps(record, ensure_ascii=False)
        self.stream.write(line + "\n")
        self.stream.flush()
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line + "\n")
        return record


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The events of a progress.jsonl file (or of captured stdout)."""
    events = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "event" in record:
                events.append(record)
    return events
