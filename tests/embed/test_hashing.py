import numpy as np
import pytest

from kmq.embed import HashingEmbedder, get_embedder
from kmq.errors import InvalidParameterError


def test_unit_rows_deterministic_and_text_local():
    e = HashingEmbedder(64)
    texts = ["The cat sat on the mat.", "A dog barked at the mailman.", "The cat sat on the mat."]
    v = e.encode(texts, cache=False)
    assert v.shape == (3, 64) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(v[0], v[2])
    # a text's vector does not depend on the other texts in the batch
    np.testing.assert_array_equal(HashingEmbedder(64).encode([texts[1]], cache=False)[0], v[1])


def test_similar_texts_are_closer_than_unrelated():
    v = HashingEmbedder().encode(
        [
            "Write a python function that reverses a linked list",
            "Write a python function to reverse a singly linked list",
            "What is the capital city of France and its population",
        ],
        cache=False,
    )
    assert v[0] @ v[1] > 0.5 > v[0] @ v[2]


def test_empty_text_is_a_zero_row():
    v = HashingEmbedder(32).encode(["", "   ", "hello world"], cache=False)
    assert not v[0].any() and not v[1].any() and v[2].any()


def test_cache_second_call_encodes_nothing():
    e = HashingEmbedder(32)
    texts = [f"example number {i} about topic {i % 7}" for i in range(300)]
    first = e.encode(texts)
    assert e.stats_["encoded"] == 300 and e.stats_["cached"] == 0
    second = HashingEmbedder(32).encode(texts[::-1])
    np.testing.assert_array_equal(second, first[::-1])
    again = HashingEmbedder(32)
    again.encode(texts + ["a brand new text"])
    assert again.stats_["cached"] == 300 and again.stats_["encoded"] == 1


@pytest.mark.parametrize("spec", ["hashing:1", "hashing:x", "bogus", "st"])
def test_bad_specs(spec):
    with pytest.raises(InvalidParameterError, match="embedder"):
        get_embedder(spec)
