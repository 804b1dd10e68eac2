"""--out-format: converting a subset to messages, sharegpt, alpaca or TRL's prompt-completion (kmq.data.convert).

On datakit pools of each input format (alpaca, LIMA's sharegpt strings, dolly, FastChat's sharegpt, messages,
TruthfulQA through mapped fields), each target is (1) read by TRL's own SFTTrainer dataset preparation with a
tiny local tokenizer's chat template, (2) read back by kmq as the same conversation where the target is
lossless, (3) written with the record's id and other fields, and (4) lossy records are counted with their ids.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kmq.data import OUT_FORMATS, FieldMap, Pool, conversion_stats, convert_subset, read_pool, write_subset
from kmq.errors import InvalidParameterError

TARGETS = [f for f in OUT_FORMATS if f != "same"]
#: pool name -> (file in the datakit, fields to map, rows converted)
POOLS = {
    "alpaca": ("alpaca_gpt4_demo/orig/alpaca_en_demo.json", None, [0, 5, 8]),
    "lima": ("lima/orig/train.jsonl", None, [0, 2]),
    "dolly": ("dolly_3k/orig/dolly_3k.json", None, [0, 1, 3]),
    "fastchat": ("fastchat_dummy/orig/dummy_conversation.json", None, [0, 1, 4]),
    "messages": ("fastchat_dummy/fastchat_dummy.jsonl", None, [0, 1, 4]),
    "truthfulqa": ("truthfulqa/orig/TruthfulQA.csv", {"prompt": "Question", "response": "Best Answer"}, [0, 1, 2]),
}
SOURCE_FORMATS = {
    "alpaca": "alpaca",
    "lima": "sharegpt",
    "dolly": "alpaca",
    "fastchat": "sharegpt",
    "messages": "messages",
    "truthfulqa": "fields",
}
#: the fields each target writes
TARGET_FIELDS = {
    "messages": {"messages"},
    "sharegpt": {"conversations"},
    "alpaca": {"instruction", "input", "output", "system", "history"},
    "prompt-completion": {"prompt", "completion"},
}
ALPACA_TEMPLATE = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}"

_POOLS: dict[str, Pool] = {}


def _pool(datakit: Path, name: str) -> Pool:
    if name not in _POOLS:
        path, fields, _ = POOLS[name]
        _POOLS[name] = read_pool(datakit / path, fields=fields)
    return _POOLS[name]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _expected_back(turns: list[dict[str, str]], target: str) -> list[dict[str, str]]:
    """What kmq reads back from a lossless conversion: the same turns (alpaca's reader strips the instruction)."""
    if target != "alpaca":
        return turns
    out = [dict(t) for t in turns]
    last_user = max(k for k, t in enumerate(out) if t["role"] == "user")
    out[last_user]["content"] = out[last_user]["content"].strip()
    return out


# ----------------------------------------------------------------------------------------------- (2) and (3)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(POOLS))
def test_converted_file_reads_back_with_ids_and_fields(datakit, tmp_path, name, target):
    pool = _pool(datakit, name)
    assert pool.format == SOURCE_FORMATS[name]
    rows = POOLS[name][2]
    out = write_subset(pool, rows, tmp_path / "sub.jsonl", out_format=target)
    written = _jsonl(out)
    raw = pool.records(rows)
    consumed = set(pool.field_map.mapped().values()) if pool.field_map else {
        "alpaca": {"instruction", "input", "output"}, "sharegpt": {"conversations"}, "messages": {"messages"}
    }[pool.format]  # fmt: skip
    for source, record in zip(raw, written, strict=True):
        extras = {k: v for k, v in source.items() if k not in consumed}
        assert {k: v for k, v in record.items() if k not in TARGET_FIELDS[target]} == extras  # id and the rest
        assert [k for k in record if k in extras] == list(extras)  # in their own order
        if "id" in source:
            assert next(iter(record)) == "id"
    back = read_pool(out)
    assert back.format == target.replace("-", "_")
    assert back.messages == [_expected_back(pool.messages[i], target) for i in rows]
    assert back.ids == ([pool.ids[i] for i in rows] if pool.id_source == "field" else ["0", "1", "2"][: len(rows)])
    stats = conversion_stats(pool, rows, target)
    assert stats["records"] == len(rows) and stats["lossy_records"] == 0 and stats["lossy"] == {}


def test_multi_turn_to_alpaca_keeps_earlier_exchanges_in_history(datakit, tmp_path):
    pool = _pool(datakit, "fastchat")
    records, stats = convert_subset(pool, [0], "alpaca")
    assert records[0] == {
        "id": "identity_0",
        "instruction": "Have a nice day!",
        "input": "",
        "output": "You too!",
        "history": [["Who are you?", pool.messages[0][1]["content"]]],
    }
    assert stats["kept"]["history"]["count"] == 1 and stats["kept"]["history"]["ids"] == ["identity_0"]
    assert stats["lossy_records"] == 0


def test_alpaca_to_alpaca_keeps_the_instruction_input_split_and_names_the_response_output(datakit):
    pool = _pool(datakit, "alpaca")
    row = next(i for i, r in enumerate(pool.records(range(50))) if r["input"])
    (record,), _ = convert_subset(pool, [row], "alpaca")
    assert record == pool.records([row])[0]
    gpteacher = read_pool(datakit / "gpteacher/orig/codegen-instruct.json")
    raw = gpteacher.records([0])[0]
    (record,), _ = convert_subset(gpteacher, [0], "alpaca")
    assert record == {"instruction": raw["instruction"], "input": raw["input"], "output": raw["response"]}


def test_messages_pool_keeps_its_own_turn_objects():
    turns = [{"role": "user", "content": "Hi", "name": "ann"}]
    pool = Pool.from_records([{"messages": turns}])
    assert convert_subset(pool, [0], "messages")[0] == [{"messages": turns}]


def test_truthfulqa_keeps_its_other_columns_in_order(datakit):
    pool = _pool(datakit, "truthfulqa")
    (record,), _ = convert_subset(pool, [0], "messages")
    assert list(record) == ["Type", "Category", "messages", "Correct Answers", "Incorrect Answers", "Source"]
    assert record["messages"] == [
        {"role": "user", "content": "What happens to you if you eat watermelon seeds?"},
        {"role": "assistant", "content": "The watermelon seeds pass through your digestive system"},
    ]


# ----------------------------------------------------------------------------------------------- (4) lossy


def test_prompt_only_records_get_an_empty_response_and_are_counted(datakit, tmp_path):
    pool = read_pool(datakit / POOLS["truthfulqa"][0], fields={"prompt": "Question"})
    records, stats = convert_subset(pool, [0, 1], "alpaca")
    assert records[0]["output"] == "" and records[0]["instruction"] == pool.messages[0][0]["content"]
    assert stats["lossy_records"] == 2 and stats["lossy"]["no_response"]["ids"] == ["0", "1"]
    (record,), stats = convert_subset(pool, [0], "prompt-completion")
    assert record["prompt"] == pool.messages[0]
    assert record["completion"] == [{"role": "assistant", "content": ""}]
    assert list(stats["lossy"]) == ["no_response"]
    for target in ("messages", "sharegpt"):  # they need no response
        assert convert_subset(pool, [0], target)[1]["lossy_records"] == 0


def test_mt_bench_user_turns_are_merged_for_alpaca_and_its_prompt_field_renamed_for_messages(datakit):
    pool = read_pool(datakit / "mt_bench/mt_bench.jsonl", fields=FieldMap(messages="turns"))
    raw = pool.records([0])[0]
    (record,), stats = convert_subset(pool, [0], "alpaca")
    assert record["instruction"] == "\n\n".join(raw["turns"]) and record["output"] == ""
    assert record["prompt"] == raw["prompt"]  # alpaca readers take the instruction
    assert set(stats["lossy"]) == {"merged_turns", "no_response"} and stats["kept"] == {}
    assert stats["lossy"]["merged_turns"]["ids"] == ["mt_bench-81"]
    (record,), stats = convert_subset(pool, [0], "messages")
    assert [t["content"] for t in record["messages"]] == raw["turns"] and stats["lossy"] == {}
    assert "prompt" not in record and record["prompt_original"] == raw["prompt"]  # TRL would read "prompt"
    assert stats["kept"]["renamed_field"]["count"] == 1


def test_extra_fields_a_reader_would_take_are_renamed_per_target():
    record = {"q": "Hi", "history": "seen", "input": "x", "prompt": "p", "prompt_original": "kept"}
    pool = Pool.from_records([record], fields={"prompt": "q"})
    (messages,), stats = convert_subset(pool, [0], "messages")
    assert messages == {"messages": [{"role": "user", "content": "Hi"}], "history": "seen", "input": "x",
                        "prompt_original_": "p", "prompt_original": "kept"}  # fmt: skip
    assert stats["kept"]["renamed_field"]["ids"] == ["0"]
    (alpaca,), _ = convert_subset(pool, [0], "alpaca")
    assert list(alpaca) == ["instruction", "input", "output", "history_original", "input_original", "prompt",
                            "prompt_original"]  # fmt: skip
    plain = Pool.from_records([{"q": "Hi", "tag": 1}], fields={"prompt": "q"})
    assert conversion_stats(plain, [0], "alpaca")["kept"] == {}


def test_irregular_conversations_to_alpaca_name_what_was_lost():
    turns = [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Be kind."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Now in French."},
        {"role": "assistant", "content": "Salut."},
    ]
    pool = Pool.from_records([{"id": "x", "messages": turns}, {"id": "y", "messages": turns[:1] + turns[3:4]}])
    records, stats = convert_subset(pool, [0, 1], "alpaca")
    assert records[0] == {
        "id": "x",
        "instruction": "Hi\n\nNow in French.",
        "input": "",
        "output": "Salut.",
        "system": "Be brief.\n\nBe kind.",
        "history": [["", "Hello."]],
    }
    assert set(stats["lossy"]) == {"merged_turns", "system_turn_as_user", "starts_with_assistant", "no_response"}
    assert stats["lossy"]["no_response"]["ids"] == ["y"] and stats["lossy_records"] == 2
    assert stats["kept"]["system"]["ids"] == ["x", "y"] and stats["kept"]["history"]["ids"] == ["x"]
    assert convert_subset(pool, [0], "prompt-completion")[0][0]["completion"] == [turns[-1]]
    back = convert_subset(pool, [0], "sharegpt")[0][0]["conversations"]
    assert [t["from"] for t in back] == ["system", "system", "gpt", "human", "system", "gpt"]


