"""Shared fixtures of the iterative-loop tests: a 90-record real pool and tiny local models."""

from __future__ import annotations

import pytest

SOURCES = (("dolly_3k", 30), ("gsm8k_train", 30), ("code_alpaca_2k", 30))


@pytest.fixture(scope="session")
def pool_file(datakit, tmp_path_factory):
    """90 real datakit records from three sources (messages JSONL)."""
    lines = []
    for name, count in SOURCES:
        lines += (datakit / name / f"{name}.jsonl").read_text().splitlines()[:count]
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """A random tiny Llama with a ChatML template (BOS, EOS, PAD), saved locally."""
    pytest.importorskip("transformers")
    from tiny_models import build_causal_lm

    return build_causal_lm(tmp_path_factory.mktemp("tiny-llama"), arch="llama")


@pytest.fixture(scope="session")
def tiny_reward(tmp_path_factory):
    """A random tiny LlamaForSequenceClassification reward model (num_labels=1)."""
    pytest.importorskip("transformers")
    from tiny_models import build_reward_model

    return build_reward_model(tmp_path_factory.mktemp("tiny-rm"))
