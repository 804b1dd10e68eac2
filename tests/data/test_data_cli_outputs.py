"""``kmq select --out``: the container written is the one asked for (issue 11, "Outputs are what the user asked for").

Through ``python -m kmq.cli.main select`` (a fresh interpreter, as a user runs it) where the point is the whole
command, and through ``main()`` in this process where only the written bytes matter.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kmq.cli.main import main
from kmq.data import read_pool


def kmq_select(pool: Path, out: str, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kmq.cli.main", "select", str(pool), "--budget", "20", "--out", out,
           "--embedder", "hashing", *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KMQ_DEBUG": "0"}, timeout=300)


def picked(out: str | Path) -> list[int]:
    """The pool rows the subset holds, in the pool's order (the subset's default order)."""
    return sorted(pq.read_table(Path(f"{Path(out)}.kmq-run") / "selection.parquet").column("pool_index").to_pylist())


def dolly(datakit: Path, n: int = 200) -> list[dict]:
    with open(datakit / "dolly_3k/dolly_3k.jsonl", encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def test_save_to_disk_pool_gives_a_folder_load_from_disk_reads(datakit, tmp_path):
    datasets = pytest.importorskip("datasets")
    records = dolly(datakit)
    pool = tmp_path / "hfpool"
    datasets.Dataset.from_list(records).save_to_disk(str(pool))
    for out in (f"{tmp_path / 'sub'}/", str(tmp_path / "plain")):  # with and without the trailing slash
        res = kmq_select(pool, out, "-q")
        assert res.returncode == 0, res.stderr
        assert Path(out).is_dir() and "as hf_disk" in res.stdout
        back = datasets.load_from_disk(out)
        assert back.to_list() == [records[i] for i in picked(out)] and len(back) == 20
        assert back.features == datasets.load_from_disk(str(pool)).features
    assert sorted(p.name for p in pool.iterdir()) == ["data-00000-of-00001.arrow", "dataset_info.json", "state.json"]


def test_unknown_extension_is_refused_listing_the_supported_ones(datakit, tmp_path):
    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in dolly(datakit)), encoding="utf-8")
    res = kmq_select(src, str(tmp_path / "subset.txt"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    error = res.stderr.strip().splitlines()[-1]
    assert "unknown extension '.txt'; supported: .jsonl, .ndjson, .json (each optionally .gz), .parquet, .csv" in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pool.jsonl"]  # no subset.txt, no run directory


def test_unknown_extension_is_refused_before_any_work(datakit, tmp_path):
    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in dolly(datakit)), encoding="utf-8")
    cache = Path(os.environ["KMQ_CACHE_DIR"])
    assert kmq_select(src, str(tmp_path / "subset.txt")).returncode == 2
    assert not cache.exists() or not any(cache.rglob("*"))  # nothing embedded, scored or clustered


def test_any_pool_with_a_trailing_slash_gives_a_folder(datakit, tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    records = dolly(datakit)
    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = f"{tmp_path / 'sub'}/"
    assert main(["select", str(src), "--budget", "20", "--out", out, "--embedder", "hashing", "-q"]) == 0
    assert datasets.load_from_disk(out).to_list() == [records[i] for i in picked(out)]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_keeps_the_input_line_endings(datakit, tmp_path, capsys, newline):
    records = json.loads((datakit / "alpaca_gpt4_demo/orig/alpaca_en_demo.json").read_bytes())[:200]
    assert not any("\r" in value for r in records for value in r.values())
    src = tmp_path / "pool.csv"
    with open(src, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["instruction", "input", "output"], lineterminator=newline)
        writer.writeheader()
        writer.writerows(records)
    out = tmp_path / "subset.csv"
    assert main(["select", str(src), "--budget", "20", "--out", str(out), "--embedder", "hashing", "-q"]) == 0
    expected = io.StringIO(newline="")
    writer = csv.DictWriter(expected, fieldnames=["instruction", "input", "output"], lineterminator=newline)
    writer.writeheader()
    writer.writerows(records[i] for i in picked(out))
    assert out.read_bytes() == expected.getvalue().encode()
    assert read_pool(out).records(range(20)) == [records[i] for i in picked(out)]
