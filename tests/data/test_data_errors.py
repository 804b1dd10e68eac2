"""Every reading error is one actionable line that names the file, the line or record, and the field."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from kmq.data import read_pool
from kmq.errors import DataFormatError, EmptyPoolError, InvalidParameterError, KmqError, MissingArtifactError


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


GOOD = '{"messages": [{"role": "user", "content": "hi"}]}\n'


@pytest.mark.parametrize(
    ("name", "body", "error", "message"),
    [
        ("p.jsonl", GOOD + "\n" + '{"messages": [}\n', DataFormatError, r"p\.jsonl line 3, column 15: invalid JSON"),
        ("p.jsonl", GOOD + "[1, 2]\n", DataFormatError, "p.jsonl line 2: the record is list; expected a JSON object"),
        (
            "p.jsonl",
            "[\n" + GOOD + "]\n",
            DataFormatError,
            r"line 1, column 2: .* looks like a JSON array: name it \.json",
        ),
        ("p.jsonl", b'{"prompt": "\xff"}\n', DataFormatError, "p.jsonl line 1: not valid UTF-8 JSON"),
        (
            "p.jsonl",
            GOOD + '{"id": 9, "messages": [{"role": "user", "content": ["x"]}]}\n',
            DataFormatError,
            r"p\.jsonl line 2 \(id 9\), messages format: field 'messages'\[0\]\.content is list; expected a string\.",
        ),
        (
            "p.jsonl",
            GOOD + '{"prompt": "x"}\n',
            DataFormatError,
            "line 2, messages format: field 'messages' is missing",
        ),
        ("p.jsonl", "", EmptyPoolError, r"p\.jsonl has no records"),
        ("p.jsonl", "\n  \n", EmptyPoolError, "has no records"),
        ("p.json", "", EmptyPoolError, r"p\.json is empty"),
        ("p.json", "[]", EmptyPoolError, "has no records"),
        (
            "p.json",
            '[{"prompt": "a"},\n {"prompt": }]',
            DataFormatError,
            r"p\.json: invalid JSON at line 2, column 13",
        ),
        (
            "p.json",
            '[{"prompt": "a"}, "b"]',
            DataFormatError,
            "p.json record 1: the record is str; expected a JSON object",
        ),
        (
            "p.json",
            '{\n "canary": "x",\n "examples": []\n}',
            DataFormatError,
            r"keys \['canary', 'examples'\]; kmq reads",
        ),
        ("p.json", '"text"', DataFormatError, "top-level JSON value is str; expected an array of records"),
        ("p.csv", "", EmptyPoolError, r"p\.csv is empty"),
        ("p.csv", "prompt,completion\n", EmptyPoolError, "has no records"),
        (
            "p.csv",
            "prompt,completion\na,b\nc,d,e\n",
            DataFormatError,
            r"p\.csv line 3: the row has a different number",
        ),
        ("p.csv", "prompt,prompt\na,b\n", DataFormatError, "line 1: the header repeats a column name"),
        ("p.csv", "foo,bar\n1,2\n", DataFormatError, r"fields found: \['foo', 'bar'\]; supported: messages"),
        ("p.parquet", "not parquet", DataFormatError, r"p\.parquet: not a readable Parquet file"),
        ("p.txt", "x", DataFormatError, r"unsupported file type \.txt; supported: \.jsonl, \.ndjson, \.json"),
        ("p.csv.gz", "x", DataFormatError, r"unsupported file type \.csv\.gz"),
    ],
)
def test_read_errors(tmp_path, name, body, error, message):
    path = write(tmp_path / name, body)
    with pytest.raises(error, match=message) as info:
        read_pool(path)
    text = str(info.value)
    assert "\n" not in text and str(tmp_path) in text
    assert isinstance(info.value, KmqError)


def test_gzip_errors_count_decompressed_lines(tmp_path):
    path = write(tmp_path / "p.jsonl.gz", gzip.compress((GOOD * 3 + "{oops}\n").encode()))
    with pytest.raises(DataFormatError, match=r"p\.jsonl\.gz line 4, column 2: invalid JSON"):
        read_pool(path)


def test_detection_uses_first_record_and_later_records_must_match(tmp_path):
    rows = [{"instruction": "a", "output": "b"}, {"prompt": "c", "completion": "d"}]
    path = write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataFormatError, match=r"line 2, alpaca format: field 'instruction' is missing .*\['prompt'"):
        read_pool(path)


def test_missing_paths_and_bad_parameters(tmp_path):
    with pytest.raises(MissingArtifactError, match="Pool not found"):
        read_pool(tmp_path / "absent.jsonl")
    assert issubclass(MissingArtifactError, FileNotFoundError)
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataFormatError, match="is a directory but not a Hugging Face save_to_disk folder"):
        read_pool(tmp_path / "folder")
    path = write(tmp_path / "p.jsonl", GOOD)
    with pytest.raises(InvalidParameterError, match=r"'format' parameter of read_pool must be one of \['auto'"):
        read_pool(path, format="chatml")
