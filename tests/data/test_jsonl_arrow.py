"""The pyarrow.json reader of JSON Lines (kmq.data._jsonl_arrow) gives what the json.loads reader gives.

Every comparison reads the same file twice, with the fast path on and off, and compares the whole pool (ids,
turns, texts, fields, numbers, offsets, fingerprint) or the error; the fast path must have been taken for clean
records, so the comparisons are not of the json.loads reader with itself.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kmq.data._jsonl_arrow as fast
from kmq.data import io as kio
from kmq.data import read_pool
from kmq.data.pool import PoolBuilder
from kmq.errors import KmqError

DATAKIT = Path(__file__).resolve().parents[3] / "shared" / "datakit"


def arrow_pool(path, format="auto"):
    """The fast path's pool, or None where it hands the file to json.loads."""
    return fast.read_jsonl_arrow(kio.Src(Path(path)), PoolBuilder(str(path), format), kio._open, ".jsonl", None)


def outcome(path, *, arrow, format="auto"):
    """('ok', everything a pool holds) or ('error', type, message) of read_pool with or without the fast path."""
    fast.ENABLED = arrow
    try:
        pool = read_pool(path, format=format)
    except KmqError as err:
        return ("error", type(err).__name__, str(err))
    finally:
        fast.ENABLED = True
    numbers = {k: v.tobytes() for k, v in pool._numbers.items()}  # NaN-safe
    store = pool._store
    return ("ok", pool.ids, pool.id_source, pool.format, pool.fingerprint, pool.container, pool.columns(),
            list(pool.messages), [pool.texts(v) for v in ("conversation", "prompt", "response")], numbers,
            list(store.offsets), list(store.lengths), pool._layout)  # fmt: skip


