"""In-memory pools: lists and tuples of dicts, pandas DataFrames, datasets.Dataset and DatasetDict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmq.data import read_pool, source_container, write_subset
from kmq.errors import DataFormatError, EmptyPoolError, InvalidParameterError, MissingArtifactError


def dolly(datakit: Path, n: int = 300) -> list[dict]:
    with open(datakit / "dolly_3k/dolly_3k.jsonl", encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def alpaca(datakit: Path, n: int = 300) -> list[dict]:
    return json.loads((datakit / "alpaca_gpt4_demo/orig/alpaca_en_demo.json").read_bytes())[:n]


def test_list_of_dicts_is_a_pool_of_those_records(datakit):
    records = dolly(datakit)
    pool = read_pool(records)
    assert (pool.source, pool.container, pool.format) == ("<list of 300 records>", "memory", "messages")
    assert pool.ids[:2] == ["dolly_3k-0000", "dolly_3k-0001"] and pool.id_source == "field"
    assert pool.records(range(300)) == records and pool.records([7])[0] is records[7]
    assert read_pool(tuple(records)).source == "<tuple of 300 records>"


def test_fingerprint_is_the_content(datakit):
    records = dolly(datakit, 50)
    pool = read_pool(records)
    assert read_pool(json.loads(json.dumps(records))).fingerprint == pool.fingerprint  # an equal list, not the same
    assert read_pool(tuple(records)).fingerprint == pool.fingerprint
    changed = [dict(r) for r in records]
    changed[49] = {**changed[49], "category": "other"}
    assert read_pool(changed).fingerprint != pool.fingerprint
    assert read_pool(records[::-1]).fingerprint != pool.fingerprint
    assert read_pool(records, format="messages").fingerprint == pool.fingerprint  # what auto detects


def test_dataframe_rows_are_records_and_missing_values_are_none(datakit):
    pd = pytest.importorskip("pandas")
    records = alpaca(datakit)
    records[3] = {"instruction": records[3]["instruction"], "output": records[3]["output"]}  # no "input"
    frame = pd.DataFrame(records)
    pool = read_pool(frame)
    assert (pool.source, pool.container, pool.format, len(pool)) == ("<DataFrame 300x3>", "memory", "alpaca", 300)
    expected = [{"input": None, **r} if "input" not in r else r for r in records]
    assert pool.records(range(300)) == expected and pool.records([3])[0]["input"] is None
    assert pool.messages[3] == [{"role": "user", "content": records[3]["instruction"].strip()},
                                {"role": "assistant", "content": records[3]["output"]}]  # fmt: skip
    assert read_pool(pd.DataFrame(records)).fingerprint == pool.fingerprint
    assert read_pool(frame.iloc[::-1]).fingerprint != pool.fingerprint


def test_dataframe_with_repeated_columns_is_refused():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame([["a", "b"]], columns=["prompt", "prompt"])
    with pytest.raises(DataFormatError, match=r"<DataFrame 1x2>: the columns \['prompt'\] occur more than once"):
        read_pool(frame)


def test_datasets_dataset_and_dataset_dict(datakit):
    datasets = pytest.importorskip("datasets")
    records = dolly(datakit)
    ds = datasets.Dataset.from_list(records)
    pool = read_pool(ds)
    assert (pool.source, pool.container, len(pool)) == ("<datasets.Dataset 300 rows>", "memory", 300)
    assert pool.records(range(300)) == records == ds.to_list()
    assert pool.fingerprint == read_pool(records).fingerprint  # the same content as the list
    dd = datasets.DatasetDict({"train": ds.select(range(10)), "test": ds.select(range(10, 15))})
    assert read_pool(dd).source == "<datasets.DatasetDict['train'] 10 rows>"
    assert read_pool(dd, split="test").records(range(5)) == records[10:15]
    with pytest.raises(DataFormatError, match=r"no split 'dev'; splits: \['train', 'test'\]"):
        read_pool(dd, split="dev")
    with pytest.raises(EmptyPoolError, match=r"<datasets.Dataset 0 rows> has no records"):
        read_pool(ds.select([]))


def test_writing_an_in_memory_pool_needs_a_format(datakit, tmp_path):
    records = dolly(datakit, 20)
    pool = read_pool(records)
    with pytest.raises(InvalidParameterError, match=r"no extension, and an in-memory pool has no file format"):
        write_subset(pool, [0], tmp_path / "x")
    assert list(tmp_path.iterdir()) == []
    write_subset(pool, [3, 1], tmp_path / "x.jsonl")
    assert read_pool(tmp_path / "x.jsonl").records([0, 1]) == [records[3], records[1]]
    write_subset(pool, [3, 1], tmp_path / "x", container="json")
    assert json.loads((tmp_path / "x").read_text(encoding="utf-8")) == [records[3], records[1]]


def test_in_memory_dataset_to_a_folder_keeps_its_features(datakit, tmp_path):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(dolly(datakit, 20)).cast_column("category", datasets.ClassLabel(
        names=sorted({r["category"] for r in dolly(datakit, 20)})
    ))  # fmt: skip
    pool = read_pool(ds)
    write_subset(pool, [4, 2, 2], str(tmp_path / "sub") + "/")
    back = datasets.load_from_disk(str(tmp_path / "sub"))
    assert back.features == ds.features and back.to_list() == [ds[4], ds[2], ds[2]]


def test_what_is_not_a_pool_is_said(tmp_path):
    with pytest.raises(InvalidParameterError, match=r"'source' parameter of read_pool must be a path.*Got builtins"):
        read_pool(42)
    with pytest.raises(DataFormatError, match=r"<list of 2 records> record 1: the record is str; expected a JSON"):
        read_pool([{"prompt": "a"}, "b"])
    with pytest.raises(EmptyPoolError, match=r"<list of 0 records> has no records"):
        read_pool([])
    with pytest.raises(MissingArtifactError, match=r"<list of 300 records> names an in-memory pool .* Pass the pool"):
        read_pool("<list of 300 records>")  # what a config.yaml of an in-memory run holds


def test_source_container_without_reading(datakit, tmp_path):
    assert source_container(datakit / "lima/orig/train.jsonl") == "jsonl"
    assert source_container(datakit / "humaneval/orig/HumanEval.jsonl.gz") == "jsonl.gz"
    assert source_container(datakit / "code_alpaca_2k/orig/code_alpaca_2k.json") == "json"
    assert source_container([{"prompt": "a"}]) == "memory"
    assert source_container("owner/name") == "hf_hub"
    assert source_container(tmp_path / "missing.jsonl") is None and source_container(tmp_path) is None
    (tmp_path / "state.json").write_text("{}")
    assert source_container(tmp_path) == "hf_disk"
