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


# -- broken containers, nesting, and values no output container can hold (issue 9, items 9 and 14) ----------

RECORDS = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(4)]
JSONL = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()


@pytest.mark.parametrize("name", ["p.jsonl.gz", "p.json.gz"])
def test_gz_that_is_not_gzip_or_is_truncated_or_corrupt(tmp_path, name):
    body = JSONL if name.startswith("p.jsonl") else json.dumps(RECORDS).encode()
    with pytest.raises(DataFormatError, match=r"p\.jsonl?\.gz is not gzip-compressed .*Rename it to p\.jsonl?,"):
        read_pool(write(tmp_path / name, body))
    packed = gzip.compress(body * 50)
    with pytest.raises(DataFormatError, match=r"p\.jsonl?\.gz is truncated \(the gzip stream ends early\)"):
        read_pool(write(tmp_path / name, packed[: len(packed) // 2]))
    corrupt = packed[:20] + bytes(b ^ 0xFF for b in packed[20:40]) + packed[40:]
    with pytest.raises(DataFormatError, match=r"p\.jsonl?\.gz(: corrupt gzip data| is corrupt)"):
        read_pool(write(tmp_path / name, corrupt))


@pytest.mark.parametrize(
    ("name", "deep", "message"),
    [
        ("p.jsonl", "[" * 100_000 + "]" * 100_000, r"p\.jsonl line 3: JSON nested 100001 levels deep"),
        ("p.jsonl", '{"a":' * 100_000 + "1" + "}" * 100_000, r"p\.jsonl line 3: JSON nested 100001 levels deep"),
        ("p.json", "[" * 100_000 + "]" * 100_000, r"p\.json line 5: JSON nested 100002 levels deep"),
    ],
)
def test_deep_nesting_names_the_line(tmp_path, name, deep, message):
    rows = [json.dumps(RECORDS[0]), json.dumps(RECORDS[1]), '{"prompt": "x", "deep": ' + deep + "}"]
    body = "\n".join(rows) + "\n" if name.endswith("l") else "[\n" + ",\n".join(rows[:2]) + ",\n\n" + rows[2] + "]"
    with pytest.raises(DataFormatError, match=message + r".*Flatten that record or remove it\.$"):
        read_pool(write(tmp_path / name, body))


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    deep = '{"prompt": "[[[[{{{{ \\" [[[[", "d": ' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(DataFormatError, match=r"p\.jsonl line 2: JSON nested 5001 levels deep"):
        read_pool(write(tmp_path / "p.jsonl", GOOD + deep + "\n"))


def write_errors(pool, rows, out):
    from kmq.data import write_subset

    with pytest.raises(DataFormatError) as info:
        write_subset(pool, rows, out)
    assert not out.exists() and [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("source", ["p.jsonl", "p.json"])
@pytest.mark.parametrize("literal", ["1e400", "-1e999", "NaN", "Infinity"])
def test_json_output_is_never_invalid_json(tmp_path, source, literal):
    rows = [json.dumps(r) for r in RECORDS]
    rows[2] = rows[2][:-1] + f', "meta": {{"score": [0.5, {literal}]}}}}'
    body = "\n".join(rows) + "\n" if source.endswith("l") else "[" + ",\n".join(rows) + "]"
    pool = read_pool(write(tmp_path / source, body))
    message = write_errors(pool, [0, 2], tmp_path / "out" / "s.json")
    where = f"Cannot write record 2 (id '2') of {tmp_path / source} as JSON"
    assert message.startswith(f"{where}: field 'meta'.score[1] is")
    fix = "Write to .jsonl (it copies the original lines) or .parquet" if source == "p.jsonl" else "Write to .parquet"
    assert f"JSON has no NaN or Infinity. {fix} instead, or fix the value in the input." in message
    if source == "p.json":  # re-serialised as JSON Lines too
        write_errors(pool, [2], tmp_path / "out" / "s.jsonl")
    else:  # JSON Lines to JSON Lines copies the original line
        from kmq.data import write_subset

        write_subset(pool, [2, 1], tmp_path / "s.jsonl")
        assert (tmp_path / "s.jsonl").read_text().splitlines() == [rows[2], rows[1]]


def test_parquet_and_csv_refuse_a_lone_surrogate_naming_record_and_field(tmp_path):
    rows = [dict(r) for r in RECORDS]
    rows[1]["completion"] = "a \ud800 b"
    pool = read_pool(write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
    for out, kind in [("s.parquet", "Parquet"), ("s.csv", "CSV")]:
        message = write_errors(pool, [0, 1], tmp_path / "out" / out)
        assert message.startswith(f"Cannot write record 1 (id '1') of {tmp_path / 'p.jsonl'} as {kind}: field ")
        assert "'completion' holds a lone surrogate '\\ud800'" in message and "Write to .jsonl or .json" in message


def test_id_with_a_lone_surrogate_falls_back_to_positions(tmp_path, caplog):
    rows = [{"id": "a", "prompt": "x"}, {"id": "b\ud800", "prompt": "y"}]
    pool = read_pool(write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows)))
    assert (pool.ids, pool.id_source) == (["0", "1"], "position")  # ids go to Parquet tables, which need UTF-8
    assert "'b\\ud800' is not valid text" in caplog.text
    assert pool.records([1]) == [rows[1]]  # the record itself is kept as read
