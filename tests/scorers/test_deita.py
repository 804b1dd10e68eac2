"""Deita complexity x quality scoring with tiny local causal LMs (random weights: the code path is real)."""

import numpy as np
import pytest

from kmq.scorers import DeitaScorer, get_scorer
from kmq.scorers.deita import COMPLEXITY_TEMPLATE, QUALITY_TEMPLATE, deita_turns, digit_token_ids, expected_score

torch = pytest.importorskip("torch")


def _direct(scorer, prompt: str) -> float:
    """Expectation of 1..6 under the softmax of the next-token logits of "1".."6", one prompt, plain forward."""
    tok, model = scorer.tokenizer, scorer.model
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(1, 7)]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1].double()
    p = torch.softmax(logits[digits], dim=0).numpy()
    return float(p @ np.arange(1, 7))


def test_published_templates():
    assert COMPLEXITY_TEMPLATE.format(instruction="Q") == (
        "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
        "##Query: Q  \n##Complexity: "
    )
    assert QUALITY_TEMPLATE.format(instruction="Q", output="A") == (
        "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
        "Question. \n #Question#:\nQ\n#Response#:\nA \n##Quality: "
    )


def test_turns_pair_by_role_with_a_system_message(conversations):
    assert deita_turns(conversations[2]) == [
        ("Give three tips for staying healthy.", "Eat a balanced diet, exercise regularly and sleep well."),
        ("And one more?", "Drink water."),
    ]
    assert deita_turns([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]) == [("a", ""), ("b", "")]


def test_expected_score_is_a_float_expectation():
    logits = np.array([[0.0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 50.0], [3.0, 1, 0, 0, 0, 0]])
    got = expected_score(logits)
    assert got[0] == pytest.approx(3.5) and got[1] == pytest.approx(6.0)
    p = np.exp([3.0, 1, 0, 0, 0, 0])
    assert got[2] == pytest.approx(p @ np.arange(1, 7) / p.sum())


def test_deita_matches_direct_computation(tiny_llama, tiny_gpt2, conversations):
    scorer = get_scorer(f"deita:{tiny_llama},{tiny_gpt2}", batch_size=3)
    assert isinstance(scorer, DeitaScorer)
    evol = scorer.score_messages(conversations)
    for conv, got, cs, qs in zip(conversations, evol, scorer.complexity_, scorer.quality_, strict=True):
        turns = deita_turns(conv)
        c = [_direct(scorer.complexity, COMPLEXITY_TEMPLATE.format(instruction=i)) for i, _ in turns]
        q = [_direct(scorer.quality, QUALITY_TEMPLATE.format(instruction=i, output=r)) for i, r in turns]
        np.testing.assert_allclose(cs, c, atol=1e-6)
        np.testing.assert_allclose(qs, q, atol=1e-6)
        assert got == pytest.approx(float(np.dot(c, q)), abs=1e-5)
    assert not np.allclose(evol, np.round(evol))  # never truncated to int
    assert scorer.stats_["turns"] == 6
    again = DeitaScorer(str(tiny_llama), str(tiny_gpt2))
    np.testing.assert_array_equal(again.score_messages(conversations), evol)
    assert again.stats_["complexity"]["computed"] == 0 and again.stats_["quality"]["computed"] == 0


def test_digit_tokens(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    ids = digit_token_ids(tok)
    assert [tok.decode([i]) for i in ids] == ["1", "2", "3", "4", "5", "6"]


def test_bad_spec():
    with pytest.raises(ValueError, match="two models"):
        get_scorer("deita:only-one")
