"""The hf generator caps ``max_new_tokens`` to what the model's window leaves after the prompt (issue 11)."""

from __future__ import annotations

import logging

import pytest

from kmq.loop.config import GenerateConfig
from kmq.loop.generate import HFGenerator, answer_room, context_length, prompt_room

pytest.importorskip("transformers")

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Explain why the sky is blue. " * 12}],  # longer than the window
    [{"role": "user", "content": "Add 2 and 3."}],
]


@pytest.fixture(scope="module")
def short_gpt2(tmp_path_factory):
    """A GPT-2 with learned positions for 32 tokens only: generating past them is an index error."""
    from tiny_models import build_causal_lm

    return build_causal_lm(tmp_path_factory.mktemp("gpt2-32"), arch="gpt2", max_positions=32)


def test_answers_are_capped_to_the_window_and_counted_once(short_gpt2, caplog):
    from transformers import AutoTokenizer

    cfg = GenerateConfig(max_new_tokens=100, max_prompt_length=2048, batch_size=1, device="cpu")
    gen = HFGenerator(cfg, show_progress=False)
    with caplog.at_level(logging.INFO, logger="kmq"):
        answers = gen.generate(str(short_gpt2), PROMPTS, round=1)
    assert len(answers) == 3
    assert gen.stats_ == {"context": 32, "capped": 3}
    capped = [r.getMessage() for r in caplog.records if "capped" in r.getMessage()]
    assert capped == [f"round 1: 3 of 3 prompts left fewer than max_new_tokens=100 tokens of {short_gpt2}'s "
                      "32-token context: their answers were capped to fit"]  # fmt: skip
    tok = AutoTokenizer.from_pretrained(short_gpt2)
    for answer in answers:  # each answer fits in what the window left
        assert len(tok(answer, add_special_tokens=False)["input_ids"]) <= 32


def test_a_window_with_room_caps_nothing(tiny_llama):
    gen = HFGenerator(GenerateConfig(max_new_tokens=4, batch_size=2, device="cpu"), show_progress=False)
    assert len(gen.generate(str(tiny_llama), PROMPTS)) == 3
    assert gen.stats_ == {"context": 512, "capped": 0}


def test_context_is_the_smaller_of_the_model_and_tokenizer_limits():
    class Config:
        max_position_embeddings = 4096

    class Tok:
        model_max_length = 2048

    class NoLimit:
        model_max_length = int(1e30)  # transformers' "no limit"

    assert context_length(Config(), Tok()) == 2048
    assert context_length(Config(), NoLimit()) == 4096
    assert context_length(object(), NoLimit()) is None


def test_prompt_and_answer_rooms():
    assert prompt_room(2048, 512, None) == 2048 and answer_room(512, 4000, None) == 512
    assert prompt_room(2048, 512, 4096) == 2048 and answer_room(512, 2048, 4096) == 512
    assert prompt_room(2048, 512, 1024) == 512 and answer_room(512, 512, 1024) == 512
    # a window no larger than max_new_tokens: half of it for the prompt, the rest for the answer
    assert prompt_room(2048, 512, 512) == 256 and answer_room(512, 256, 512) == 256
    assert prompt_room(2048, 100, 32) == 16 and answer_room(100, 16, 32) == 16
    assert answer_room(100, 32, 32) == 1  # never below one token
