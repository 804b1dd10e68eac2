"""Exact duplicates by normalised-prompt key and near duplicates among the picks, against plain references."""

from __future__ import annotations

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.errors import InvalidParameterError
from kmq.metrics import (
    exact_duplicates,
    near_duplicate_mask,
    near_duplicates,
    normalize_prompt,
    prompt_key,
    prompt_keys,
)


def test_prompt_key_normalises_case_and_whitespace():
    assert normalize_prompt("  Name\tthree\n\nCOLOURS  ") == "name three colours"
    assert prompt_key("Name three colours") == prompt_key("name  three\u00a0colours\n")  # NBSP is whitespace too
    assert prompt_key("Straße") == prompt_key("STRASSE")  # casefold, not lower
    assert prompt_key("name three colours") != prompt_key("name three colors")
    assert prompt_key("a b") == xxhash.xxh64_intdigest(b"a b")  # the documented hash, seed 0
    keys = prompt_keys(["A", "a ", "b"])
    assert keys.dtype == np.uint64 and keys[0] == keys[1] != keys[2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=0, max_size=40), st.data())
def test_exact_duplicates_count_repeats_of_an_earlier_pick(keys, data):
    picks = data.draw(st.permutations(range(len(keys))))[: data.draw(st.integers(0, len(keys)))]
    seen, repeats = set(), 0
    for i in picks:
        repeats += keys[i] in seen
        seen.add(keys[i])
    assert exact_duplicates(np.array(keys, dtype=np.uint64), np.array(picks, dtype=np.int64)) == repeats


def naive_near(X: np.ndarray, tau: float) -> np.ndarray:
    S = X.astype(np.float64) @ X.astype(np.float64).T
    np.fill_diagonal(S, -np.inf)
    return S.max(axis=1) > tau


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 80), st.integers(2, 12), st.integers(0, 2**32 - 1), st.sampled_from([0.5, 0.9, 0.95]))
def test_near_duplicates_match_brute_force(b, d, seed, tau):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((b, d)).astype(np.float32)
    twins = rng.choice(b, size=b // 4, replace=False)
    X[twins] = X[rng.choice(b, size=len(twins))] + 0.05 * rng.standard_normal((len(twins), d)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    S = X.astype(np.float64) @ X.astype(np.float64).T
    np.fill_diagonal(S, -np.inf)
    if np.any(np.abs(S.max(axis=1) - tau) < 1e-5):
        return  # too close to the threshold for float32 to decide
    mask, plan = near_duplicate_mask(X, tau, index="exact")
    np.testing.assert_array_equal(mask, naive_near(X, tau))
    assert plan == "exact" and near_duplicates(X, tau) == int(mask.sum())


def test_near_duplicates_by_cells_find_the_close_pairs(rng):
    C = rng.standard_normal((30, 16)).astype(np.float32)
    X = C[rng.integers(0, 30, 3000)] + 0.5 * rng.standard_normal((3000, 16)).astype(np.float32)
    X[:100] = X[100:200] + 0.01 * rng.standard_normal((100, 16)).astype(np.float32)  # 100 near pairs
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    mask, plan = near_duplicate_mask(X, 0.95, index="ivf", seed=2)
    exact, _ = near_duplicate_mask(X, 0.95, index="exact")
    assert plan.startswith("ivf:") and mask[:200].all()
    assert not (mask & ~exact).any()  # never a pair the exact search does not have
    assert (mask == exact).mean() >= 0.99


def test_near_duplicates_edge_cases():
    assert near_duplicates(np.zeros((0, 3), dtype=np.float32)) == 0
    assert near_duplicates(np.array([[1.0, 0.0]], dtype=np.float32)) == 0  # no other pick
    X = np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    assert near_duplicates(X, 0.95) == 2  # both rows of the pair count
    with pytest.raises(InvalidParameterError, match=r"'tau' parameter of near_duplicates must be a float in \[-1, 1"):
        near_duplicates(X, 1.5)
    with pytest.raises(InvalidParameterError, match="'X_picks' parameter of near_duplicates"):
        near_duplicates(np.ones(3), 0.9)
