"""Pooled conversation vectors computed a block of rows at a time (``kmq.embed.base._pool_rows``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.embed import HashingEmbedder
from kmq.embed.base import _pool_rows, l2_normalize

PROMPTS = ["Name three primary colours.", "", "Write a haiku about rain.", "What is 2 + 2?", "  "]
RESPONSES = ["Red, yellow and blue.", "An answer without a prompt.", "", "4", ""]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 40), st.integers(1, 9), st.integers(1, 7), st.integers(0, 2**32 - 1))
def test_blocks_give_the_bytes_of_the_whole_matrix_expression(n, d, block, seed):
    rng = np.random.default_rng(seed)
    pv, rv = rng.standard_normal((n, d)).astype(np.float32), rng.standard_normal((n, d)).astype(np.float32)
    pv[::5] = 0.0
    wp, wr = rng.integers(0, 50, n).astype(np.float64), rng.integers(0, 50, n).astype(np.float64)
    ref = l2_normalize(wp[:, None].astype(np.float32) * pv + wr[:, None].astype(np.float32) * rv)
    assert np.array_equal(_pool_rows(pv.copy(), wp, rv, wr, block=block), ref)
    half = _pool_rows(pv.astype(np.float16), wp, rv.astype(np.float16), wr, block=block)
    expect = l2_normalize(wp[:, None].astype(np.float32) * pv.astype(np.float16).astype(np.float32)
                          + wr[:, None].astype(np.float32) * rv.astype(np.float16).astype(np.float32))  # fmt: skip
    assert half.dtype == np.float32 and np.array_equal(half, expect)


def test_a_float16_store_pools_its_rows_as_stored_and_a_warm_run_gives_the_same_bytes():
    emb = HashingEmbedder()
    emb.store_dtype = "float16"
    cold = emb.encode_conversations(PROMPTS, RESPONSES)
    warm = emb.encode_conversations(PROMPTS, RESPONSES)
    assert cold.dtype == np.float32 and np.array_equal(cold, warm)
    p = emb.encode(PROMPTS).astype(np.float16).astype(np.float32)  # float32 rows of the float16 store
    r = emb.encode(RESPONSES).astype(np.float16).astype(np.float32)
    wp, wr = emb.text_weights(PROMPTS), emb.text_weights(RESPONSES)
    assert np.array_equal(cold, l2_normalize(wp[:, None].astype(np.float32) * p + wr[:, None].astype(np.float32) * r))
    assert not cold[4].any()  # blank prompt and response: a zero row


def test_the_encoders_own_stats_survive_the_pooled_path(tmp_path):
    """``encode_conversations`` goes through the subclass's ``encode``: its stats (precision, truncation) stay."""
    pytest.importorskip("transformers")
    from kmq.embed.hf_pooled import HFEmbedder
    from tiny_models import build_causal_lm

    emb = HFEmbedder(str(build_causal_lm(tmp_path / "llama")), pooling="mean", precision="fp32")
    emb.encode_conversations(PROMPTS, RESPONSES, cache=False)
    assert emb.stats_["precision"] == "fp32" and "truncated" in emb.stats_ and emb.stats_["records"] == len(PROMPTS)
