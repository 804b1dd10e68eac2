"""Writing subsets: every container round trip, byte-identical JSONL lines, container choice, atomicity."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmq.data import Pool, check_output_path, output_container, read_pool, write_subset
from kmq.errors import DataFormatError, InvalidParameterError

PICK = [5, 0, 41, 17, 5]  # out of order and with a repeat: written as given


def alpaca_records(datakit: Path, n: int = 60) -> list[dict]:
    return json.loads((datakit / "code_alpaca_2k/orig/code_alpaca_2k.json").read_bytes())[:n]


def assert_round_trip(pool: Pool, out: Path, picked=PICK) -> Pool:
    written = write_subset(pool, picked, out)
    assert written == out and out.exists()
    back = read_pool(out, format=pool.format)
    assert back.records(range(len(back))) == pool.records(picked)
    assert back.messages == [pool.messages[i] for i in picked]
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []
    return back


def test_jsonl_lines_are_byte_identical(datakit, tmp_path):
    src = datakit / "lima/orig/train.jsonl"
    pool = read_pool(src)
    out = tmp_path / "sub" / "dir" / "subset.jsonl"
    assert_round_trip(pool, out, picked=np.array([1029, 3, 0, 3]))
    lines = src.read_bytes().split(b"\n")
    assert out.read_bytes() == b"".join(lines[i] + b"\n" for i in [1029, 3, 0, 3])


def test_jsonl_keeps_crlf_bom_and_skips_blank_lines(tmp_path):
    src = tmp_path / "pool.jsonl"
    raw = [b'{"prompt": "a\\u00e9", "id": 1}\r', b'{"prompt":"b","id":2}', b"", b'  {"id": 3, "prompt": "c"}  ']
    src.write_bytes(b"\xef\xbb\xbf" + b"\n".join(raw))
    pool = read_pool(src)
    assert pool.ids == ["1", "2", "3"] and pool.records([0])[0] == {"prompt": "aé", "id": 1}
    out = tmp_path / "out.jsonl"
    write_subset(pool, [2, 0], out)
    assert out.read_bytes() == raw[3] + b"\n" + raw[0] + b"\n"


def test_jsonl_gz_round_trip_and_compression_follows_out(datakit, tmp_path):
    src = tmp_path / "pool.jsonl.gz"
    body = b"".join((datakit / "gsm8k_train/orig/train.jsonl").read_bytes().splitlines(keepends=True)[:50])
    src.write_bytes(gzip.compress(body))
    pool = read_pool(src)
    assert (pool.container, len(pool)) == ("jsonl.gz", 50)
    assert pool.fingerprint == read_pool(_write(tmp_path / "plain.jsonl", body)).fingerprint
    gz_out = assert_round_trip(pool, tmp_path / "subset.jsonl.gz")
    assert gz_out.container == "jsonl.gz"
    assert gzip.decompress((tmp_path / "subset.jsonl.gz").read_bytes()).splitlines()[0] == body.splitlines()[5]
    plain = assert_round_trip(pool, tmp_path / "subset.jsonl")
    assert (
        plain.container == "jsonl" and (tmp_path / "subset.jsonl").read_bytes().splitlines()[1] == body.splitlines()[0]
    )


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "rel", ["code_alpaca_2k/orig/code_alpaca_2k.json", "fastchat_dummy/orig/dummy_conversation.json"]
)
def test_json_array_round_trip_keeps_indent(datakit, tmp_path, rel):
    src = datakit / rel
    pool = read_pool(src)
    back = assert_round_trip(pool, tmp_path / "subset.json")
    assert back.container == "json"
    text = (tmp_path / "subset.json").read_text(encoding="utf-8")
    indent = 6 if rel.startswith("code") else 2
    assert text.startswith("[\n" + " " * indent + "{\n")


def test_compact_json_and_wrapped_json(tmp_path):
    records = [{"prompt": "p1", "completion": "ü"}, {"prompt": "p2", "completion": "c2"}]
    compact = _write(tmp_path / "compact.json", json.dumps(records).encode())
    write_subset(read_pool(compact), [1], tmp_path / "a.json")
    assert (tmp_path / "a.json").read_text(encoding="utf-8") == json.dumps([records[1]]) + "\n"
    wrapped = _write(tmp_path / "wrapped.json", json.dumps({"data": records}, indent=4).encode())
    pool = read_pool(wrapped)
    assert pool.records([0, 1]) == records
    write_subset(pool, [1, 0], tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text(encoding="utf-8")) == {"data": records[::-1]}


def test_json_file_holding_json_lines_stays_json_lines(tmp_path):
    src = _write(tmp_path / "pool.json", b'{"prompt": "a"}\n{"prompt":  "b"}\n')
    pool = read_pool(src)
    assert pool.container == "jsonl"
    write_subset(pool, [1], tmp_path / "out.json")
    assert (tmp_path / "out.json").read_bytes() == b'{"prompt":  "b"}\n'


def test_parquet_round_trip_keeps_schema(datakit, tmp_path):
    records = normalized_slice(datakit, "lima", 50)
    src = tmp_path / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(records), src)
    pool = read_pool(src)
    assert (pool.format, pool.container, pool.ids[:1]) == ("messages", "parquet", ["lima-0000"])
    back = assert_round_trip(pool, tmp_path / "subset.parquet")
    assert back.container == "parquet"
    assert pq.read_schema(tmp_path / "subset.parquet") == pq.read_schema(src)
    assert pool.column("category") == [r["category"] for r in records]


def normalized_slice(datakit: Path, name: str, n: int) -> list[dict]:
    with open(datakit / name / f"{name}.jsonl", encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(n)]


def test_csv_round_trip_keeps_header_and_cells(datakit, tmp_path):
    records = alpaca_records(datakit)
    src = tmp_path / "pool.csv"
    with open(src, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["output", "instruction", "input"])
        writer.writeheader()
        writer.writerows(records)
    pool = read_pool(src)
    assert (pool.format, pool.container, len(pool)) == ("alpaca", "csv", 60)
    assert pool.records([0]) == [records[0]]
    back = assert_round_trip(pool, tmp_path / "subset.csv")
    assert (tmp_path / "subset.csv").read_bytes().startswith(b"output,instruction,input\r\n")
    assert back.columns() == ["output", "instruction", "input"]


def test_hf_save_to_disk_folder(datakit, tmp_path):
    datasets = pytest.importorskip("datasets")
    records = normalized_slice(datakit, "gsm8k_train", 50)
    folder = tmp_path / "hf"
    datasets.Dataset.from_list(records).save_to_disk(str(folder))
    pool = read_pool(folder)
    assert (pool.format, pool.container, len(pool), pool.ids[0]) == ("messages", "hf_disk", 50, "gsm8k_train-0000")
    assert pool.records([2]) == [records[2]]
    assert pool.fingerprint == read_pool(folder).fingerprint
    assert_round_trip(pool, tmp_path / "subset.jsonl")
    assert_round_trip(pool, tmp_path / "subset.parquet")
    with pytest.raises(InvalidParameterError, match=r"unknown extension '\.data'; supported: \.jsonl, \.ndjson"):
        write_subset(pool, [0], tmp_path / "subset.data")
    assert not (tmp_path / "subset.data").exists()


def test_hf_dataset_dict_needs_a_known_split(datakit, tmp_path):
    datasets = pytest.importorskip("datasets")
    records = normalized_slice(datakit, "gsm8k_train", 4)
    folder = tmp_path / "dd"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(records)}).save_to_disk(str(folder))
    with pytest.raises(DataFormatError, match=r"has no split 'train'; splits: \['test'\]"):
        read_pool(folder)
    assert len(read_pool(folder, split="test")) == 4


def test_cross_container_writes(datakit, tmp_path):
    pool = read_pool(datakit / "code_alpaca_2k/orig/code_alpaca_2k.json")
    assert assert_round_trip(pool, tmp_path / "a.jsonl").container == "jsonl"
    assert assert_round_trip(pool, tmp_path / "a.parquet").container == "parquet"
    assert assert_round_trip(pool, tmp_path / "a.csv").container == "csv"
    assert assert_round_trip(pool, tmp_path / "a.json.gz").container == "json.gz"
    jsonl = read_pool(datakit / "lima/orig/train.jsonl")
    assert assert_round_trip(jsonl, tmp_path / "b.json").container == "json"
    assert assert_round_trip(jsonl, tmp_path / "b.parquet").container == "parquet"


def test_csv_refuses_nested_values_and_gz_refused_for_parquet(datakit, tmp_path):
    pool = read_pool(datakit / "lima/orig/train.jsonl")
    with pytest.raises(
        DataFormatError, match=r"record 3 \('3'\) .* field 'conversations' is list.* \.jsonl or \.parquet"
    ):
        write_subset(pool, [3], tmp_path / "x.csv")
    with pytest.raises(InvalidParameterError, match="gzip is supported for .jsonl.gz and .json.gz only"):
        write_subset(pool, [3], tmp_path / "x.parquet.gz")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path):
    pool = Pool.from_records([{"prompt": "a", "blob": {"x": 1}}, {"prompt": "b", "blob": "text"}])
    out = tmp_path / "subset.parquet"
    with pytest.raises(DataFormatError, match="do not fit one Parquet schema"):
        write_subset(pool, [0, 1], out)
    assert list(tmp_path.iterdir()) == []
    out.write_bytes(b"old")
    with pytest.raises(DataFormatError):
        write_subset(pool, [0, 1], out)
    assert out.read_bytes() == b"old" and list(tmp_path.iterdir()) == [out]


def test_bad_indices_and_overwriting_the_input(datakit, tmp_path):
    src = _write(tmp_path / "pool.jsonl", b'{"prompt": "a"}\n{"prompt": "b"}\n')
    pool = read_pool(src)
    for bad, match in [([2], r"ints in \[0, 2\).* Got 2"), ([-1], "Got -1"), ([0.5], "1-D sequence of ints")]:
        with pytest.raises(InvalidParameterError, match=match):
            write_subset(pool, bad, tmp_path / "out.jsonl")
        with pytest.raises(InvalidParameterError, match=match):
            pool.records(bad)
    with pytest.raises(InvalidParameterError, match="would overwrite the pool's own file"):
        write_subset(pool, [0], src)
    write_subset(pool, [], tmp_path / "empty.jsonl")
    assert (tmp_path / "empty.jsonl").read_bytes() == b""


def test_changed_jsonl_file_is_detected(tmp_path):
    src = _write(tmp_path / "pool.jsonl", b'{"prompt": "a"}\n{"prompt": "b"}\n')
    pool = read_pool(src)
    src.write_bytes(b'{"prompt": "zz"}\n{"prompt": "b"}\n')
    with pytest.raises(DataFormatError, match="changed since it was read"):
        pool.records([0])


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.fixed_dictionaries({"instruction": _text, "input": _text, "output": _text}), min_size=1, max_size=6
    )
)
def test_any_strings_survive_every_container(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("prop")
    pool = Pool.from_records(rows)
    picked = list(range(len(rows)))[::-1]
    for name in ("s.jsonl", "s.json", "s.parquet", "s.csv", "s.jsonl.gz"):
        write_subset(pool, picked, tmp / name)
        assert read_pool(tmp / name).records(range(len(rows))) == [rows[i] for i in picked]


def test_one_line_wrapped_json_is_the_wrapped_array(tmp_path):
    records = [{"prompt": "p1", "completion": "c1"}, {"prompt": "p2"}]
    pool = read_pool(_write(tmp_path / "w.json", json.dumps({"data": records}).encode()))
    assert (pool.container, len(pool), pool.records([0, 1])) == ("json", 2, records)
    write_subset(pool, [1], tmp_path / "b.json")
    assert json.loads((tmp_path / "b.json").read_text()) == {"data": [records[1]]}
    one = read_pool(_write(tmp_path / "m.json", b'{"messages": [{"role": "user", "content": "hi"}]}'))
    assert (one.container, one.format, len(one)) == ("jsonl", "messages", 1)  # a record, not a wrapper


def test_parquet_from_json_records_keeps_fields_missing_from_the_first(tmp_path):
    rows = [{"prompt": "a"}, {"prompt": "b", "tag": "x"}, {"prompt": "c", "score": 2}]
    pool = read_pool(_write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode()))
    write_subset(pool, [0, 1, 2], tmp_path / "s.parquet")
    got = pq.read_table(tmp_path / "s.parquet").to_pylist()
    assert got == [{"prompt": "a", "tag": None, "score": None}, {"prompt": "b", "tag": "x", "score": None},
                   {"prompt": "c", "tag": None, "score": 2}]  # fmt: skip


_any_char = st.one_of(st.characters(), st.characters(categories=("Cs",)))  # st.text() drops surrogates: join chars
_any_text = st.lists(_any_char, max_size=12).map("".join)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries({"prompt": _any_text, "completion": _any_text}), min_size=1, max_size=5))
def test_lone_surrogates_survive_json_containers(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("sur")
    for name in ("p.jsonl", "p.json"):
        src = tmp / name
        text = "".join(json.dumps(r) + "\n" for r in rows) if name.endswith("l") else json.dumps(rows, indent=1)
        pool = read_pool(_write(src, text.encode()))
        expected = pool.records(range(len(rows))[::-1])  # == rows reversed, but for escaped surrogate pairs
        for out in ("s.jsonl", "s.json", "s.jsonl.gz", "s.json.gz"):
            write_subset(pool, range(len(rows))[::-1], tmp / out)
            assert read_pool(tmp / out).records(range(len(rows))) == expected


# ------------------------------------------------------------------------------ the container follows `out`

OUT_CASES = [  # (pool container, out, container written)
    ("jsonl", "s.jsonl", "jsonl"),
    ("jsonl", "s.ndjson", "jsonl"),
    ("jsonl", "s.jsonl.gz", "jsonl.gz"),
    ("csv", "s.json", "json"),
    ("csv", "s.JSON.GZ", "json.gz"),
    ("json", "s.parquet", "parquet"),
    ("parquet", "s.csv", "csv"),
    ("jsonl", "subset", "jsonl"),  # no extension: the pool's own container
    ("json.gz", "dolly_v1.5", "json.gz"),  # ".5" is no extension
    ("hf_disk", "subset", "hf_disk"),
    ("hf_hub", "subset", "hf_disk"),
    ("hf_disk", "subset.jsonl", "jsonl"),
    ("jsonl", "folder/", "hf_disk"),  # a trailing slash asks for a folder
    ("memory", "folder/", "hf_disk"),
    ("memory", "s.parquet", "parquet"),
    (None, "subset", None),  # the pool decides, once read
]


@pytest.mark.parametrize(("pool_container", "out", "expected"), OUT_CASES)
def test_check_output_path_names_the_container(pool_container, out, expected):
    assert check_output_path(pool_container, out) == expected


@pytest.mark.parametrize(
    ("pool_container", "out", "container", "match"),
    [
        ("jsonl", "s.txt", None, r"Cannot write s\.txt: unknown extension '\.txt'; supported: \.jsonl, \.ndjson, "
         r"\.json \(each optionally \.gz\), \.parquet, \.csv, \.tsv, or a folder \(a name ending in /\)"),
        (None, "s.txt", None, r"unknown extension '\.txt'"),  # refused before the pool is read
        ("hf_disk", "my.dataset", None, r"unknown extension '\.dataset'.*a name ending in /"),
        ("memory", "subset", None, r"no extension, and an in-memory pool has no file format of its own.*\.jsonl"),
        ("jsonl", "s.csv.gz", None, "gzip is supported for .jsonl.gz and .json.gz only"),
        ("jsonl", "s.jsonl", "parquet", r"as parquet: its extension says jsonl"),
        ("jsonl", "s/", "csv", "it names a folder"),
        ("jsonl", "s", "txt", r"'container' parameter of write_subset must be one of \['jsonl'"),
    ],
)  # fmt: skip
def test_check_output_path_refuses_what_kmq_cannot_write(pool_container, out, container, match):
    with pytest.raises(InvalidParameterError, match=match):
        check_output_path(pool_container, out, container=container)


def test_explicit_container_wins_over_a_name_without_extension(tmp_path):
    pool = Pool.from_records([{"prompt": "a", "completion": "b"}, {"prompt": "c"}])
    assert output_container(pool, tmp_path / "subset", container="parquet") == "parquet"
    write_subset(pool, [1, 0], tmp_path / "subset", container="parquet")
    expected = [{"prompt": "c", "completion": None}, pool.records([0])[0]]
    assert pq.read_table(tmp_path / "subset").to_pylist() == expected


def test_output_container_of_a_json_file_holding_json_lines(datakit, tmp_path):
    pool = read_pool(_write(tmp_path / "pool.json", b'{"prompt": "a"}\n'))
    assert (output_container(pool, "o.json"), output_container(pool, "o.jsonl"), output_container(pool, "o")) == (
        "jsonl", "jsonl", "jsonl"
    )  # fmt: skip
    assert output_container(read_pool(datakit / "code_alpaca_2k/orig/code_alpaca_2k.json"), "o.json") == "json"


def hf_pool(datakit: Path, tmp_path: Path, n: int = 50) -> tuple[Path, list[dict]]:
    datasets = pytest.importorskip("datasets")
    records = normalized_slice(datakit, "dolly_3k", n)
    folder = tmp_path / "hfpool"
    datasets.Dataset.from_list(records).save_to_disk(str(folder))
    return folder, records


def test_save_to_disk_pool_gives_a_save_to_disk_folder(datakit, tmp_path):
    datasets = pytest.importorskip("datasets")
    folder, records = hf_pool(datakit, tmp_path)
    before = sorted(p.name for p in folder.iterdir())
    pool = read_pool(folder)
    for out in (tmp_path / "subset", str(tmp_path / "slash") + "/"):
        assert output_container(pool, out) == "hf_disk"
        assert write_subset(pool, PICK, out) == Path(out)
        back = datasets.load_from_disk(str(out))
        assert back.to_list() == [records[i] for i in PICK]
        assert back.features == datasets.load_from_disk(str(folder)).features
    assert sorted(p.name for p in folder.iterdir()) == before  # no indices cache file in the input folder
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    write_subset(pool, [3], tmp_path / "subset")  # a dataset folder is replaced as a whole
    assert datasets.load_from_disk(str(tmp_path / "subset")).to_list() == [records[3]]
    write_subset(pool, [], tmp_path / "empty")
    assert len(datasets.load_from_disk(str(tmp_path / "empty"))) == 0
    assert read_pool(tmp_path / "subset").records([0]) == [records[3]]


def test_any_pool_writes_a_folder_on_request(datakit, tmp_path):
    datasets = pytest.importorskip("datasets")
    records = normalized_slice(datakit, "lima", 50)
    pool = read_pool(_write(tmp_path / "p.jsonl", "".join(json.dumps(r) + "\n" for r in records).encode()))
    write_subset(pool, PICK, str(tmp_path / "sub") + "/")
    assert datasets.load_from_disk(str(tmp_path / "sub")).to_list() == [records[i] for i in PICK]
    write_subset(pool, [1], tmp_path / "explicit.d", container="hf_disk")
    assert datasets.load_from_disk(str(tmp_path / "explicit.d")).to_list() == [records[1]]


def test_folders_that_are_not_datasets_and_the_pool_folder_are_never_replaced(datakit, tmp_path):
    folder, _ = hf_pool(datakit, tmp_path, n=5)
    pool = read_pool(folder)
    with pytest.raises(InvalidParameterError, match="would overwrite the pool's own folder"):
        write_subset(pool, [0], folder)
    with pytest.raises(InvalidParameterError, match="lies inside it or it inside the pool"):
        write_subset(pool, [0], folder / "inner")
    with pytest.raises(InvalidParameterError, match="lies inside it or it inside the pool"):
        write_subset(pool, [0], str(tmp_path) + "/")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(InvalidParameterError, match="existing folder that is not one"):
        write_subset(pool, [0], mine)
    with pytest.raises(InvalidParameterError, match=r"mine as jsonl: it names a folder"):
        write_subset(pool, [0], mine, container="jsonl")
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


def _csv_pool(tmp_path: Path, newline: str) -> tuple[Pool, list[dict]]:
    rows = [{"instruction": "a,b", "output": 'say "hi"'}, {"instruction": "two\nlines", "output": "cr\ronly"},
            {"instruction": "crlf\r\ninside", "output": ""}]  # fmt: skip
    lines = ["instruction,output", '"a,b","say ""hi"""', '"two\nlines","cr\ronly"', '"crlf\r\ninside",']
    src = tmp_path / f"pool-{len(newline)}.csv"
    src.write_bytes("".join(line + newline for line in lines).encode())
    pool = read_pool(src)
    assert pool.records(range(3)) == rows
    return pool, rows


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_keeps_the_input_line_endings(tmp_path, newline):
    pool, rows = _csv_pool(tmp_path, newline)
    out = tmp_path / "s.csv"
    write_subset(pool, [2, 0, 1], out)
    data = out.read_bytes()
    assert data.startswith(b"instruction,output" + newline.encode()) and data.endswith(b'"' + newline.encode())
    outside_quotes = data.replace(b'"crlf\r\ninside"', b"").replace(b'"two\nlines"', b"").replace(b'"cr\ronly"', b"")
    assert outside_quotes.count(b"\r") == (4 if newline == "\r\n" else 0) and outside_quotes.count(b"\n") == 4
    assert read_pool(out).records(range(3)) == [rows[2], rows[0], rows[1]]


def test_csv_from_other_containers_uses_lf(datakit, tmp_path):
    pool = read_pool(datakit / "code_alpaca_2k/orig/code_alpaca_2k.json")
    write_subset(pool, PICK, tmp_path / "s.csv")
    data = (tmp_path / "s.csv").read_bytes()
    assert data.startswith(b"instruction,input,output\n") and b"\r" not in data
    assert read_pool(tmp_path / "s.csv").records(range(len(PICK))) == pool.records(PICK)
