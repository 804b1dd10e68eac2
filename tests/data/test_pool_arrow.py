"""Pool.messages held in Arrow (kmq.data.messages): the same turns and text views as Python lists gave."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.data import read_pool
from kmq.data.formats import to_messages
from kmq.data.messages import ROLES, Messages, MessagesBuilder
from kmq.errors import InvalidParameterError

_ROLE_SETS = {"conversation": ROLES, "prompt": ("system", "user"), "response": ("assistant",)}


def _view(turns: list[dict], view: str) -> str:
    """The documented rule, in plain Python: the contents of the view's roles joined with a blank line."""
    return "\n\n".join(t["content"] for t in turns if t["role"] in _ROLE_SETS[view])


# any text, lone surrogates included (JSON allows them and kmq keeps them)
_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12) | st.sampled_from(["", "\ud800x"])
_turn = st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": _text})
_records = st.lists(st.lists(_turn, max_size=5), min_size=0, max_size=40)


@settings(max_examples=150, deadline=None)
@given(_records, st.integers(1, 7))
def test_messages_round_trip_and_views(records, chunk):
    builder = MessagesBuilder(chunk=chunk)  # small chunks: records cross Arrow chunk boundaries
    for turns in records:
        builder.append(turns)
    m = builder.build()
    assert len(m) == len(records)
    assert list(m) == records
    assert m == records and m == Messages.from_turns(records)
    assert [m[i] for i in range(len(records))] == records
    assert m[1:4] == records[1:4] and m[::2] == records[::2]
    if records:
        assert m[-1] == records[-1]
    for view in _ROLE_SETS:
        want = [_view(turns, view) for turns in records]
        assert m.texts(view) == want
        assert [t for batch in m.iter_texts(view, batch_size=3) for t in batch] == want
        lazy = m.lazy_texts(view, batch_size=2)
        assert len(lazy) == len(want) and list(lazy) == want
        assert lazy[1:5] == want[1:5] and lazy[::-2] == want[::-2]
        if want:
            assert lazy[-1] == want[-1] and lazy[0] == want[0]
    first = [next((t["content"] for t in turns if t["role"] == "user"), "") for turns in records]
    assert m.first_user() == first
    assert m.utf8 == all(
        "\ud800" not in t["content"] and not any(0xD800 <= ord(c) <= 0xDFFF for c in t["content"])
        for turns in records
        for t in turns
    )


def test_messages_index_errors_and_inequality():
    m = Messages.from_turns([[{"role": "user", "content": "a"}]])
    with pytest.raises(IndexError):
        m[1]
    with pytest.raises(TypeError):
        m["0"]
    assert m[np.int64(0)] == [{"role": "user", "content": "a"}]
    assert m != [[{"role": "user", "content": "b"}]]
    assert m != []


def test_messages_hold_bytes_not_objects():
    turns = [[{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": "x" * 50}] for i in range(5000)]
    m = Messages.from_turns(turns)
    assert isinstance(m.contents, pa.Array) and m.roles.dtype == np.int8 and m.offsets.dtype == np.int64
    text_bytes = sum(len(t["content"].encode()) for r in turns for t in r)
    assert m.nbytes < text_bytes + 5000 * 2 * 9 + 5000 * 8 + 64  # bytes + an offset and a role per turn


def test_jsonl_pool_matches_per_record_conversion(datakit):
    path = datakit / "fastchat_dummy" / "fastchat_dummy.jsonl"
    pool = read_pool(path)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    want = [to_messages(r, pool.format) for r in records]
    assert pool.messages == want
    assert pool.texts("conversation") == ["\n\n".join(t["content"] for t in turns) for turns in want]
    arr = pool.text_array("prompt")
    assert isinstance(arr, pa.LargeStringArray) and arr.to_pylist() == pool.texts("prompt")
    with pytest.raises(InvalidParameterError, match="view"):
        pool.text_array("answer")


def test_lone_surrogate_survives_in_arrow(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"instruction": "bad \\ud800 text", "output": "ok"}\n{"instruction": "fine", "output": ""}\n')
    pool = read_pool(path)
    assert not pool.messages.utf8
    assert pool.texts("prompt") == ["bad \ud800 text", "fine"]
    assert pool.messages[0][0]["content"] == "bad \ud800 text"
    assert pa.types.is_large_binary(pool.text_array("prompt").type)


def _write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
                          st.just("7"), st.booleans(), st.just("absent")), min_size=1, max_size=30))
def test_numbers_kept_from_the_one_read(tmp_path_factory, values):
    records = [{"instruction": f"q{i}", "output": "a"} | ({} if v == "absent" else {"score": v})
               for i, v in enumerate(values)]  # fmt: skip
    pool = read_pool(_write_jsonl(tmp_path_factory.mktemp("n") / "p.jsonl", records))
    kept = pool.numbers("score")
    if any(isinstance(v, (str, bool)) and v != "absent" for v in values):
        assert kept is None  # not a number column: callers read the raw column
        return
    if all(v == "absent" for v in values):
        assert kept is None  # no record has it: not a field at all
        return
    want = [np.nan if v is None or v == "absent" else float(v) for v in values]
    np.testing.assert_array_equal(kept, np.array(want))


def test_column_scorer_uses_kept_numbers_and_still_names_the_bad_record(tmp_path):
    from kmq.errors import DataFormatError
    from kmq.scorers.column import ColumnScorer

    records = [{"instruction": f"q{i}", "output": "a", "score": i * 0.5} for i in range(50)]
    pool = read_pool(_write_jsonl(tmp_path / "ok.jsonl", records))
    np.testing.assert_array_equal(ColumnScorer("score").score(pool), np.arange(50) * 0.5)
    assert pool._store._cache == {}  # the file was not parsed again
    records[7]["score"] = None
    bad = read_pool(_write_jsonl(tmp_path / "bad.jsonl", records))
    with pytest.raises(DataFormatError, match=r"record '7' \(row 7\) has score=None"):
        ColumnScorer("score").score(bad)
    csv = tmp_path / "p.csv"
    csv.write_text("instruction,output,score\nq,a,1.5\nr,b,2\n", encoding="utf-8")
    np.testing.assert_array_equal(ColumnScorer("score").score(read_pool(csv)), [1.5, 2.0])


def test_parquet_subset_is_written_in_batches_in_selection_order(tmp_path):
    import pyarrow.parquet as pq

    from kmq.data import write_subset

    n = 70_000  # more than one write batch (65,536 rows)
    table = pa.table({"instruction": [f"q{i}" for i in range(n)], "output": ["a"] * n, "score": np.arange(n) * 1.0})
    pq.write_table(table, tmp_path / "pool.parquet")
    pool = read_pool(tmp_path / "pool.parquet")
    rows = np.random.default_rng(0).permutation(n)[:68_000].tolist() + [5, 5]
    out = write_subset(pool, rows, tmp_path / "s.parquet")
    meta = pq.ParquetFile(out).metadata
    assert meta.num_row_groups == 2 and meta.num_rows == len(rows)
    got = pq.read_table(out)
    assert got.schema == table.schema
    assert got.column("instruction").to_pylist() == [f"q{i}" for i in rows]
