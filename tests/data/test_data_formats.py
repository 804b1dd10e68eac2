"""Format detection, conversion to messages, text views and record-level errors, on hand-made records."""

from __future__ import annotations

import pytest

from kmq.data import FORMATS, VIEWS, Pool
from kmq.data.formats import detect_format, to_messages
from kmq.errors import DataFormatError, EmptyPoolError, InvalidParameterError


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def system(text: str) -> dict[str, str]:
    return {"role": "system", "content": text}


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"messages": [], "instruction": "x"}, "messages"),
        ({"conversations": [], "prompt": "x"}, "sharegpt"),
        ({"instruction": "x", "prompt": "y", "output": "z"}, "alpaca"),
        ({"prompt": "x", "completion": "y"}, "prompt_completion"),
        ({"question": "x", "answer": "y"}, "prompt_completion"),
        ({"text": "x"}, None),
    ],
)
def test_detect_format_precedence(record, expected):
    assert detect_format(record) == expected


@pytest.mark.parametrize(
    ("record", "fmt", "expected"),
    [
        (
            {"messages": [system("s"), user("u"), {"role": "assistant", "content": "a", "name": "bot"}]},
            "messages",
            [system("s"), user("u"), assistant("a")],
        ),
        (
            {"conversations": [{"from": "human", "value": "u"}, {"from": "gpt", "value": "a"}], "system": "s"},
            "sharegpt",
            [system("s"), user("u"), assistant("a")],
        ),
        (
            {"conversations": [{"from": "System", "value": "s"}, {"role": "user", "content": "u"}]},
            "sharegpt",
            [system("s"), user("u")],
        ),
        ({"conversations": ["u1", "a1", "u2"]}, "sharegpt", [user("u1"), assistant("a1"), user("u2")]),
        (
            {"instruction": " Do it. ", "input": " now ", "output": " done "},
            "alpaca",
            [user("Do it.\n\nnow"), assistant(" done ")],
        ),
        ({"instruction": "Do it.", "input": "  ", "output": ""}, "alpaca", [user("Do it."), assistant("")]),
        ({"instruction": "Do it.", "input": None}, "alpaca", [user("Do it.")]),
        ({"instruction": "Do it.", "response": "ok"}, "alpaca", [user("Do it."), assistant("ok")]),
        (
            {"instruction": "q2", "output": "a2", "history": [["q1", "a1"]], "system": "s"},
            "alpaca",
            [system("s"), user("q1"), assistant("a1"), user("q2"), assistant("a2")],
        ),
        ({"prompt": "p", "completion": "c", "answer": "x"}, "prompt_completion", [user("p"), assistant("c")]),
        ({"prompt": "p", "response": "r"}, "prompt_completion", [user("p"), assistant("r")]),
        ({"question": "q", "answer": "a"}, "prompt_completion", [user("q"), assistant("a")]),
        ({"prompt": "p", "completion": None}, "prompt_completion", [user("p")]),
    ],
)
def test_to_messages(record, fmt, expected):
    assert to_messages(record, fmt) == expected


def test_views_join_turn_contents_without_role_tags():
    turns = [system("S"), user("U1"), assistant("A1"), user("U2"), assistant("A2")]
    pool = Pool.from_records([{"messages": turns}, {"messages": [user("only")]}])
    assert VIEWS == ("conversation", "prompt", "response")
    assert pool.texts("conversation") == ["S\n\nU1\n\nA1\n\nU2\n\nA2", "only"]
    assert pool.texts("prompt") == ["S\n\nU1\n\nU2", "only"]
    assert pool.texts("response") == ["A1\n\nA2", ""]
    with pytest.raises(InvalidParameterError, match="'view' parameter of Pool.texts"):
        pool.texts("instruction")


