"""Tiny local models for the model-based scorers, built once per session (see ``tests/tiny_models.py``)."""

from __future__ import annotations

import pytest


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


CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "The capital of France is Paris."}],
    [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Give three tips for staying healthy."},
     {"role": "assistant", "content": "Eat a balanced diet, exercise regularly and sleep well."},
     {"role": "user", "content": "And one more?"},
     {"role": "assistant", "content": "Drink water."}],
    [{"role": "user", "content": "Write a short poem about the sea, please, with a few lines about the wind."},
     {"role": "assistant", "content": "The sea is wide, the waves are blue, the wind is singing songs for you."}],
    [{"role": "user", "content": "Translate 'good morning' into Spanish."}, {"role": "assistant", "content": ""}],
]  # fmt: skip


@pytest.fixture
def conversations():
    return [[dict(t) for t in conv] for conv in CONVERSATIONS]
