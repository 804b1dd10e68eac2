"""Inputs that used to crash `kmq select` (issue 9, items 9 and 14): exit 2, one line on stderr, nothing written.

Each case runs the real command line on a small dolly slice; "nothing written" means the folder holds
exactly the files the test made (no subset, no run directory, no staging or temporary files).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmq.cli.main import main

N = 30


@pytest.fixture
def rows(datakit) -> list[str]:
    return (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text(encoding="utf-8").splitlines()[:N]


def jsonl(rows: list[str]) -> bytes:
    return ("\n".join(rows) + "\n").encode()


def with_field(rows: list[str], i: int, text: str) -> list[str]:
    """``rows`` with ``text`` (raw JSON members) added to the object on row ``i``."""
    rows = list(rows)
    rows[i] = rows[i][:-1] + ", " + text + "}"
    return rows


def surrogate_in_content(rows: list[str], i: int = 4) -> list[str]:
    record = json.loads(rows[i])
    record["messages"][0]["content"] += " \ud800"
    return [*rows[:i], json.dumps(record), *rows[i + 1 :]]


def gz_truncated(data: bytes) -> bytes:
    packed = gzip.compress(data)
    return packed[: len(packed) // 2]


def json_array(rows: list[str]) -> bytes:
    return ("[\n" + ",\n".join(rows) + "\n]").encode()


DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJ = '{"a":' * 99_999 + "1" + "}" * 99_999
NO_JSON = "(NaN or a number out of float range), and JSON has no NaN or Infinity"
CASES = [  # (pool name, pool bytes from rows, --out name, expected message)
    ("pool.jsonl.gz", jsonl, "out.jsonl", "pool.jsonl.gz is not gzip-compressed"),
    ("pool.json.gz", json_array, "out.json", "pool.json.gz is not gzip-compressed"),
    ("pool.jsonl.gz", lambda r: gz_truncated(jsonl(r)), "out.jsonl", "pool.jsonl.gz is truncated"),
    ("pool.json.gz", lambda r: gz_truncated(json_array(r)), "out.jsonl", "pool.json.gz is truncated"),
    ("pool.jsonl", lambda r: jsonl(with_field(r, 7, f'"d": {DEEP}')), "out.jsonl", "line 8: JSON nested 100001"),
    ("pool.jsonl", lambda r: jsonl(with_field(r, 7, f'"a": {DEEP_OBJ}')), "out.jsonl", "line 8: JSON nested 100000"),
    ("pool.json", lambda r: json_array(with_field(r, 7, f'"d": {DEEP}')), "out.jsonl", "line 9: JSON nested 100002"),
    ("pool.jsonl", lambda r: jsonl(surrogate_in_content(r)), "out.parquet", "record 4 (id 'dolly_3k-0004') of "),
    ("pool.jsonl", lambda r: jsonl(with_field(r, 3, '"x": [1e400]')), "out.json", f"field 'x'[0] is inf {NO_JSON}"),
    ("pool.jsonl", lambda r: jsonl(with_field(r, 3, '"x": {"y": NaN}')), "out.json", f"field 'x'.y is nan {NO_JSON}"),
    ("pool.json", lambda r: json_array(with_field(r, 3, '"x": -1e999')), "out.jsonl", f"'x' is -inf {NO_JSON}"),
]
IDS = ["jsonl.gz-not-gzip", "json.gz-not-gzip", "jsonl.gz-truncated", "json.gz-truncated", "deep-list", "deep-object",
       "deep-in-json", "surrogate-to-parquet", "1e400-to-json", "NaN-to-json", "-1e999-json-to-jsonl"]  # fmt: skip


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize(("name", "body", "out", "message"), CASES, ids=IDS)
def test_crash_became_one_line_exit_2_nothing_written(rows, tmp_path, capsys, name, body, out, message):
    (tmp_path / name).write_bytes(body(rows))
    before = listing(tmp_path)
    args = ["select", str(tmp_path / name), "--budget", str(N), "--out", str(tmp_path / out), "--embedder", "hashing"]
    assert main([*args, "-q"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "internal error" not in err, err
    assert listing(tmp_path) == before  # no subset, no run directory, no staging folder


def test_npz_saved_as_npy(rows, tmp_path, capsys):
    (tmp_path / "pool.jsonl").write_bytes(jsonl(rows))
    np.savez(tmp_path / "e", emb=np.ones((N, 8), dtype=np.float32))
    (tmp_path / "e.npz").rename(tmp_path / "e.npy")
    before = listing(tmp_path)
    args = ["select", str(tmp_path / "pool.jsonl"), "--budget", "5", "--out", str(tmp_path / "s.jsonl")]
    assert main([*args, "--embedder", f"npy:{tmp_path / 'e.npy'}", "-q"]) == 2  # was AttributeError: NpzFile.ndim
    err = capsys.readouterr().err
    assert "e.npy is a NumPy .npz archive (np.savez), not a .npy array" in err and err.count("\n") == 1
    assert listing(tmp_path) == before


def test_zero_column_embeddings_exit_2_instead_of_sigfpe(rows, tmp_path):
    (tmp_path / "pool.jsonl").write_bytes(jsonl(rows))
    np.save(tmp_path / "e.npy", np.zeros((N, 0), dtype=np.float32))
    before = listing(tmp_path)
    cmd = [sys.executable, "-m", "kmq.cli.main", "select", str(tmp_path / "pool.jsonl"), "--budget", "5",
           "--out", str(tmp_path / "s.jsonl"), "--embedder", f"npy:{tmp_path / 'e.npy'}", "-q"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KMQ_DEBUG": "0"}, timeout=300)
    assert res.returncode == 2, res  # was -8 (SIGFPE inside faiss)
    assert res.stderr.count("\n") == 1 and "got shape (30, 0) (no columns)" in res.stderr
    assert listing(tmp_path) == before


def run_ok(tmp_path: Path, pool: Path, budget: int, out: str, *extra: str) -> Path:
    target = tmp_path / out
    assert main(["select", str(pool), "--budget", str(budget), "--out", str(target), *extra, "-q"]) == 0
    return target


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_tiny_pools_work_with_default_settings(rows, tmp_path, capsys, n):
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(jsonl(rows[:n]))
    out = run_ok(tmp_path, pool, n, "s.jsonl", "--embedder", "hashing")  # asked for a --clusters nobody passed
    assert sorted(out.read_text().splitlines()) == sorted(rows[:n])
    assert capsys.readouterr().err == ""


def test_one_line_wrapped_json_is_read_as_its_array(rows, tmp_path):
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps({"data": [json.loads(r) for r in rows]}))
    out = run_ok(tmp_path, pool, 10, "s.json", "--embedder", "hashing")  # was one record: the wrapper
    picked = json.loads(out.read_text())["data"]
    assert len(picked) == 10 and all(r in [json.loads(x) for x in rows] for r in picked)


def test_json_lines_copies_keep_what_json_cannot_hold(rows, tmp_path):
    pool = tmp_path / "pool.jsonl"
    odd = with_field(surrogate_in_content(rows), 3, '"x": 1e400')
    pool.write_bytes(jsonl(odd))
    out = run_ok(tmp_path, pool, N, "s.jsonl", "--embedder", "hashing")
    assert sorted(out.read_text().splitlines()) == sorted(odd)  # the original bytes, 1e400 and \ud800 included


def test_lone_surrogate_in_json_output_is_kept_as_its_escape(rows, tmp_path):
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(jsonl(surrogate_in_content(rows)))
    out = run_ok(tmp_path, pool, N, "s.json", "--embedder", "hashing")  # was UnicodeEncodeError
    text = out.read_bytes().decode("utf-8")
    assert text.count("\\ud800") == 1
    expected = sorted(json.dumps(json.loads(r)) for r in surrogate_in_content(rows))
    assert sorted(map(json.dumps, json.loads(text))) == expected


@pytest.mark.slow
def test_lone_surrogate_with_the_minilm_encoder(rows, tmp_path):
    pytest.importorskip("sentence_transformers")
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(jsonl(surrogate_in_content(rows[:8])))
    out = run_ok(tmp_path, pool, 8, "s.json", "--embedder", "minilm")  # the tokenizer raised TypeError
    text = out.read_bytes().decode("utf-8")  # valid UTF-8: the surrogate is kept as its \\ud800 escape
    assert "\\ud800" in text and sorted(json.dumps(r) for r in json.loads(text)) == sorted(
        json.dumps(json.loads(r)) for r in surrogate_in_content(rows[:8])
    )


def test_id_with_a_lone_surrogate(rows, tmp_path):
    record = json.loads(rows[2])
    record["id"] = "dolly-\ud800"
    pool = tmp_path / "pool.jsonl"
    pool.write_bytes(jsonl([*rows[:2], json.dumps(record), *rows[3:]]))
    out = run_ok(tmp_path, pool, 10, "s.jsonl", "--embedder", "hashing")  # selection.parquet raised UnicodeEncodeError
    assert len(out.read_text().splitlines()) == 10