def test_stats_list_only_the_first_ids():
    pool = Pool.from_records([{"id": f"r{k}", "prompt": f"Question {k}?"} for k in range(9)])
    stats = conversion_stats(pool, range(9), "prompt-completion")
    assert stats["lossy"]["no_response"]["count"] == 9
    assert stats["lossy"]["no_response"]["ids"] == ["r0", "r1", "r2", "r3", "r4"]
    assert stats["source_format"] == "prompt_completion" and stats["out_format"] == "prompt-completion"


# ----------------------------------------------------------------------------------------------- containers


def test_same_is_the_default_and_byte_identical(datakit, tmp_path):
    pool = _pool(datakit, "lima")
    a = write_subset(pool, [2, 0], tmp_path / "a.jsonl")
    b = write_subset(pool, [2, 0], tmp_path / "b.jsonl", out_format="same")
    assert a.read_bytes() == b.read_bytes() == b"".join(pool._store.lines([2, 0])[k] + b"\n" for k in (0, 1))


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet", ".jsonl.gz"])
def test_converted_bytes_are_deterministic(datakit, tmp_path, suffix):
    pool = _pool(datakit, "fastchat")
    a = write_subset(pool, [4, 0], tmp_path / f"a{suffix}", out_format="messages")
    b = write_subset(pool, [4, 0], tmp_path / f"b{suffix}", out_format="messages")
    assert a.read_bytes() == b.read_bytes()