def assert_same(path, format="auto"):
    new, old = outcome(path, arrow=True, format=format), outcome(path, arrow=False, format=format)
    assert new == old
    return new


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of a few lines and small pyarrow blocks: schemas differ from chunk to chunk."""
    monkeypatch.setattr(fast, "CHUNK", 300)
    monkeypatch.setattr(fast, "BLOCK", 128)


# ----------------------------------------------------------------------------------------------- real data

DATAKIT_FILES = ["dolly_3k", "lima", "gsm8k_test", "self_instruct_user_oriented", "mmlu", "truthfulqa", "mt_bench"]


@pytest.mark.skipif(not DATAKIT.is_dir(), reason="needs ../shared/datakit")
@pytest.mark.parametrize("name", DATAKIT_FILES)
def test_datakit_pools_are_identical_and_read_by_pyarrow(name):
    path = DATAKIT / name / f"{name}.jsonl"
    assert arrow_pool(path) is not None  # the fast path was taken
    result = assert_same(path)
    assert result[0] == "ok" and len(result[1]) > 0


# ----------------------------------------------------------------------------------------------- bad input


def write(path, text):
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


GOOD = '{"instruction": "Say hi", "output": "hi", "score": 1}\n'


@pytest.mark.parametrize(
    "line",
    [
        '{"instruction": "x", "score": Inf}',  # pyarrow reads Inf and -NaN; json.loads does not
        '{"instruction": "x", "score": -NaN}',
        '{"instruction": "x", "score": [1, -Inf]}',
        b'{"instruction": "\xff"}',  # invalid UTF-8: pyarrow does not check
        b'{"instruction": "\xed\xa0\x80"}',  # a surrogate encoded in UTF-8
        '{"instruction": "a"} {"instruction": "b"}',  # two objects on a line
        '{"instruction": "a", "instruction": "b"}',  # duplicate key: json.loads keeps the last
        '{"instruction": "\\ud800"}',  # a lone surrogate, which json.loads keeps
        '{"instruction": "x", "deep": ' + "[" * 100_000 + "]" * 100_000 + "}",  # pyarrow would crash
        '{"instruction": "x", "score": 1e400}',
        '{"instruction": "x", "score": ' + "9" * 400 + "}",  # a huge int: not a number column
        '\ufeff{"instruction": "x"}',  # a byte order mark inside the file
        '{"instruction": 5}',
        '{"instruction": null, "output": "x"}',
        '{"output": "x"}',
        "[1, 2]",
        '{"instruction": "x", "history": [["a"]]}',
        '{"instruction": "x", "input": 3}',
        '{"instruction": "x", "system": ["s"]}',
    ],
)
def test_lines_pyarrow_cannot_promise_go_to_json_loads(tmp_path, line):
    body = (GOOD * 3).encode() + (line if isinstance(line, bytes) else line.encode()) + b"\n" + GOOD.encode()
    path = write(tmp_path / "p.jsonl", body)
    assert arrow_pool(path) is None
    assert_same(path)


@pytest.mark.parametrize("ids", [[1.5, 2.0], [True, False], [[1], [2]]])
def test_ids_only_python_can_write_go_to_json_loads(tmp_path, ids):
    path = write(tmp_path / "p.jsonl", "".join(json.dumps({"id": i, "prompt": "q"}) + "\n" for i in ids))
    assert arrow_pool(path) is None
    assert assert_same(path)[1] == [str(i) for i in ids]


@pytest.mark.parametrize(
    "body",
    [
        '{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": [}\n',
        '{"messages": [{"role": "tool", "content": "hi"}]}\n',
        '{"messages": [{"role": "user", "content": null}]}\n',
        '{"messages": []}\n',
        '{"conversations": [{"from": "human", "value": "hi"}, {"from": "robot", "value": "x"}]}\n',
        '{"conversations": ["hi", null]}\n',
        '{"prompt": "q", "completion": ["a"]}\n',
        '{"prompt": [{"role": "user", "content": "q"}], "completion": "a"}\n',
        '{"prompt": null, "question": "q"}\n',
        '{"prompt": []}\n',
        '{"foo": 1}\n',
        "\n  \n",
    ],
)
def test_errors_are_the_json_loads_readers(tmp_path, body):
    path = write(tmp_path / "p.jsonl", body)
    result = assert_same(path)
    assert result[0] == "error"


def test_turns_that_mix_from_and_role_are_read_by_json_loads(tmp_path):
    body = '{"conversations": [{"from": "human", "value": "hi"}, {"role": "assistant", "content": "x"}]}\n'
    path = write(tmp_path / "p.jsonl", body)
    assert arrow_pool(path) is None  # a null "from" may be an absent one
    assert assert_same(path)[7] == [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]]


def test_gz_and_zip_members_take_the_fast_path(tmp_path):
    import gzip
    import zipfile

    body = GOOD * 5
    gz = tmp_path / "p.jsonl.gz"
    gz.write_bytes(gzip.compress(body.encode()))
    zipped = tmp_path / "p.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("inner/p.jsonl", body)
    for path in (gz, zipped):
        result = assert_same(path)
        assert result[0] == "ok" and len(result[1]) == 5


def test_python_whitespace_is_what_str_strip_strips():
    from kmq.data._arrow_turns import PY_WHITESPACE

    assert PY_WHITESPACE == "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())


def test_a_field_and_a_type_that_appear_late_are_no_error(tmp_path, small_chunks):
    lines = [{"instruction": f"q{i}", "output": "a" * 40, "score": i} for i in range(30)]
    lines += [{"instruction": "late", "score": 2.5, "system": "new field", "tag": None}]
    path = write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in lines))
    assert arrow_pool(path) is not None
    result = assert_same(path)
    assert result[6] == ["instruction", "output", "score", "system", "tag"]


# ----------------------------------------------------------------------------------------------- properties

WS = st.sampled_from([" ", "\t", "\n", "\u3000", "\x1c", "\xa0", "\u2028", ""])
CLEAN_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=12),
    st.builds(lambda a, t, b: a + t + b, WS, st.text(st.characters(blacklist_categories=("Cs",)), max_size=6), WS),
    st.sampled_from(["", "Info", "\\", '"', "😀", "Infinity"]),
)
TEXT = st.one_of(CLEAN_TEXT, st.text(max_size=4), st.just("x, Inf, y"))  # lone surrogates, a false Inf
NUMBER = st.one_of(st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False), st.none())
VALUE = st.one_of(TEXT, NUMBER, st.booleans(), st.lists(st.integers(), max_size=2), st.just("5"))


def turns(keys, roles, text):
    return st.lists(st.fixed_dictionaries({keys[0]: roles, keys[1]: text}), min_size=1, max_size=4)


ROLES = st.sampled_from(["user", "assistant", "system"])
SPEAKERS = st.sampled_from(["human", "gpt", "GPT", "System", "user", "model", "bing"])


def record_kinds(t):
    """(format, records) strategies; one kind per file (pyarrow needs one type per column in a chunk)."""
    chat = turns(("role", "content"), ROLES, t)
    return [
        ("alpaca", st.fixed_dictionaries(
            {"instruction": t},
            optional={"input": st.one_of(st.none(), t), "output": st.one_of(st.none(), t), "response": t,
                      "system": t, "history": st.lists(st.lists(t, min_size=2, max_size=2), max_size=2)},
        )),
        ("sharegpt", st.fixed_dictionaries(
            {"conversations": turns(("from", "value"), SPEAKERS, t)}, optional={"system": st.one_of(st.none(), t)}
        )),
        ("sharegpt", st.fixed_dictionaries({"conversations": st.lists(t, min_size=1, max_size=3)})),
        ("messages", st.fixed_dictionaries({"messages": chat})),
        ("prompt_completion", st.fixed_dictionaries(
            {"prompt": t}, optional={"completion": st.one_of(st.none(), t), "answer": t, "system": t}
        )),
        ("prompt_completion", st.fixed_dictionaries({"question": t}, optional={"answer": t})),
        ("prompt_completion", st.fixed_dictionaries(
            {"prompt": chat}, optional={"completion": st.one_of(st.none(), chat), "response": chat}
        )),
    ]  # fmt: skip


CLEAN_KINDS, KINDS = record_kinds(CLEAN_TEXT), record_kinds(TEXT)
CLEAN_EXTRAS = st.fixed_dictionaries({}, optional={"id": st.integers(0, 8), "score": st.floats(-1e9, 1e9),
                                                   "n": st.integers(-(2**64), 2**64), "tag": st.none()})  # fmt: skip
EXTRAS = st.fixed_dictionaries({}, optional={"id": st.one_of(st.integers(0, 5), TEXT), "score": NUMBER,
                                             "meta": VALUE, "n": st.integers(-(2**64), 2**64)})  # fmt: skip


@st.composite
def pools(draw, messy: bool):
    kinds = KINDS if messy else CLEAN_KINDS
    kind = draw(st.integers(0, len(kinds) - 1))
    strategy = kinds[kind][1] if not messy else st.one_of(kinds[kind][1], *(k[1] for k in kinds))
    records = draw(st.lists(st.tuples(strategy, EXTRAS if messy else CLEAN_EXTRAS), min_size=1, max_size=10))
    lines = []
    for record, extra in records:
        record = {**extra, **record} if draw(st.booleans()) else {**record, **extra}
        if messy:  # a field of the wrong type, or a value dropped
            key = draw(st.sampled_from(sorted(record)))
            change = draw(st.sampled_from(["keep", "null", "drop", "value"]))
            if change == "null":
                record[key] = None
            elif change == "drop" and len(record) > 1:
                del record[key]
            elif change == "value":
                record[key] = draw(VALUE)
        line = json.dumps(record, ensure_ascii=draw(st.booleans()))
        if messy and draw(st.integers(0, 9)) == 0:
            line = line[:-1] + ', "score": 1, "score": 2}'  # a duplicate key
        lines.append(line)
    end = draw(st.sampled_from(["\n", "\r\n"]))
    blank = draw(st.sampled_from(["", "\n", "  \n"]))
    return kinds[kind][0], (blank.join(line + end for line in lines)).encode("utf-8", "surrogatepass")


def read_both(body: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.jsonl"
        path.write_bytes(body)
        new, old = outcome(path, arrow=True), outcome(path, arrow=False)
        taken = arrow_pool(path) is not None
    assert new == old
    return new, taken


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools(messy=False))
def test_clean_records_read_alike(case):
    fmt, body = case
    result, taken = read_both(body)
    assert result[0] == "ok" and result[3] == fmt
    assert taken  # clean records are read by pyarrow


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools(messy=True))
def test_messy_records_read_alike(case):
    read_both(case[1])


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools(messy=True))
def test_small_chunks_read_alike(case):
    old = (fast.CHUNK, fast.BLOCK)
    fast.CHUNK, fast.BLOCK = 200, 64
    try:
        read_both(case[1])
    finally:
        fast.CHUNK, fast.BLOCK = old


def test_clean_records_take_the_fast_path(tmp_path):
    records = [
        {"id": i, "instruction": f" q{i}\u3000", "input": "" if i % 2 else "ctx ", "output": "a", "score": i / 3}
        for i in range(50)
    ]
    path = write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    assert arrow_pool(path) is not None
    result = assert_same(path)
    assert result[1][:2] == ["0", "1"] and result[8][1][:2] == ["q0\n\nctx", "q1"]
    np.testing.assert_array_equal(np.frombuffer(result[9]["score"]), np.arange(50) / 3)


# ----------------------------------------------------------------------------------------------- text views


def test_texts_are_decoded_once_and_released():
    from kmq.data import Pool

    pool = Pool.from_records([{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    prompts = pool.texts("prompt")
    assert pool.texts("prompt") is prompts and prompts == ["a", "c"]
    assert list(pool.iter_texts("prompt", 1)) == [["a"], ["c"]]
    assert "response" not in pool.messages._texts  # views not asked for hold no strings
    assert list(pool.messages.lazy_texts("prompt")) == ["a", "c"] and pool.messages.lazy_texts("prompt")[1] == "c"
    pool.release_texts("prompt")
    again = pool.texts("prompt")
    assert again == prompts and again is not prompts
    pool.release_texts()
    assert pool.messages._texts == {}
    with pytest.raises(KmqError, match="'view' parameter of Pool.release_texts"):
        pool.release_texts("bogus")
