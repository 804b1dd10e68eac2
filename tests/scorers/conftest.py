"""Tiny local models for the model-based scorers, built once per session (see ``tests/tiny_models.py``)."""

from __future__ import annotations

import pytest

from conversations import CONVERSATIONS


def _tiny_models():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import tiny_models

    return tiny_models


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory):
    """Folder of a random tiny Llama with a ChatML chat template (BOS, EOS and PAD tokens)."""
    return _tiny_models().build_causal_lm(tmp_path_factory.mktemp("tiny-llama"), arch="llama")


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory):
    """Folder of a random tiny GPT-2 whose tokenizer has no chat template and no pad token."""
    return _tiny_models().build_causal_lm(tmp_path_factory.mktemp("tiny-gpt2"), arch="gpt2")


@pytest.fixture(scope="session")
def tiny_reward(tmp_path_factory):
    """Folder of a random LlamaForSequenceClassification with num_labels=1."""
    return _tiny_models().build_reward_model(tmp_path_factory.mktemp("tiny-rm"))


@pytest.fixture
def conversations():
    return [[dict(t) for t in conv] for conv in CONVERSATIONS]