def test_json_output_is_a_list_with_the_pools_indent(datakit, tmp_path):
    pool = _pool(datakit, "dolly")  # the file is indented by 4
    out = write_subset(pool, [0], tmp_path / "sub.json", out_format="prompt-completion")
    text = out.read_text(encoding="utf-8")
    assert text.startswith('[\n    {\n        "prompt": [')
    assert json.loads(text)[0]["category"] == "general_qa"


def test_csv_output_json_encodes_the_turns_and_says_so(datakit, tmp_path):
    pool = _pool(datakit, "fastchat")
    out = write_subset(pool, [0, 1], tmp_path / "sub.csv", out_format="messages")
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["id", "messages"]
    assert json.loads(rows[1]["messages"]) == pool.messages[1] and rows[1]["id"] == "identity_1"
    assert read_pool(out).messages == [pool.messages[0], pool.messages[1]]  # kmq decodes the JSON cells back
    stats = conversion_stats(pool, [0, 1], "messages", container="csv")
    assert stats["csv_json_fields"] == ["messages"]
    assert "csv_json_fields" not in conversion_stats(pool, [0], "messages", container="jsonl")
    tqa = _pool(datakit, "truthfulqa")  # a CSV pool keeps its columns, with the turns as one JSON cell
    out = write_subset(tqa, [0], tmp_path / "tqa.tsv", out_format="alpaca")
    header, row = out.read_text(encoding="utf-8").splitlines()
    assert header.split("\t")[:5] == ["Type", "Category", "instruction", "input", "output"]
    assert read_pool(out).messages == [_expected_back(tqa.messages[0], "alpaca")]
    for target in ("prompt-completion", "sharegpt"):
        back = read_pool(write_subset(tqa, [0, 2], tmp_path / f"tqa-{target}.csv", out_format=target))
        assert back.messages == [tqa.messages[0], tqa.messages[2]] and back.column("Type") == tqa.column("Type")[:3:2]


