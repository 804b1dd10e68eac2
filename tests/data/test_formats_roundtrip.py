"""kmq reads back what it writes: every ``--out-format`` target in every container, read by :mod:`kmq.data`.

TRL's conversational prompt-completion (``prompt``/``completion`` as lists of turns) is read next to the
plain-string shape, and the CSV/TSV reader decodes the JSON-text cells kmq's converted CSV output writes
(``messages``, ``conversations``, ``history``, a conversational ``prompt``/``completion``), while other
columns stay text. Pools are datakit files of each input format (LIMA's string conversations and its
messages copy, dolly and alpaca_gpt4_demo as alpaca, FastChat's sharegpt).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from kmq.cli.main import main
from kmq.data import OUT_FORMATS, Pool, conversion_stats, read_pool, write_subset
from kmq.errors import DataFormatError

TARGETS = [f for f in OUT_FORMATS if f != "same"]
CONTAINERS = [".jsonl", ".json", ".parquet", ".csv", ".tsv"]
#: pool name -> (file in the datakit, rows converted: single- and multi-turn where the pool has both)
POOLS = {
    "lima": ("lima/orig/train.jsonl", [0, 1000, 1005]),
    "lima_messages": ("lima/lima.jsonl", [3, 1001]),
    "dolly_3k": ("dolly_3k/orig/dolly_3k.json", [0, 1, 3]),
    "fastchat_dummy": ("fastchat_dummy/orig/dummy_conversation.json", [0, 1, 4]),
    "alpaca_gpt4_demo": ("alpaca_gpt4_demo/orig/alpaca_en_demo.json", [0, 5, 8]),
}
#: the format kmq detects in each target's output
READ_AS = {target: target.replace("-", "_") for target in TARGETS}

_POOLS: dict[str, Pool] = {}


def _pool(datakit: Path, name: str) -> Pool:
    if name not in _POOLS:
        _POOLS[name] = read_pool(datakit / POOLS[name][0])
    return _POOLS[name]


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


def expected_back(turns: list[dict[str, str]], target: str) -> list[dict[str, str]]:
    """The conversation kmq reads back from a lossless conversion: the same turns, except that kmq's alpaca
    reader strips the instruction (the last user turn)."""
    if target != "alpaca":
        return turns
    out = [dict(t) for t in turns]
    last_user = max(k for k, t in enumerate(out) if t["role"] == "user")
    out[last_user]["content"] = out[last_user]["content"].strip()
    return out


def write_csv(path: Path, rows: list[dict[str, str]], delimiter: str = ",") -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ----------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(POOLS))
def test_every_target_in_every_container_reads_back_as_the_same_conversation(datakit, tmp_path, name, target, suffix):
    pool = _pool(datakit, name)
    rows = POOLS[name][1]
    assert conversion_stats(pool, rows, target)["lossy"] == {}  # these rows convert losslessly
    out = write_subset(pool, rows, tmp_path / f"sub{suffix}", out_format=target)
    back = read_pool(out)
    assert back.format == READ_AS[target]
    assert back.messages == [expected_back(pool.messages[i], target) for i in rows]
    ids = [pool.ids[i] for i in rows] if pool.id_source == "field" else [str(k) for k in range(len(rows))]
    assert back.ids == ids
    if suffix in (".csv", ".tsv"):  # the raw records keep the cells as read: writing them back gives the same bytes
        assert write_subset(back, range(len(rows)), tmp_path / f"again{suffix}").read_bytes() == out.read_bytes()


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl"])
def test_extra_fields_survive_the_round_trip(datakit, tmp_path, suffix):
    pool = _pool(datakit, "dolly_3k")  # alpaca records with a "category" field
    out = write_subset(pool, [0, 1], tmp_path / f"sub{suffix}", out_format="prompt-completion")
    back = read_pool(out)
    assert back.column("category") == [r["category"] for r in pool.records([0, 1])]
    assert back.columns() == ["prompt", "completion", "category"]  # the converted fields where instruction stood


def test_a_converted_csv_pool_converts_again(datakit, tmp_path):
    pool = _pool(datakit, "fastchat_dummy")
    first = read_pool(write_subset(pool, [0, 1], tmp_path / "sub.csv", out_format="sharegpt"))
    for target in ("alpaca", "prompt-completion"):
        again = read_pool(write_subset(first, [1, 0], tmp_path / f"{target}.jsonl", out_format=target))
        assert again.messages == [expected_back(pool.messages[i], target) for i in (1, 0)]


def test_a_messages_csv_pool_converts_to_messages_again(datakit, tmp_path):
    pool = _pool(datakit, "lima_messages")
    first = read_pool(write_subset(pool, [3, 1001], tmp_path / "sub.csv", out_format="messages"))
    again = read_pool(write_subset(first, [0, 1], tmp_path / "again.jsonl", out_format="messages"))
    assert again.messages == [pool.messages[3], pool.messages[1001]]


def test_kmq_select_reads_its_own_prompt_completion_output(datakit, tmp_path):
    pool = read_pool(datakit / "dolly_3k/dolly_3k.jsonl")
    converted = write_subset(pool, range(60), tmp_path / "pc.jsonl", out_format="prompt-completion")
    out = tmp_path / "picked.jsonl"
    assert main(["select", str(converted), "--budget", "10", "--out", str(out), "--embedder", "hashing", "-q"]) == 0
    picked = read_pool(out)
    assert picked.format == "prompt_completion" and len(picked) == 10
    by_id = dict(zip(pool.ids, pool.messages, strict=True))
    assert all(turns == by_id[rid] for rid, turns in zip(picked.ids, picked.messages, strict=True))


# ----------------------------------------------------------------------------------------------- the shapes


def test_conversational_prompt_completion_with_system_turn_and_history():
    record = {
        "id": "c1",
        "prompt": [system("Be brief."), user("Hi"), assistant("Hello!"), user("2+2?")],
        "completion": [assistant("4")],
    }
    pool = Pool.from_records([record])
    assert pool.format == "prompt_completion"
    assert pool.messages == [[*record["prompt"], assistant("4")]]
    assert pool.texts("response") == ["Hello!\n\n4"]


def test_conversational_prompt_only_and_extra_turn_keys():
    named = {"role": "user", "content": "Hi", "name": "ann"}
    pool = Pool.from_records([{"prompt": [named]}, {"prompt": [user("Yo")]}])
    assert pool.messages == [[user("Hi")], [user("Yo")]]


def test_plain_string_prompt_completion_still_reads_as_before():
    pool = Pool.from_records([{"prompt": "[not a list]", "completion": '[{"role": "x"}]', "system": "S"}])
    assert pool.messages == [[system("S"), user("[not a list]"), assistant('[{"role": "x"}]')]]
    gsm8k = Pool.from_records([{"question": "1+1?", "answer": "2"}])
    assert gsm8k.format == "prompt_completion" and gsm8k.messages == [[user("1+1?"), assistant("2")]]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"prompt": [user("u")], "completion": "a"}, r"field 'completion' is str, but field 'prompt' is a list of"),
        ({"prompt": "u", "completion": [assistant("a")]}, r"field 'completion' is a list, but field 'prompt' is a"),
        ({"prompt": []}, r"field 'prompt' is an empty list; expected at least one \{role, content\} turn"),
        ({"prompt": ["Hi"]}, r"field 'prompt'\[0\] is str; expected a \{role, content\} object"),
        ({"prompt": [{"from": "human", "value": "u"}]}, r"field 'prompt'\[0\]\.role is None; expected one of"),
        ({"prompt": [user("u")], "completion": [{"role": "bot", "content": "a"}]}, r"'completion'\[0\]\.role is"),
        ({"prompt": [user("u"), {"role": "user", "content": 3}]}, r"field 'prompt'\[1\]\.content is int"),
        ({"prompt": 7}, r"field 'prompt' is int; expected a string or a list of \{role, content\} turns"),
    ],
)
def test_bad_conversational_records_name_the_field(record, message):
    with pytest.raises(DataFormatError, match=message):
        Pool.from_records([record])


def test_bad_turn_in_a_file_names_file_line_and_id(tmp_path):
    path = tmp_path / "pc.jsonl"
    good = {"id": "a", "prompt": [user("u")], "completion": [assistant("a")]}
    bad = {"id": "b", "prompt": [user("u")], "completion": [{"role": "assistant", "content": None}]}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"pc\.jsonl line 2 \(id 'b'\), prompt_completion format: field "
                       r"'completion'\[0\]\.content is null; expected a string"):  # fmt: skip
        read_pool(path)


# ----------------------------------------------------------------------------------------------- CSV cells


def test_csv_decodes_only_the_columns_the_format_reads_as_lists(tmp_path):
    turns = [user("Hi"), assistant("Hello!")]
    path = write_csv(tmp_path / "m.csv", [
        {"id": "1", "messages": json.dumps(turns), "conversations": "[oops", "history": "as told", "n": "3"},
    ])  # fmt: skip
    pool = read_pool(path)  # conversations and history are not read by the messages format: text, not an error
    assert pool.format == "messages" and pool.messages == [turns]
    assert pool.records([0]) == [{"id": "1", "messages": json.dumps(turns), "conversations": "[oops",
                                  "history": "as told", "n": "3"}]  # the raw cells as read  # fmt: skip
    alpaca = read_pool(write_csv(tmp_path / "a.csv", [
        {"instruction": "q2", "output": "a2", "history": '[["q1", "a1"]]', "meta": '{"a": 1}'},
        {"instruction": "q3", "output": "a3", "history": "", "meta": "{oops"},
    ]))  # fmt: skip
    assert alpaca.messages == [
        [user("q1"), assistant("a1"), user("q2"), assistant("a2")],
        [user("q3"), assistant("a3")],  # an empty history cell is none
    ]
    notes = read_pool(write_csv(tmp_path / "p.csv", [{"prompt": "Hi", "history": "patient history: none"}]))
    assert notes.messages == [[user("Hi")]]  # a user's text column named history, in a format that does not read it


def test_csv_sharegpt_column_decoded_and_tsv_too(tmp_path):
    conv = [{"from": "human", "value": 'Hi, "you"\tthere'}, {"from": "gpt", "value": "Hello!\nBye."}]
    for delimiter, suffix in ((",", ".csv"), ("\t", ".tsv")):
        path = write_csv(tmp_path / f"s{suffix}", [{"conversations": json.dumps(conv), "id": "x"}], delimiter)
        pool = read_pool(path)
        assert pool.format == "sharegpt" and pool.messages == [[user('Hi, "you"\tthere'), assistant("Hello!\nBye.")]]


def test_csv_prompt_completion_told_apart_by_the_first_row(tmp_path):
    chat = read_pool(write_csv(tmp_path / "chat.csv", [
        {"prompt": json.dumps([system("S"), user("Hi")]), "completion": json.dumps([assistant("Yo")])},
        {"prompt": json.dumps([user("Q")]), "completion": ""},
    ]))  # fmt: skip
    assert chat.messages == [[system("S"), user("Hi"), assistant("Yo")], [user("Q")]]
    plain = read_pool(write_csv(tmp_path / "plain.csv", [
        {"prompt": "What is [1, 2]?", "completion": "A list."},
        {"prompt": json.dumps([user("Q")]), "completion": "[]"},  # JSON-looking text stays text
    ]))  # fmt: skip
    assert plain.messages == [
        [user("What is [1, 2]?"), assistant("A list.")],
        [user('[{"role": "user", "content": "Q"}]'), assistant("[]")],
    ]


@pytest.mark.parametrize(
    ("rows", "column", "line"),
    [
        ([{"id": "a", "messages": json.dumps([user("u")])}, {"id": "b", "messages": "Hi there"}], "messages", 3),
        ([{"conversations": '[{"from": "human", "value": "u"'}], "conversations", 2),
        ([{"instruction": "q", "output": "a", "history": "q0 / a0"}], "history", 2),
        ([{"prompt": json.dumps([user("u")]), "completion": json.dumps([assistant("a")])},
          {"prompt": "plain text", "completion": json.dumps([assistant("a")])}], "prompt", 3),
        ([{"prompt": json.dumps([user("u")]), "completion": "plain answer"}], "completion", 2),
    ],
)  # fmt: skip
def test_csv_cell_that_is_not_json_names_file_line_and_column(tmp_path, rows, column, line):
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataFormatError) as info:
        read_pool(path)
    message = str(info.value)
    where = f"{path} line {line}" + (" (id 'b')" if column == "messages" else "")
    assert message.startswith(f"{where}, column {column!r}: the cell is not valid JSON (")
    assert "write the cell as JSON, such as [" in message and "or leave it empty for none" in message
    if column in ("prompt", "completion"):
        assert "the first row's prompt is a JSON list of turns" in message


def test_csv_line_numbers_count_multi_line_cells(tmp_path):
    rows = [{"messages": json.dumps([user("a")], indent=2)}, {"messages": "{"}]  # the first row spans lines 2-7
    path = write_csv(tmp_path / "ml.csv", rows)
    assert read_pool(write_csv(tmp_path / "ok.csv", rows[:1])).messages == [[user("a")]]
    with pytest.raises(DataFormatError, match=r"ml\.csv line 8, column 'messages'"):
        read_pool(path)


def test_mapped_fields_read_csv_cells_as_text(tmp_path):
    path = write_csv(tmp_path / "f.csv", [{"Q": "Hi", "messages": "not json", "A": "Yo"}])
    pool = read_pool(path, fields={"prompt": "Q", "response": "A"})
    assert pool.messages == [[user("Hi"), assistant("Yo")]] and pool.records([0])[0]["messages"] == "not json"
