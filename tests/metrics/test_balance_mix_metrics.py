"""Cluster balance, quality quantiles and field mix against plain references, and their properties."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.errors import InvalidParameterError
from kmq.metrics import MISSING, cluster_balance, mix_counts, quantiles


def naive_balance(labels, picks, k):
    pool = Counter(int(x) for x in labels if x >= 0)
    sel = Counter(int(labels[i]) for i in picks if labels[i] >= 0)
    m, total = sum(sel.values()), sum(pool.values())
    entropy = -sum(c / m * math.log(c / m) for c in sel.values()) if m else None
    kl = sum(c / m * math.log((c / m) / (pool[j] / total)) for j, c in sel.items()) if m else None
    empty = sum(1 for j in range(k) if pool[j] > 0 and sel[j] == 0)
    return entropy, kl, empty


@st.composite
def clusterings(draw):
    k = draw(st.integers(1, 12))
    n = draw(st.integers(1, 120))
    labels = np.array(draw(st.lists(st.integers(-1, k - 1), min_size=n, max_size=n)), dtype=np.int64)
    b = draw(st.integers(0, n))
    picks = np.array(draw(st.permutations(range(n)))[:b], dtype=np.int64)
    return labels, picks, k


@settings(max_examples=150, deadline=None)
@given(clusterings())
def test_balance_matches_the_reference_and_its_bounds(problem):
    labels, picks, k = problem
    out = cluster_balance(labels, picks, k)
    entropy, kl, empty = naive_balance(labels, picks, k)
    assert out["empty_clusters"] == empty
    assert out["cluster_entropy_max"] == pytest.approx(math.log(k))
    if entropy is None:
        assert out["cluster_entropy"] is None and out["cluster_kl"] is None
        return
    assert out["cluster_entropy"] == pytest.approx(entropy, abs=1e-12)
    assert out["cluster_kl"] == pytest.approx(kl, abs=1e-12)
    assert 0 <= out["cluster_entropy"] <= math.log(k) + 1e-12
    assert out["cluster_kl"] >= 0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=10), st.integers(1, 5), st.integers(0, 2**32 - 1))
def test_kl_is_zero_when_the_picks_are_stratified_exactly(sizes, factor, seed):
    """Pool cluster sizes factor * s_j and picks s_j from each cluster: the two distributions are equal."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), np.array(sizes) * factor))
    picks = np.concatenate([rng.choice(np.flatnonzero(labels == j), s, replace=False) for j, s in enumerate(sizes)])
    out = cluster_balance(labels, picks, len(sizes))
    assert out["cluster_kl"] == 0.0
    assert out["empty_clusters"] == 0


def test_balance_hand_worked():
    labels = np.array([0, 0, 0, 1, 2, 2])
    out = cluster_balance(labels, np.array([0, 1]), 4)  # both picks in cluster 0 (half the pool)
    assert out == {"cluster_entropy": 0.0, "cluster_entropy_max": math.log(4), "cluster_kl": math.log(2),
                   "empty_clusters": 2}  # fmt: skip  # cluster 3 has no pool rows: not counted as empty


def test_balance_checks_its_inputs():
    with pytest.raises(InvalidParameterError, match="ids up to 3 but k=2. Pass k >= 4"):
        cluster_balance(np.array([0, 3]), np.array([0]), 2)
    with pytest.raises(InvalidParameterError, match="'k' parameter of cluster_balance"):
        cluster_balance(np.array([0]), np.array([0]), 0)
    with pytest.raises(InvalidParameterError, match="1-D int array"):
        cluster_balance(np.array([0.0, 1.0]), np.array([0]), 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50))
def test_quantiles_match_numpy(values):
    arr = np.array(values)
    out = quantiles(np.append(arr, [np.nan, np.inf]))  # non-finite values are left out
    assert list(out) == ["mean", "min", "q05", "q25", "q50", "q75", "q95", "max"]
    for key, q in {"q05": 5, "q25": 25, "q50": 50, "q75": 75, "q95": 95}.items():
        assert out[key] == pytest.approx(np.percentile(arr, q))
    assert (out["min"], out["max"]) == (arr.min(), arr.max())
    assert out["mean"] == pytest.approx(arr.mean())
    assert out["min"] <= out["q05"] <= out["q25"] <= out["q50"] <= out["q75"] <= out["q95"] <= out["max"]


def test_quantiles_of_nothing_finite_is_none():
    assert quantiles(np.array([])) is None
    assert quantiles(np.array([np.nan])) is None


def test_mix_counts_orders_and_aligns_with_the_pool():
    values = ["dolly", "lima", None, "dolly", float("nan"), 3]
    pool = mix_counts(values)
    assert pool == {"dolly": 2, MISSING: 2, "3": 1, "lima": 1}
    assert list(pool) == ["dolly", "3", "lima", MISSING]  # by count, then value; missing last
    picks = mix_counts(values, np.array([1, 2]), keys=list(pool))
    assert picks == {"dolly": 0, MISSING: 1, "3": 0, "lima": 1} and list(picks) == list(pool)
    assert mix_counts(np.array(values, dtype=object), np.array([1, 2]), keys=list(pool)) == picks
    assert mix_counts(values, np.array([0]), keys=["lima"]) == {"lima": 0, "dolly": 1}  # unlisted values follow


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "c", None]), min_size=1, max_size=40), st.data())
def test_mix_counts_sum_to_the_rows(values, data):
    rows = np.array(data.draw(st.lists(st.integers(0, len(values) - 1), max_size=40, unique=True)), dtype=np.int64)
    counts = mix_counts(values, rows, keys=list(mix_counts(values)))
    assert sum(counts.values()) == len(rows)
    assert all(c <= mix_counts(values)[key] for key, c in counts.items())


def test_mix_counts_rejects_rows_outside_the_values():
    with pytest.raises(InvalidParameterError, match="'rows' parameter of mix_counts must index the 2 values"):
        mix_counts(["a", "b"], np.array([2]))