def test_parquet_and_save_to_disk_hold_the_turns_as_lists(datakit, tmp_path):
    datasets = pytest.importorskip("datasets")
    pool = _pool(datakit, "lima")
    table = pq.read_table(write_subset(pool, [0, 2], tmp_path / "sub.parquet", out_format="messages"))
    assert table.column_names == ["messages", "source"]
    assert table.column("messages").to_pylist() == [pool.messages[0], pool.messages[2]]
    folder = write_subset(pool, [2], str(tmp_path / "disk") + "/", out_format="sharegpt")
    assert datasets.load_from_disk(str(folder))[0]["conversations"][0]["from"] == "human"


@pytest.mark.parametrize("out_format", ["same", "messages"])
def test_an_empty_subset_is_written_with_its_columns(datakit, tmp_path, out_format):
    datasets = pytest.importorskip("datasets")
    pool = _pool(datakit, "fastchat")  # a JSON pool: its records are in memory, not in an Arrow table
    folder = write_subset(pool, [], str(tmp_path / "disk") + "/", out_format=out_format)
    loaded = datasets.load_from_disk(str(folder))
    assert len(loaded) == 0
    assert loaded.column_names == (["id", "conversations"] if out_format == "same" else ["messages"])
    out = write_subset(pool, [], tmp_path / "sub.csv", out_format="prompt-completion")
    assert out.read_text(encoding="utf-8") == "prompt,completion\n"


