"""Field mapping on input (issue 14): ``read_pool(..., fields=FieldMap(...))`` and ``--prompt-field`` and friends.

On the datakit's own files that no format fits: TruthfulQA's CSV (``Question`` / ``Best Answer``), WizardLM's
testset (``Instruction``) and MT-Bench (``turns``). The records stay as they are; only the chat view is mapped.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kmq.config import RunConfig, build
from kmq.data import FieldMap, Pool, read_pool
from kmq.errors import DataFormatError, InvalidParameterError
from kmq.loop.config import IterateConfig

TRUTHFULQA = "truthfulqa/orig/TruthfulQA.csv"


def csv_rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_truthfulqa_csv_maps_question_and_best_answer(datakit):
    path = datakit / TRUTHFULQA
    pool = read_pool(path, fields=FieldMap(prompt="Question", response="Best Answer"))
    rows = csv_rows(path)
    assert (len(pool), pool.format, pool.container) == (817, "fields", "csv")
    assert pool.field_map == FieldMap(prompt="Question", response="Best Answer")
    assert pool.messages[0] == [
        {"role": "user", "content": rows[0]["Question"]},
        {"role": "assistant", "content": rows[0]["Best Answer"]},
    ]
    assert pool.records([0, 816]) == [rows[0], rows[816]]  # the records themselves are not changed
    assert pool.texts("prompt") == [r["Question"] for r in rows]


def test_truthfulqa_is_refused_without_a_mapping(datakit):
    with pytest.raises(DataFormatError, match="Cannot detect the format"):
        read_pool(datakit / TRUTHFULQA)


def test_wizardlm_instruction_only(datakit):
    pool = read_pool(datakit / "wizardlm_testset/orig/WizardLM_testset.jsonl", fields={"prompt": "Instruction"})
    assert len(pool) == 218
    assert all(len(turns) == 1 and turns[0]["role"] == "user" for turns in pool.messages)
    assert pool.texts("response") == [""] * 218


def test_mt_bench_turns_are_user_turns(datakit):
    path = datakit / "mt_bench/orig/question.jsonl"
    pool = read_pool(path, fields=FieldMap(messages="turns"))
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert pool.messages[0] == [{"role": "user", "content": t} for t in first["turns"]]
    assert pool.records([0]) == [first]


def test_system_and_turn_objects_of_both_kinds():
    records = [
        {"sys": "Be brief.", "chat": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
        {"sys": None, "chat": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]},
    ]
    pool = read_pool(records, fields={"messages": "chat", "system": "sys"})
    assert pool.messages == [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello"}],
        [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
    ]  # fmt: skip


def test_response_null_or_absent_means_no_answer():
    records = [{"q": "a", "r": "b"}, {"q": "c", "r": None}, {"q": "d"}]
    pool = Pool.from_records(records, fields={"prompt": "q", "response": "r"})
    assert pool.texts("response") == ["b", "", ""]


def test_a_field_no_record_has_names_the_file_and_its_fields(datakit):
    path = datakit / TRUTHFULQA
    for fields in ({"prompt": "question"}, {"prompt": "Question", "response": "best_answer"}):
        with pytest.raises(DataFormatError) as info:
            read_pool(path, fields=fields)
        message = str(info.value)
        assert str(path) in message and "no record has the mapped field" in message
        assert "'Best Answer'" in message and "--" in message  # the fields it does have, and the flag


def test_a_record_without_the_prompt_field_is_named(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text('{"q": "a"}\n{"x": "b"}\n', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"pool.jsonl line 2.*no field 'q'"):
        read_pool(path, fields={"prompt": "q"})
    path.write_text('{"x": "b"}\n{"q": "a"}\n', encoding="utf-8")  # the first lacks it, a later one has it
    with pytest.raises(DataFormatError, match=r"pool.jsonl line 1.*no field 'q'"):
        read_pool(path, fields={"prompt": "q"})


def test_values_that_do_not_fit_name_the_field(datakit):
    with pytest.raises(DataFormatError, match=r"line 1.*'turns' is list.*--messages-field"):
        read_pool(datakit / "mt_bench/orig/question.jsonl", fields={"prompt": "turns"})
    with pytest.raises(DataFormatError, match=r"'Question' is a string.*CSV cells"):
        read_pool(datakit / TRUTHFULQA, fields={"messages": "Question"})
    with pytest.raises(DataFormatError, match=r"'r' \(fields.response.*is int"):
        read_pool([{"q": "a", "r": 3}], fields={"prompt": "q", "response": "r"})


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"prompt": "a", "messages": "b"}, "not both"),
        ({"response": "a"}, "needs --prompt-field or --messages-field"),
        ({"prompt": "a", "response": "a"}, "name one field twice"),
        ({"prompt": ""}, "non-empty field name"),
        ({"query": "a"}, "unknown key"),
        ("Question", "must be a FieldMap"),
    ],
)
def test_malformed_mappings(fields, match):
    with pytest.raises(InvalidParameterError, match=match):
        read_pool([{"a": "x", "b": "y"}], fields=fields)


def test_a_mapping_and_a_format_exclude_each_other():
    with pytest.raises(InvalidParameterError, match="pass one of them"):
        read_pool([{"prompt": "x"}], format="prompt_completion", fields={"prompt": "prompt"})


def test_the_fingerprint_follows_the_mapping():
    records = [{"prompt": "x", "a": "1", "b": "2"}]
    plain = read_pool(records)
    a = read_pool(records, fields={"prompt": "prompt", "response": "a"})
    b = read_pool(records, fields={"prompt": "prompt", "response": "b"})
    assert len({plain.fingerprint, a.fingerprint, b.fingerprint}) == 3
    assert read_pool(records, fields=FieldMap(prompt="prompt", response="a")).fingerprint == a.fingerprint
    assert read_pool(records, fields=FieldMap()).fingerprint == plain.fingerprint  # nothing mapped: no mapping


def test_config_sections_reach_read_pool(datakit):
    cfg = RunConfig.from_dict({"fields": {"prompt": "Question", "response": "Best Answer"}})
    assert FieldMap.coerce(cfg.fields) == FieldMap(prompt="Question", response="Best Answer")
    assert FieldMap.coerce(RunConfig().fields) is None
    icfg = build(IterateConfig, None, {"fields.messages": "turns"})
    assert icfg.run_config().fields.messages == "turns"
    pool = read_pool(datakit / TRUTHFULQA, fields=cfg.fields)
    assert pool.format == "fields"
    with pytest.raises(InvalidParameterError, match=r"'fields.prompt' setting must be a string"):
        RunConfig.from_dict({"fields": {"prompt": 3}})


def kmq_select(pool: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "kmq.cli.main", "select", str(pool), "--budget", "40", "--out", str(out),
           "--embedder", "hashing", "-q", *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KMQ_DEBUG": "0"}, timeout=300)


def picked(out: Path) -> list[int]:
    table = pq.read_table(Path(f"{out}.kmq-run") / "selection.parquet")
    return sorted(table.column("pool_index").to_pylist())


def test_cli_select_on_truthfulqa_with_mapped_fields(datakit, tmp_path):
    path, out = datakit / TRUTHFULQA, tmp_path / "subset.csv"
    done = kmq_select(path, out, "--prompt-field", "Question", "--response-field", "Best Answer")
    assert done.returncode == 0, done.stderr
    rows = csv_rows(path)
    assert csv_rows(out) == [rows[i] for i in picked(out)]  # the input's own schema, records unchanged
    assert len(csv_rows(out)) == 40
    config = (Path(f"{out}.kmq-run") / "config.yaml").read_text(encoding="utf-8")
    assert "prompt: Question" in config and "response: Best Answer" in config  # a rerun from it maps again


def test_cli_names_the_missing_field(datakit, tmp_path):
    done = kmq_select(datakit / TRUTHFULQA, tmp_path / "subset.csv", "--prompt-field", "question")
    assert done.returncode == 2
    assert "no record has the mapped field 'question'" in done.stderr and "'Question'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
