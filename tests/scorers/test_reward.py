"""The reward-model scorer on a tiny local LlamaForSequenceClassification."""

import numpy as np
import pytest

from kmq.errors import InvalidParameterError
from kmq.scorers import RewardScorer, get_scorer

torch = pytest.importorskip("torch")


def _direct(model, tok, conv) -> float:
    ids = tok(tok.apply_chat_template(conv, tokenize=False), add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return float(model(input_ids=torch.tensor([ids])).logits[0, 0])


def test_reward_matches_direct_forward(tiny_reward, conversations):
    scorer = get_scorer(f"reward:{tiny_reward}", batch_size=3)
    assert isinstance(scorer, RewardScorer)
    got = scorer.score_messages(conversations)
    want = [_direct(scorer.model, scorer.tokenizer, c) for c in conversations]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert scorer.stats_["computed"] == len(conversations) and scorer.stats_["template"] == "model"
    again = RewardScorer(str(tiny_reward))
    np.testing.assert_array_equal(again.score_messages(conversations), got)
    assert again.stats_["computed"] == 0


def test_sequences_ending_in_the_pad_id_are_pooled_at_their_last_token(tiny_reward, conversations):
    scorer = RewardScorer(str(tiny_reward), batch_size=4, cache=False)
    newline = scorer.tokenizer("\n", add_special_tokens=False)["input_ids"][-1]
    scorer.model.config.pad_token_id = newline  # every ChatML rendering ends in "\n": HF pooling would skip it
    got = scorer.score_messages(conversations)
    scorer.model.config.pad_token_id = None
    want = [_direct(scorer.model, scorer.tokenizer, c) for c in conversations]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_more_than_one_label_is_rejected(tmp_path):
    from transformers import LlamaConfig

    from tiny_models import make_tokenizer

    LlamaConfig(num_labels=3, hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    make_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(InvalidParameterError, match="num_labels=3"):
        RewardScorer(str(tmp_path)).score_messages([[{"role": "user", "content": "a"}]])