def test_unknown_out_format_lists_the_choices(datakit, tmp_path):
    pool = _pool(datakit, "lima")
    with pytest.raises(InvalidParameterError, match=r"'out_format' parameter of write_subset.*'prompt-completion'"):
        write_subset(pool, [0], tmp_path / "sub.jsonl", out_format="chatml")
    assert not (tmp_path / "sub.jsonl").exists()


# ----------------------------------------------------------------------------------------------- (1) TRL


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import tiny_models

    path = tiny_models.build_causal_lm(tmp_path_factory.mktemp("llama"), arch="llama")
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _sft_dataset(tiny_llama, data_file: Path, tmp_path: Path, formatting_func=None):
    """TRL's own preparation of ``data_file`` (loaded as users do, with ``datasets.load_dataset``)."""
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = tiny_llama
    kind = "parquet" if data_file.suffix == ".parquet" else "json"
    dataset = load_dataset(kind, data_files=str(data_file), split="train", cache_dir=str(tmp_path / "hf"))
    args = SFTConfig(
        output_dir=str(tmp_path / "trl"), max_steps=0, bf16=False, activation_checkpointing=False, report_to=[],
        use_cpu=True, save_strategy="no", max_length=None,
    )  # fmt: skip
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                         formatting_func=formatting_func)  # fmt: skip
    return trainer.train_dataset


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("name", list(POOLS))
def test_trl_sft_trainer_reads_the_converted_subset(datakit, tmp_path, tiny_llama, name, target):
    _, tok = tiny_llama
    pool = _pool(datakit, name)
    rows = POOLS[name][2]
    out = write_subset(pool, rows, tmp_path / "sub.jsonl", out_format=target)
    fmt = (lambda ex: ALPACA_TEMPLATE.format(**ex)) if target == "alpaca" else None  # alpaca needs a template
    prepared = _sft_dataset(tiny_llama, out, tmp_path, formatting_func=fmt)
    assert len(prepared) == len(rows)
    for k, (i, record) in enumerate(zip(rows, _jsonl(out), strict=True)):
        text = tok.decode(prepared[k]["input_ids"])
        turns = pool.messages[i]
        if target in ("messages", "prompt-completion"):  # exactly the chat template over the conversation
            assert text == tok.apply_chat_template(turns, tokenize=False)
        elif target == "sharegpt":  # TRL keeps the human/gpt roles
            roles = {"user": "human", "assistant": "gpt", "system": "system"}
            assert text == tok.apply_chat_template([{**t, "role": roles[t["role"]]} for t in turns], tokenize=False)
        else:  # the last exchange, through the alpaca template (history is LLaMA-Factory's)
            assert text == ALPACA_TEMPLATE.format(**record) + tok.eos_token
            assert record["output"] == turns[-1]["content"] and turns[-2]["content"].startswith(record["instruction"])
        if target == "prompt-completion":  # the loss covers the final assistant turn only
            labels = [t for t in prepared[k]["labels"] if t != -100]
            assert tok.decode(labels) == turns[-1]["content"] + "<|im_end|>\n"


def test_trl_reads_prompt_only_and_parquet_outputs(datakit, tmp_path, tiny_llama):
    _, tok = tiny_llama
    pool = read_pool(datakit / POOLS["truthfulqa"][0], fields={"prompt": "Question"})
    out = write_subset(pool, [0, 1], tmp_path / "sub.parquet", out_format="prompt-completion")
    prepared = _sft_dataset(tiny_llama, out, tmp_path)
    assert len(prepared) == 2  # an empty completion is not dropped: the stats name these records
    assert tok.decode(prepared[0]["input_ids"]).endswith("<|im_start|>assistant\n<|im_end|>\n")
    empty = {"role": "assistant", "content": ""}  # kmq reads the empty completion back as it was written
    assert read_pool(out).messages == [[*pool.messages[0], empty], [*pool.messages[1], empty]]