def test_from_records_ids_columns_and_fingerprint():
    records = [{"id": 7, "prompt": "a"}, {"id": "x", "prompt": "b", "tag": 1}]
    pool = Pool.from_records(records)
    assert pool.ids == ["7", "x"] and pool.id_source == "field"
    assert pool.columns() == ["id", "prompt", "tag"]
    assert pool.column("tag") == [None, 1]
    assert pool.records([1, 0]) == [records[1], records[0]]
    assert pool.fingerprint == Pool.from_records([dict(r) for r in records]).fingerprint
    with pytest.raises(InvalidParameterError, match=r"Field 'scroe' is not in <records>; fields found: \['id'"):
        pool.column("scroe")


def test_ids_fall_back_to_positions_on_duplicates_or_missing(caplog):
    dup = Pool.from_records([{"id": 1, "prompt": "a"}, {"id": "1", "prompt": "b"}])
    assert dup.ids == ["0", "1"] and dup.id_source == "position"
    assert "duplicate values" in caplog.text
    missing = Pool.from_records([{"id": 1, "prompt": "a"}, {"prompt": "b"}])
    assert missing.ids == ["0", "1"] and missing.id_source == "position"


def test_format_override_changes_conversion_and_fingerprint():
    records = [{"instruction": "i", "prompt": "p", "completion": "c"}]
    auto = Pool.from_records(records)
    forced = Pool.from_records(records, format="prompt_completion")
    assert auto.format == "alpaca" and auto.messages == [[user("i")]]
    assert forced.format == "prompt_completion" and forced.messages == [[user("p"), assistant("c")]]
    assert auto.fingerprint != forced.fingerprint


@pytest.mark.parametrize(
    ("record", "fmt", "message"),
    [
        ({"messages": [{"role": "bot", "content": "x"}]}, "auto", r"'messages'\[0\]\.role is 'bot'; expected one of"),
        (
            {"messages": [{"role": "user", "content": 3}]},
            "auto",
            r"'messages'\[0\]\.content is int; expected a string",
        ),
        ({"messages": []}, "auto", "'messages' is an empty list"),
        ({"messages": "[...]"}, "auto", "'messages' is str; .*CSV cells are strings"),
        ({"conversations": [{"from": "narrator", "value": "x"}]}, "auto", r"\[0\]\.from is 'narrator'"),
        ({"conversations": ["u", {"from": "gpt", "value": "a"}]}, "auto", r"'conversations'\[0\] is str"),
        ({"instruction": ["x"]}, "auto", "'instruction' is list; expected a string"),
        ({"instruction": "x", "output": 5}, "auto", "'output' is int; expected a string or null"),
        ({"instruction": "x", "history": [["only one"]]}, "auto", "'history' must be a list of"),
        ({"question": "q", "answer": 42}, "auto", "'answer' is int"),
        ({"text": "x"}, "alpaca", r"field 'instruction' is missing .*fields found: \['text'\]"),
    ],
)
def test_record_errors_name_record_field_and_expectation(record, fmt, message):
    with pytest.raises(DataFormatError, match=message) as info:
        Pool.from_records([record], format=fmt)
    assert str(info.value).startswith("<records> record 0, ")
    assert "\n" not in str(info.value)


def test_record_error_names_id_and_index():
    records = [{"id": "a", "prompt": "p"}, {"id": "b", "prompt": None}]
    with pytest.raises(
        DataFormatError, match=r"<records> record 1 \(id 'b'\), prompt_completion format: field 'prompt' is null"
    ):
        Pool.from_records(records)


def test_undetectable_and_non_object_and_empty():
    with pytest.raises(DataFormatError, match=r"fields found: \['foo', 'bar'\]; supported: messages \(messages\)"):
        Pool.from_records([{"foo": 1, "bar": 2}])
    with pytest.raises(DataFormatError, match="record 0: the record is list; expected a JSON object"):
        Pool.from_records([["x"]])
    with pytest.raises(EmptyPoolError):
        Pool.from_records([])
    with pytest.raises(InvalidParameterError, match="'format' parameter of read_pool"):
        Pool.from_records([{"prompt": "x"}], format="openai")
    assert FORMATS == ("messages", "sharegpt", "alpaca", "prompt_completion")
