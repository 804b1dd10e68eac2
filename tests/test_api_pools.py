"""``kmq.select`` on pools held in memory: a list of dicts, a pandas DataFrame, a ``datasets.Dataset`` (issue 11).

The written subset holds the input records themselves; the run's pool is named for what it was; equal
inputs share cache entries; a subset of an in-memory pool needs an explicit format.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

import kmq
from kmq.data import read_pool
from kmq.errors import InvalidParameterError


def dolly(datakit: Path, n: int = 300) -> list[dict]:
    with open(datakit / "dolly_3k/dolly_3k.jsonl", encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def as_kind(records: list[dict], kind: str):
    if kind == "list":
        return records, "<list of 300 records>"
    if kind == "DataFrame":
        pd = pytest.importorskip("pandas")
        return pd.DataFrame(records), "<DataFrame 300x4>"
    datasets = pytest.importorskip("datasets")
    return datasets.Dataset.from_list(records), "<datasets.Dataset 300 rows>"


@pytest.mark.parametrize("kind", ["list", "DataFrame", "Dataset"])
def test_select_from_memory_writes_the_input_records(datakit, tmp_path, kind):
    records = dolly(datakit)
    pool, name = as_kind(records, kind)
    out = tmp_path / "subset.jsonl"
    sel = kmq.select(pool, budget=30, embedder="hashing", out=out)
    assert len(sel) == 30 and len(set(sel.indices.tolist())) == 30
    assert sel.manifest["input"]["source"] == name and sel.manifest["input"]["container"] == "memory"
    assert sel.ids == [records[i]["id"] for i in sel.indices]
    written = read_pool(out)
    assert sorted(written.records(range(30)), key=lambda r: r["id"]) == sorted(
        (records[i] for i in sel.indices), key=lambda r: r["id"]
    )


def test_equal_lists_share_cache_entries(datakit, tmp_path):
    records = dolly(datakit)
    first = kmq.select(records, budget=30, embedder="hashing", out=tmp_path / "a.jsonl")
    again = kmq.select(copy.deepcopy(records), budget=30, embedder="hashing", out=tmp_path / "b.jsonl")
    assert first.manifest["stages"]["score"]["from_cache"] is False
    assert again.manifest["stages"]["score"]["from_cache"] is True and again.manifest["stages"]["cluster"]["cached"]
    assert again.indices.tolist() == first.indices.tolist()
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_writing_a_subset_of_records_needs_an_explicit_format(datakit, tmp_path):
    records = dolly(datakit)
    sel = kmq.select(records, budget=30, embedder="hashing")
    with pytest.raises(InvalidParameterError, match=r"no extension, and an in-memory pool has no file format .*\.csv"):
        sel.write(tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
    sel.write(tmp_path / "x.parquet")
    assert sorted(read_pool(tmp_path / "x.parquet").ids) == sorted(records[i]["id"] for i in sel.indices)


def test_unknown_extension_is_refused(datakit, tmp_path):
    with pytest.raises(InvalidParameterError, match=r"unknown extension '\.txt'; supported: \.jsonl"):
        kmq.select(dolly(datakit), budget=30, embedder="hashing", out=tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []


def test_dataset_to_a_folder_is_a_save_to_disk_dataset(datakit, tmp_path):
    datasets = pytest.importorskip("datasets")
    records = dolly(datakit)
    out = f"{tmp_path / 'subset'}/"
    sel = kmq.select(datasets.Dataset.from_list(records), budget=30, embedder="hashing", out=out)
    back = datasets.load_from_disk(out)
    assert sorted(back["id"]) == sorted(records[i]["id"] for i in sel.indices)
    assert all(row == records[int(row["id"].rsplit("-", 1)[1])] for row in back)
