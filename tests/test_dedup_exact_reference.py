"""exact_duplicates (sorted digests) against the plain reference: a dict of each normalised text's first row."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.shape.dedup import exact_duplicates, normalise


def _reference(texts: list[str]) -> np.ndarray:
    first: dict[str, int] = {}
    out = np.full(len(texts), -1, dtype=np.int64)
    for i, text in enumerate(texts):
        j = first.setdefault(normalise(text), i)
        if j != i:
            out[i] = j
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["a", "A ", " a", "b", "b  c", "B C", "", "\ud800", "é", "E\u0301"]), max_size=40))
def test_exact_duplicates_matches_the_dict_reference(texts: list[str]) -> None:
    got = exact_duplicates(texts)
    assert got.dtype == np.int64 and got.shape == (len(texts),)
    np.testing.assert_array_equal(got, _reference(texts))


def test_exact_duplicates_on_many_rows_points_to_the_first_copy() -> None:
    rng = np.random.default_rng(0)
    texts = [f"t{v}" for v in rng.integers(0, 500, 5000)]
    np.testing.assert_array_equal(exact_duplicates(texts), _reference(texts))
    assert (exact_duplicates(iter(texts)) == _reference(texts)).all()
