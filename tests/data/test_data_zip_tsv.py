"""Inputs (issue 14): a ``.zip`` holding one data file (the datakit's mbpp ships so) and ``.tsv`` files.

A zip pool's subset is written in the inner file's format (kmq writes no zip); a TSV pool's subset is TSV.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kmq.data import output_container, read_pool, source_container, write_subset
from kmq.errors import DataFormatError, InvalidParameterError

MBPP = "mbpp_test/orig/mbpp.test.zip"
MBPP_FIELDS = {"prompt": "text", "response": "code"}


def mbpp_lines(datakit: Path) -> list[bytes]:
    with zipfile.ZipFile(datakit / MBPP) as archive:
        return archive.read("mbpp.test.jsonl").splitlines()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_mbpp_zip_reads_as_its_jsonl(datakit, tmp_path):
    pool = read_pool(datakit / MBPP, fields=MBPP_FIELDS)
    lines = mbpp_lines(datakit)
    assert (len(pool), pool.container, source_container(datakit / MBPP)) == (500, "jsonl.zip", "jsonl.zip")
    assert pool.records([0, 499]) == [json.loads(lines[0]), json.loads(lines[499])]
    assert pool.messages[0][0] == {"role": "user", "content": json.loads(lines[0])["text"]}
    plain = tmp_path / "mbpp.test.jsonl"
    plain.write_bytes(b"\n".join(lines) + b"\n")
    assert read_pool(plain, fields=MBPP_FIELDS).fingerprint == pool.fingerprint  # the content, not the wrapping


def test_mbpp_subset_is_written_as_jsonl(datakit, tmp_path):
    pool = read_pool(datakit / MBPP, fields=MBPP_FIELDS)
    lines = mbpp_lines(datakit)
    assert output_container(pool, tmp_path / "sub") == "jsonl"
    out = write_subset(pool, [499, 3, 0], tmp_path / "sub")
    assert out.read_bytes().splitlines() == [lines[499], lines[3], lines[0]]  # the original line bytes
    table = pq.read_table(write_subset(pool, [3], tmp_path / "sub.parquet"))
    assert table.to_pylist() == [json.loads(lines[3])]
    with pytest.raises(InvalidParameterError, match=r"kmq writes no \.zip.*sub\.jsonl"):
        write_subset(pool, [3], tmp_path / "sub.zip")
    assert not (tmp_path / "sub.zip").exists()


def test_zip_of_each_inner_format(tmp_path):
    records = [{"instruction": "Add 2 and 3.", "output": "5"}, {"instruction": "Say hi.", "output": "hi"}]
    table = pa.Table.from_pylist(records)
    parquet = tmp_path / "p.parquet"
    pq.write_table(table, parquet)
    inners = {
        "d/pool.json": json.dumps(records, indent=4).encode() + b"\n",
        "pool.csv": b"instruction,output\r\nAdd 2 and 3.,5\r\nSay hi.,hi\r\n",
        "pool.tsv": b"instruction\toutput\nAdd 2 and 3.\t5\nSay hi.\thi\n",
        "pool.parquet": parquet.read_bytes(),
    }
    for name, data in inners.items():
        zipped = make_zip(tmp_path / f"{Path(name).suffix[1:]}.zip", {name: data, "__MACOSX/._x.json": b"junk",
                                                                         ".hidden.jsonl": b"{}"})  # fmt: skip
        pool = read_pool(zipped)
        inner = Path(name).suffix[1:]
        assert (pool.container, pool.format, pool.records([0, 1])) == (f"{inner}.zip", "alpaca", records), name
        out = write_subset(pool, [0, 1], tmp_path / f"sub_{inner}")
        if inner == "parquet":
            assert pq.read_table(out).to_pylist() == records
        else:
            assert out.read_bytes() == data  # the inner file's own layout: indent, line ending, delimiter


def test_zip_with_several_candidates_or_none_lists_them(tmp_path):
    two = make_zip(tmp_path / "two.zip", {"a.jsonl": b'{"prompt": "x"}\n', "b/c.csv": b"prompt\nx\n", "README": b""})
    with pytest.raises(DataFormatError, match=r"two\.zip holds 2 files kmq could read: \['a\.jsonl', 'b/c\.csv'\]"):
        read_pool(two)
    assert source_container(two) is None
    none = make_zip(tmp_path / "none.zip", {"README.txt": b"hello", "data.jsonl.gz": b""})
    with pytest.raises(DataFormatError, match=r"none\.zip holds no file kmq can read.*'README\.txt'"):
        read_pool(none)


def test_a_file_named_zip_that_is_not_one(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b'{"prompt": "x"}\n')
    with pytest.raises(DataFormatError, match=r"bad\.zip: not a readable zip file"):
        read_pool(bad)


def test_errors_inside_a_zip_name_the_member_and_line(tmp_path):
    zipped = make_zip(tmp_path / "p.zip", {"inner.jsonl": b'{"prompt": "x"}\n{"prompt": \n'})
    with pytest.raises(DataFormatError, match=r"p\.zip \(inner\.jsonl\) line 2, column \d+: invalid JSON"):
        read_pool(zipped)


def test_tsv_pool_round_trip(tmp_path):
    data = b'instruction\toutput\nAdd 2 and 3.\t5\nSay "hi", twice.\t"a\ttab"\n'
    path = tmp_path / "pool.tsv"
    path.write_bytes(data)
    pool = read_pool(path)
    assert (pool.container, source_container(path)) == ("tsv", "tsv")
    assert pool.records([1]) == [{"instruction": 'Say "hi", twice.', "output": "a\ttab"}]
    assert output_container(pool, tmp_path / "sub") == "tsv"
    assert write_subset(pool, [0], tmp_path / "sub.tsv").read_bytes() == b"instruction\toutput\nAdd 2 and 3.\t5\n"
    again = read_pool(write_subset(pool, [0, 1], tmp_path / "sub.tsv"))  # a quote in a cell is quoted CSV-style
    assert again.records([0, 1]) == pool.records([0, 1])
    assert write_subset(pool, [0], tmp_path / "sub.csv").read_bytes() == b"instruction,output\nAdd 2 and 3.,5\n"
    with pytest.raises(InvalidParameterError, match="gzip is supported for"):
        write_subset(pool, [0], tmp_path / "sub.tsv.gz")


def test_csv_pool_written_as_tsv(datakit, tmp_path):
    pool = read_pool(datakit / "truthfulqa/orig/TruthfulQA.csv", fields={"prompt": "Question"})
    out = write_subset(pool, [0, 5], tmp_path / "sub.tsv")
    assert read_pool(out, fields={"prompt": "Question"}).records([0, 1]) == pool.records([0, 5])


def test_tsv_row_with_missing_cells_names_the_line(tmp_path):
    path = tmp_path / "pool.tsv"
    path.write_bytes(b"prompt\tresponse\nx\ty\nonly one\n")
    with pytest.raises(DataFormatError, match=r"pool\.tsv line 3: the row has a different number of cells.*tabs"):
        read_pool(path)


def test_cli_select_on_the_mbpp_zip(datakit, tmp_path):
    out = tmp_path / "subset"
    cmd = [sys.executable, "-m", "kmq.cli.main", "select", str(datakit / MBPP), "--prompt-field", "text",
           "--response-field", "code", "--budget", "40", "--out", str(out), "--embedder", "hashing", "-q"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KMQ_DEBUG": "0"}, timeout=300)
    assert done.returncode == 0, done.stderr
    picked = sorted(pq.read_table(Path(f"{out}.kmq-run") / "selection.parquet").column("pool_index").to_pylist())
    lines = mbpp_lines(datakit)
    assert len(picked) == 40
    assert out.read_bytes().splitlines() == [lines[i] for i in picked]  # the input's records, as JSON Lines
