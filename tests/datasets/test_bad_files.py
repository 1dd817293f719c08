"""The bad-file battery through the real upload and processing path: each
gives a clear error and leaves nothing half-stored."""
from __future__ import annotations

import gzip
import json

import pytest

from tests.datasets.conftest import jsonl_bytes, upload
from webapp.datasets.models import Dataset
from webapp.datasets.services import dataset_create_from_upload, dataset_process

pytestmark = pytest.mark.django_db
MiB = 1024 * 1024


def _bomb() -> bytes:
    line = (json.dumps({"input": "a" * 1000, "output": "b"}) + "\n").encode()
    return gzip.compress(line * 20_000)


@pytest.mark.parametrize(
    ("name", "data", "on_error", "expected"),
    [
        ("empty.jsonl", b" \n\n", "skip", "the file holds no rows"),
        ("image.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "skip", "the file is binary"),
        ("latin.jsonl", bytes([0x80, 0x81, 0xFF, 0xFE, 0xC0, 0xC1] * 50), "skip", "neither UTF-8 nor GB18030"),
        ("wrong.jsonl", jsonl_bytes([{"question": "q", "answer": "a"}]), "skip", "no instruction format matches these rows"),
        ("mixed.jsonl", jsonl_bytes([{"input": "a", "output": "b"}, {"prompt": "x", "chosen": "y", "rejected": "z"}]), "reject",
         "line 2: missing field(s) input, output of format input_output"),
        ("truncated.jsonl", jsonl_bytes([{"input": "a", "output": "b"}]) + b'{"input": "c", "out', "reject", "line 2: bad JSON"),
        ("bomb.jsonl.gz", _bomb(), "skip", "decompression ratio over 100:1"),
        ("broken.jsonl.gz", gzip.compress(jsonl_bytes([{"input": "a", "output": "b"}] * 200))[:-40], "skip", "gzip stream is corrupt or truncated"),
    ],
)
def test_bad_file_fails_with_a_clear_error_and_no_files(alice, media_root, name, data, on_error, expected) -> None:
    dataset = dataset_create_from_upload(owner=alice, name="bad", kind="instruction", upload=upload(name, data), on_error=on_error)
    dataset = dataset_process(dataset_id=dataset.pk)
    assert dataset.status == "failed"
    assert expected in dataset.error
    assert not (media_root / dataset.folder).exists()  # no orphan files


def test_a_20_mib_line_is_a_bad_row_not_a_crash(alice, media_root) -> None:
    data = jsonl_bytes([{"input": "a", "output": "b"}]) + b'{"input": "' + b"x" * (20 * MiB) + b'", "output": "y"}\n'
    dataset = dataset_create_from_upload(owner=alice, name="big", kind="instruction", upload=upload("big.jsonl", data))
    dataset = dataset_process(dataset_id=dataset.pk)
    assert dataset.status == "ready" and dataset.rows == 1
    assert dataset.errors == [{"line": 2, "reason": "line is over the size limit of 4 MiB"}]


def test_gbk_upload_is_converted(alice, media_root) -> None:
    data = jsonl_bytes([{"input": "冰箱多少钱", "output": "八百元"}]).decode().encode("gbk")
    dataset = dataset_process(dataset_id=dataset_create_from_upload(owner=alice, name="g", kind="instruction", upload=upload("g.jsonl", data)).pk)
    assert dataset.status == "ready" and dataset.encoding == "gb18030"
    canonical = json.loads((media_root / dataset.folder / "canonical.jsonl").read_text(encoding="utf-8"))
    assert canonical["messages"][1]["content"] == "八百元"


def test_path_in_the_filename_is_not_followed(api_client, alice_key, media_root, tmp_path) -> None:
    response = api_client.post(
        "/api/datasets/", {"file": upload("../../etc/passwd", "root:x:0:0".encode()), "kind": "corpus", "txt_mode": "lines"},
        format="multipart", HTTP_AUTHORIZATION=f"Bearer {alice_key}",
    )
    assert response.status_code == 201
    dataset = Dataset.objects.get()
    assert dataset.original_name == "passwd" and dataset.name == "passwd"
    stored = media_root / dataset.folder / "original"
    assert stored.read_bytes() == b"root:x:0:0" and stored.resolve().is_relative_to(media_root.resolve())


def test_over_the_size_limit_is_refused_and_nothing_is_stored(api_client, alice_key, media_root, settings) -> None:
    settings.DATASET_MAX_UPLOAD_BYTES = 1024
    response = api_client.post(
        "/api/datasets/", {"file": upload("big.txt", b"x" * 2048), "kind": "corpus"}, format="multipart",
        HTTP_AUTHORIZATION=f"Bearer {alice_key}",
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "the file is over the upload limit of 0 MiB"
    assert response.json()["error"]["param"] == "file"
    assert not Dataset.objects.exists() and not any(p.is_file() for p in media_root.rglob("*"))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "poems"}, "kind: \"poems\" is not a valid choice."),
        ({"kind": "instruction", "format": "hh"}, "format 'hh' is not a instruction format"),
        ({"kind": "corpus", "on_error": "ignore"}, "on_error: \"ignore\" is not a valid choice."),
    ],
)
def test_bad_options_are_400_with_the_field(api_client, alice_key, media_root, fields, message) -> None:
    response = api_client.post(
        "/api/datasets/", {"file": upload("a.jsonl", b'{"text": "a"}\n'), **fields}, format="multipart",
        HTTP_AUTHORIZATION=f"Bearer {alice_key}",
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]
    assert not Dataset.objects.exists()
