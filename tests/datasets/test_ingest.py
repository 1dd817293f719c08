"""The streaming ingest and its bad-file battery."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from webapp.datasets.ingest import IngestError, IngestOptions, ingest

MiB = 1024 * 1024


def run(path: Path, **options) -> tuple[list[dict], object]:
    out = io.StringIO()
    report = ingest(path, out, IngestOptions(**options))
    return [json.loads(line) for line in out.getvalue().splitlines()], report


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def jsonl(rows: list[dict]) -> str:
    return "\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n"


def test_jsonl_with_bad_rows_skipped_and_reported_by_line(tmp_path) -> None:
    text = jsonl([{"input": "a", "output": "b"}]) + "{broken\n" + jsonl([{"input": "c"}, {"input": "d", "output": ""}, {"input": "e", "output": "f"}])
    rows, report = run(write(tmp_path, "d.jsonl", text), kind="instruction")
    assert [r["messages"][0]["content"] for r in rows] == ["a", "e"]
    assert report.format == "input_output" and report.rows == 2 and report.error_count == 3
    assert [(e.line, e.reason) for e in report.errors] == [
        (2, "bad JSON: Expecting property name enclosed in double quotes (column 2)"),
        (3, "missing field(s) output of format input_output"),
        (4, "field 'output' is empty"),
    ]


def test_reject_mode_stops_at_the_first_bad_row(tmp_path) -> None:
    text = jsonl([{"input": "a", "output": "b"}, {"input": "c"}])
    with pytest.raises(IngestError, match="line 2: missing field"):
        run(write(tmp_path, "d.jsonl", text), kind="instruction", on_error="reject")


def test_truncated_last_line_is_a_bad_row(tmp_path) -> None:
    text = jsonl([{"text": "one"}, {"text": "two"}]) + '{"text": "thr'
    rows, report = run(write(tmp_path, "d.jsonl", text), kind="corpus")
    assert len(rows) == 2 and report.errors[0].line == 3 and report.errors[0].reason.startswith("bad JSON")


def test_bom_and_crlf_are_handled(tmp_path) -> None:
    data = "\ufeff" + jsonl([{"text": "第一"}, {"text": "第二"}]).replace("\n", "\r\n")
    rows, report = run(write(tmp_path, "d.jsonl", data), kind="corpus")
    assert rows == [{"text": "第一"}, {"text": "第二"}] and report.encoding == "utf-8-sig"


def test_gbk_file_is_detected_and_converted(tmp_path) -> None:
    data = jsonl([{"text": "这款空气炸锅的容量是五点五升"}, {"text": "冰箱一级能效"}]).encode("gbk")
    rows, report = run(write(tmp_path, "d.jsonl", data), kind="corpus")
    assert report.encoding == "gb18030"
    assert rows == [{"text": "这款空气炸锅的容量是五点五升"}, {"text": "冰箱一级能效"}]


def test_invalid_utf8_later_in_the_file_is_a_bad_row(tmp_path) -> None:
    good = jsonl([{"text": f"第{i}行"} for i in range(3)]).encode()
    data = good + b'{"text": "\xff\xfe bad"}\n' + jsonl([{"text": "ok"}]).encode()
    rows, report = run(write(tmp_path, "d.jsonl", data), kind="corpus")
    assert len(rows) == 4 and report.errors[0].line == 4 and report.errors[0].reason == "invalid UTF-8 bytes"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "the file is binary"),
        (bytes([0x80, 0x81, 0xFF, 0xFE, 0xC0, 0xC1] * 50), "neither UTF-8 nor GB18030"),
    ],
)
def test_unusable_files_are_refused(tmp_path, data, message) -> None:
    with pytest.raises(IngestError, match=message):
        run(write(tmp_path, "d.jsonl", data), kind="corpus")


def test_rows_of_another_kind_are_refused_with_the_fields_seen(tmp_path) -> None:
    text = jsonl([{"prompt": "a", "chosen": "b", "rejected": "c"}])
    with pytest.raises(IngestError, match="no instruction format matches these rows \\(fields seen: chosen, prompt, rejected\\)"):
        run(write(tmp_path, "d.jsonl", text), kind="instruction")


def test_mixed_kinds_keep_the_majority_format_and_report_the_rest(tmp_path) -> None:
    text = jsonl([{"input": "a", "output": "b"}] * 5 + [{"prompt": "x", "completion": "y"}] * 2)
    rows, report = run(write(tmp_path, "d.jsonl", text), kind="instruction")
    assert report.format == "input_output" and report.rows == 5 and report.error_count == 2


def test_a_single_20_mib_line_is_rejected_without_reading_it_whole(tmp_path) -> None:
    huge = '{"text": "' + "x" * (20 * MiB) + '"}\n'
    path = write(tmp_path, "d.jsonl", jsonl([{"text": "small"}]) + huge + jsonl([{"text": "after"}]))
    rows, report = run(path, kind="corpus", max_row_bytes=4 * MiB)
    assert rows == [{"text": "small"}, {"text": "after"}]
    assert (report.errors[0].line, report.errors[0].reason) == (2, "line is over the size limit of 4 MiB")


def test_gzip_is_streamed_and_a_bomb_is_refused(tmp_path) -> None:
    ok = write(tmp_path, "d.jsonl.gz", gzip.compress(jsonl([{"text": f"文档{i}"} for i in range(100)]).encode()))
    rows, report = run(ok, kind="corpus")
    assert len(rows) == 100 and report.compressed
    bomb = tmp_path / "bomb.jsonl.gz"
    with gzip.open(bomb, "wb") as handle:
        line = (json.dumps({"text": "a" * 1000}) + "\n").encode()
        for _ in range(20_000):  # ~20 MB of text that compresses ~1000:1
            handle.write(line)
    with pytest.raises(IngestError, match="decompression ratio over 100:1"):
        run(bomb, kind="corpus")


def test_json_array_is_parsed_item_by_item(tmp_path) -> None:
    data = json.dumps([{"question": "1+1?", "class": "closed\u00a0qa", "std_answer": "2"}, {"question": "写诗", "class": "generation"}], ensure_ascii=False)
    rows, report = run(write(tmp_path, "eval.json", data), kind="eval")
    assert report.format == "belle_eval" and [r["question"] for r in rows] == ["1+1?", "写诗"]


def test_plain_text_corpus_by_paragraph_or_line(tmp_path) -> None:
    text = "User: 在吗 ChatBot: 在的\n第二行\n\n\n品类结构:家用电器,冰箱。\n"
    path = write(tmp_path, "corpus.txt", text)
    rows, _ = run(path, kind="corpus")
    assert rows == [{"text": "User: 在吗 ChatBot: 在的\n第二行"}, {"text": "品类结构:家用电器,冰箱。"}]
    rows, _ = run(path, kind="corpus", txt_mode="lines")
    assert [r["text"] for r in rows] == ["User: 在吗 ChatBot: 在的", "第二行", "品类结构:家用电器,冰箱。"]


def test_only_bad_rows_is_an_error(tmp_path) -> None:
    with pytest.raises(IngestError, match="no usable rows \\(2 bad rows\\)"):
        run(write(tmp_path, "d.jsonl", jsonl([{"input": "a", "output": ""}, {"input": "b", "output": " "}])), kind="instruction")


def test_gbk_json_array_is_converted(tmp_path) -> None:
    data = json.dumps([{"question": "冰箱能效?", "class": "open qa", "std_answer": "一级"}], ensure_ascii=False).encode("gbk")
    rows, report = run(write(tmp_path, "eval.json", data), kind="eval")
    assert report.encoding == "gb18030" and rows[0]["question"] == "冰箱能效?"


def test_token_lengths_exact_sampled_and_streamed_agree_on_small_data() -> None:
    from webapp.datasets.stats import StatsCollector

    def count(texts: list[str]) -> list[int]:
        return [len(t) for t in texts]  # a stand-in tokenizer: one token per character

    rows = [{"text": "字" * (i % 50 + 1)} for i in range(3000)]
    results = []
    for sample in (100_000, None, 500):
        collector = StatsCollector(count_tokens=count, token_sample=sample)
        for row in rows:
            collector.add(row, json.dumps(row, ensure_ascii=False))
        results.append(collector.result()["token_length"])
    exact, streamed, sampled = results
    assert exact == streamed and exact["sampled_rows"] is None and exact["max"] == 50
    assert sampled["sampled_rows"] == 500 and abs(sampled["p50"] - exact["p50"]) <= 5
