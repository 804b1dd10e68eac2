"""pool.parquet a row group at a time, record ids in Arrow, text views a batch at a time (10M rows: issue 15)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kmq
from kmq.data import Pool, read_pool
from kmq.data._ids import Ids, IdsBuilder
from kmq.data.messages import ROLES, MessagesBuilder

DOLLY = Path(__file__).resolve().parents[2] / "shared" / "datakit" / "dolly_3k" / "dolly_3k.jsonl"

_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=8) | st.sampled_from(["", "\ud800x"])
_turn = st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": _text})


@settings(max_examples=120, deadline=None)
@given(st.lists(st.lists(_turn, max_size=4), min_size=1, max_size=30), st.data())
def test_text_array_of_a_range_is_the_slice_of_the_whole(records, data):
    builder = MessagesBuilder(chunk=3)
    for turns in records:
        builder.append(turns)
    m = builder.build()
    lo = data.draw(st.integers(0, len(records)))
    hi = data.draw(st.integers(lo, len(records) + 2))
    for view in ("conversation", "prompt", "response"):
        whole = m.text_array(view)
        part = m.text_array(view, lo, hi)
        assert part.type == whole.type and part.equals(whole.slice(lo, max(0, min(hi, len(m)) - lo)))
        assert pa.concat_arrays(list(m.text_batches(view, 4))).equals(whole)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(max_size=6), max_size=40), st.integers(1, 9), st.data())
def test_ids_builder_and_ids_behave_like_the_list(raw, chunk, data):
    b = IdsBuilder()
    for lo in range(0, len(raw), chunk):  # str one by one and Arrow columns, interleaved
        part = raw[lo : lo + chunk]
        if (lo // chunk) % 2:
            b.extend(pa.array(part, pa.string()))
        else:
            for rid in part:
                b.append(rid)
    ids = b.build(len(raw))
    if len(set(raw)) != len(raw):
        assert ids is None and b.bad is None and b.ok
        return
    assert ids == raw and list(ids) == raw and len(ids) == len(raw)
    if raw:
        i = data.draw(st.integers(-len(raw), len(raw) - 1))
        assert ids[i] == raw[i]
        rows = data.draw(st.lists(st.integers(0, len(raw) - 1), max_size=10))
        assert ids.take(np.array(rows, dtype=np.int64)) == [raw[j] for j in rows]
    assert ids[2:5] == raw[2:5] and ids[::-2] == raw[::-2]
    assert ids + ["more"] == raw + ["more"] and ("a",) + ids == ["a", *raw] and ids + ids == raw + raw
    with pytest.raises(IndexError):
        ids[len(raw)]


def test_ids_positions_missing_and_bad_ids():
    pos = Ids.positions(4)
    assert pos == ["0", "1", "2", "3"] and pos[1:3] == ["1", "2"] and pos.take([3, 0]) == ["3", "0"]
    assert repr(pos) == "['0', '1', '2', '3']" and pos != ["0", "1"]
    b = IdsBuilder()
    b.append("a")
    b.drop()
    b.append("b")
    assert b.build(2) is None and not b.ok
    b = IdsBuilder()
    b.append("ok")
    b.append("x\ud800")
    assert b.build(2) is None and b.bad == "x\ud800"


def test_read_pool_keeps_field_ids_in_arrow(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(f'{{"id": "r{i}", "instruction": "q{i}", "output": "a"}}\n' for i in range(5)))
    pool = read_pool(path)
    assert isinstance(pool.ids, Ids) and pool.ids.array is not None and pool.id_source == "field"
    assert pool.ids == [f"r{i}" for i in range(5)]
    path.write_text('{"id": 7, "instruction": "q", "output": "a"}\n{"id": 7, "instruction": "r", "output": "b"}\n')
    assert (read_pool(path).ids, read_pool(path).id_source) == (["0", "1"], "position")


@pytest.mark.parametrize("rows", [7, 100, 1 << 20])
def test_pool_parquet_written_a_row_group_at_a_time_is_write_table(tmp_path, rows):
    out = tmp_path / "s.jsonl"
    sel = kmq.select(str(DOLLY), budget=50, embedder="hashing", out=out, run_dir=tmp_path / "run")
    whole = io.BytesIO()
    pq.write_table(sel.pool_table(), whole, row_group_size=rows)
    batched = io.BytesIO()
    sel.write_pool(batched, rows)
    assert batched.getvalue() == whole.getvalue()
    if rows == 1 << 20:  # the default: what the run directory holds
        assert (tmp_path / "run" / "pool.parquet").read_bytes() == whole.getvalue()
    assert pq.ParquetFile(io.BytesIO(batched.getvalue())).metadata.num_row_groups == -(-len(sel.pool) // rows)


def test_pool_batches_with_duplicates_name_the_row_they_duplicate():
    pool = Pool.from_records([{"id": f"x{i}", "instruction": "same" if i % 3 else f"q{i}", "output": "a"}
                              for i in range(10)])  # fmt: skip
    sel = kmq.select(pool, budget=3, embedder="hashing", clusters=2)
    table = pa.Table.from_batches(list(sel.pool_batches(4)))
    assert table.equals(sel.pool_table())
    dup = table["duplicate_of"].to_pylist()
    assert dup == [None, None, "x1", None, "x1", "x1", None, "x1", "x1", None]
