"""Reading the datakit's original files in their native formats, and the normalized ``messages`` files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kmq.data import read_pool
from kmq.errors import DataFormatError, MissingArtifactError

# (file under datakit, format, container, records, id_source, first id)
ORIG = [
    ("alpaca_gpt4_demo/orig/alpaca_en_demo.json", "alpaca", "json", 999, "position", "0"),
    ("fastchat_dummy/orig/dummy_conversation.json", "sharegpt", "json", 500, "field", "identity_0"),
    ("lima/orig/train.jsonl", "sharegpt", "jsonl", 1030, "position", "0"),
    ("gsm8k_train/orig/train.jsonl", "prompt_completion", "jsonl", 7473, "position", "0"),
    ("instructionwild_v2/orig/user_1.jsonl", "alpaca", "jsonl", 429, "position", "0"),
    ("code_alpaca_2k/orig/code_alpaca_2k.json", "alpaca", "json", 2017, "position", "0"),
    ("humaneval/orig/HumanEval.jsonl.gz", "prompt_completion", "jsonl.gz", 164, "position", "0"),
    ("dolly_3k/dolly_3k.jsonl", "messages", "jsonl", 2996, "field", "dolly_3k-0000"),
]


def normalized(datakit: Path, name: str) -> list[dict]:
    with open(datakit / name / f"{name}.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.mark.parametrize(("rel", "fmt", "container", "n", "id_source", "first_id"), ORIG)
def test_read_datakit_file(datakit, rel, fmt, container, n, id_source, first_id):
    pool = read_pool(datakit / rel)
    assert (pool.format, pool.container, len(pool), pool.id_source) == (fmt, container, n, id_source)
    assert pool.ids[0] == first_id and len(set(pool.ids)) == n
    assert pool.source == str(datakit / rel)
    assert len(pool.messages) == n and all(turns for turns in pool.messages)
    for view in ("conversation", "prompt", "response"):
        texts = pool.texts(view)
        assert len(texts) == n and all(isinstance(t, str) for t in texts)
    assert all(t for t in pool.texts("prompt"))
    assert len(pool.fingerprint) == 64 and pool.fingerprint == read_pool(datakit / rel).fingerprint


def test_counts_match_stats_json(datakit):
    stats = json.loads((datakit / "STATS.json").read_text())
    for name in ("alpaca_gpt4_demo", "fastchat_dummy", "lima", "gsm8k_train", "code_alpaca_2k"):
        orig = next(rel for rel, *_ in ORIG if rel.startswith(name + "/"))
        assert len(read_pool(datakit / orig)) == stats[name]["records"]


@pytest.mark.parametrize(
    ("name", "rel"),
    [
        ("alpaca_gpt4_demo", "alpaca_gpt4_demo/orig/alpaca_en_demo.json"),
        ("code_alpaca_2k", "code_alpaca_2k/orig/code_alpaca_2k.json"),
        ("lima", "lima/orig/train.jsonl"),
        ("gsm8k_train", "gsm8k_train/orig/train.jsonl"),
        ("fastchat_dummy", "fastchat_dummy/orig/dummy_conversation.json"),
        ("instructionwild_v2", "instructionwild_v2/orig/user_1.jsonl"),
    ],
)
def test_orig_converts_to_the_normalized_messages(datakit, name, rel):
    """The datakit's normalized files were built with the same rules: the messages must agree exactly."""
    pool = read_pool(datakit / rel)
    expected = [record["messages"] for record in normalized(datakit, name)[: len(pool)]]
    assert pool.messages == expected


def test_lima_string_conversations_alternate_roles(datakit):
    pool = read_pool(datakit / "lima/orig/train.jsonl")
    lengths = {len(turns) for turns in pool.messages}
    assert {2, 4, 5, 20} <= lengths
    for turns in pool.messages:
        assert [t["role"] for t in turns] == [("user", "assistant")[k % 2] for k in range(len(turns))]
    assert pool.column("source")[:2] == ["stackexchange", "stackexchange"]


def test_instruction_only_pool_has_empty_responses(datakit):
    pool = read_pool(datakit / "instructionwild_v2/orig/user_1.jsonl")
    assert set(pool.texts("response")) == {""}
    assert pool.texts("prompt") == pool.texts("conversation")
    assert pool.columns() == ["instruction", "instruction_type", "special_tag"]
    tags = pool.column("special_tag")
    assert len(tags) == 429 and tags.count(None) == 393


def test_unrepaired_orig_line_gives_file_and_line(datakit):
    """user_2.jsonl has invalid backslash escapes (only the normalized file was repaired)."""
    path = datakit / "instructionwild_v2/orig/user_2.jsonl"
    with pytest.raises(
        DataFormatError, match=r"user_2\.jsonl line 134, column 455: invalid JSON \(Invalid \\escape\)"
    ):
        read_pool(path)


def test_records_are_raw_json_values(datakit):
    rel = "gsm8k_train/orig/train.jsonl"
    pool = read_pool(datakit / rel)
    lines = (datakit / rel).read_text(encoding="utf-8").splitlines()
    picked = [7472, 0, 3, 3]
    assert pool.records(picked) == [json.loads(lines[i]) for i in picked]
    assert pool.records([]) == []
    assert pool.column("answer")[5] == json.loads(lines[5])["answer"]


def test_fingerprint_depends_on_content_and_format_not_path(datakit, tmp_path):
    src = datakit / "fastchat_dummy/orig/dummy_conversation.json"
    copy = tmp_path / "copy.json"
    shutil.copy(src, copy)
    assert read_pool(copy).fingerprint == read_pool(src).fingerprint
    copy.write_bytes(src.read_bytes().replace(b"Vicuna", b"Vicunb", 1))
    assert read_pool(copy).fingerprint != read_pool(src).fingerprint


def test_format_override_on_a_real_file(datakit):
    rel = "self_instruct_user_oriented/orig/user_oriented_instructions.jsonl"
    assert read_pool(datakit / rel).format == "alpaca"
    with pytest.raises(DataFormatError, match=r"line 1 \(id 'user_oriented_task_0'\), prompt_completion format"):
        read_pool(datakit / rel, format="prompt_completion")


def test_undetectable_real_file_lists_fields(datakit):
    with pytest.raises(DataFormatError) as info:
        read_pool(datakit / "arc/orig/arc_easy.jsonl")
    message = str(info.value)
    assert "Cannot detect the format of" in message and "arc_easy.jsonl" in message
    assert "fields found: ['choices', 'query', 'gold']" in message and "prompt_completion (" in message
    assert "--format" in message


def test_hub_name_is_routed_to_the_hub_loader_and_fails_clearly_offline(monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(
        MissingArtifactError, match=r"Could not load the Hugging Face dataset 'no-owner-kmq/no-such-set'"
    ):
        read_pool("no-owner-kmq/no-such-set")


def test_missing_file_is_not_mistaken_for_a_hub_name(tmp_path):
    with pytest.raises(MissingArtifactError, match=r"Pool not found: data/pool\.jsonl"):
        read_pool("data/pool.jsonl")
    with pytest.raises(MissingArtifactError, match="Pool not found"):
        read_pool(tmp_path / "nope.parquet")
