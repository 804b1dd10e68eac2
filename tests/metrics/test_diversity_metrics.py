"""Vendi score, coverage and facility location against brute-force numpy references, and their properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.errors import InvalidParameterError
from kmq.metrics import coverage, facility_location, vendi_score
from kmq.metrics._search import EXACT_PAIRS, PickIndex, nearest_similarity, search_plan


def unit_rows(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    X = rng.standard_normal((m, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def clustered(rng: np.random.Generator, n: int, d: int, k: int, noise: float = 0.4) -> np.ndarray:
    C = unit_rows(rng, k, d)
    X = C[rng.integers(0, k, n)] + noise * rng.standard_normal((n, d)).astype(np.float32) / np.sqrt(d)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def naive_vendi(X: np.ndarray) -> float:
    """exp(entropy) of the eigenvalues of K / m, K the m x m cosine kernel (the paper's definition)."""
    X = X.astype(np.float64)
    lam = np.clip(np.linalg.eigvalsh(X @ X.T / len(X)), 0, None)
    lam = lam[lam > 1e-15]
    lam = lam / lam.sum()
    return float(np.exp(-(lam * np.log(lam)).sum()))


def naive_nearest(X_pool: np.ndarray, X_picks: np.ndarray) -> np.ndarray:
    return (X_pool.astype(np.float64) @ X_picks.astype(np.float64).T).max(axis=1)


@pytest.mark.parametrize("m, d", [(5, 16), (16, 16), (40, 8), (300, 24)])
def test_vendi_matches_the_definition_both_ways(rng, m, d):
    X = clustered(rng, m, d, k=4)
    assert vendi_score(X) == pytest.approx(naive_vendi(X), rel=1e-6)  # m > d uses the d x d covariance


def test_vendi_hand_worked():
    assert vendi_score(np.eye(4)) == pytest.approx(4.0)
    assert vendi_score(np.tile([[0.6, 0.8]], (7, 1))) == pytest.approx(1.0)
    # two orthogonal directions, 3 rows on one and 1 on the other: eigenvalues 3/4 and 1/4
    X = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=float)
    assert vendi_score(X) == pytest.approx(np.exp(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25))))


def test_vendi_all_zero_rows_is_nan_and_empty_is_an_error():
    assert np.isnan(vendi_score(np.zeros((3, 4))))
    with pytest.raises(InvalidParameterError, match="at least one row"):
        vendi_score(np.zeros((0, 4)))
    with pytest.raises(InvalidParameterError, match=r"'X' parameter of vendi_score .*shape \(m, d\)"):
        vendi_score(np.ones(4))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_vendi_between_one_and_the_rank(m, d, seed):
    X = unit_rows(np.random.default_rng(seed), m, d)
    v = vendi_score(X)
    assert 1 - 1e-9 <= v <= min(m, d) + 1e-9


@pytest.mark.parametrize("n, b, d", [(50, 1, 8), (200, 17, 16), (1000, 64, 32)])
def test_coverage_and_facility_location_match_brute_force(rng, n, b, d):
    X = clustered(rng, n, d, k=6)
    picks = X[rng.choice(n, b, replace=False)]
    best = naive_nearest(X, picks)
    dist = np.maximum(1 - best, 0)
    mean, p95 = coverage(X, picks, index="exact")
    assert mean == pytest.approx(dist.mean(), abs=1e-6)
    assert p95 == pytest.approx(np.percentile(dist, 95), abs=1e-6)
    assert facility_location(X, picks, index="exact") == pytest.approx(best.mean(), abs=1e-6)


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 120), st.integers(2, 16), st.integers(0, 2**32 - 1), st.sampled_from(["exact", "ivf"]))
def test_coverage_of_the_whole_pool_is_zero(n, d, seed, index):
    X = unit_rows(np.random.default_rng(seed), n, d)
    mean, p95 = coverage(X, X, index=index)
    assert 0 <= mean <= 1e-6 and 0 <= p95 <= 1e-6  # float32 unit rows: x.x = 1 up to rounding
    assert facility_location(X, X, index=index) == pytest.approx(1.0, abs=1e-6)


def test_coverage_checks_its_inputs():
    X = np.eye(3, dtype=np.float32)
    with pytest.raises(InvalidParameterError, match="'X_picks' parameter of coverage must have at least one row"):
        coverage(X, X[:0])
    with pytest.raises(InvalidParameterError, match=r"'X_pool' parameter of coverage .*shape \(m, 3\)"):
        coverage(np.eye(4, dtype=np.float32), X)
    with pytest.raises(InvalidParameterError, match="'index' parameter of nearest_similarity"):
        coverage(X, X, index="hnsw")


def test_cell_search_is_a_lower_bound_and_almost_always_exact(rng):
    X = clustered(rng, 6000, 24, k=40)
    picks = X[rng.choice(6000, 1500, replace=False)]
    exact, plan_exact = nearest_similarity(picks, X, index="exact")
    cells, plan = nearest_similarity(picks, X, index="ivf", seed=3)
    assert plan_exact == "exact" and plan == "ivf:nlist=39,nprobe=8"  # 6000 x 1500 pairs: the fewest probes
    assert (cells <= exact + 1e-5).all()  # a maximum over a subset of the picks
    assert np.mean(np.abs(cells - exact) <= 1e-5) >= 0.97
    # the same result on rows taken one chunk at a time
    rows = rng.choice(6000, 700, replace=False)
    again, _ = nearest_similarity(picks, X, rows=rows, index="ivf", seed=3)
    np.testing.assert_allclose(again, cells[rows], atol=1e-6)  # BLAS rounding depends on the block shapes


@pytest.mark.parametrize("index", ["exact", "ivf"])
def test_nearest_other_row_with_identical_rows(rng, index):
    X = unit_rows(rng, 300, 8)
    X[[5, 77, 200]] = X[5]  # three identical rows: each one's nearest other is one of the others
    sims, _ = PickIndex(X, seed=1).search(X, exclude_self=True, index=index)
    S = X.astype(np.float64) @ X.astype(np.float64).T
    np.fill_diagonal(S, -np.inf)
    assert sims[[5, 77, 200]] == pytest.approx(1.0, abs=1e-6)
    if index == "exact":
        np.testing.assert_allclose(sims, S.max(axis=1), atol=1e-5)
    else:
        assert (sims <= S.max(axis=1) + 1e-5).all()


def test_search_plan_switches_to_cells_above_the_pair_limit():
    assert search_plan(50_000, 2_000) == "exact"  # 1e8 pairs <= EXACT_PAIRS
    assert 50_000 * 2_000 <= EXACT_PAIRS < 50_000 * 3_000
    assert search_plan(50_000, 3_000) == "ivf:nlist=55,nprobe=24"  # as many cells as the exact budget pays for
    assert search_plan(50_000, 100_000) == "ivf:nlist=316,nprobe=8"
    assert search_plan(100_000, 100_000) == "ivf:nlist=316,nprobe=8"  # never fewer than NPROBE
    assert search_plan(10**6, 32) == "exact"  # too few picks to split
    assert search_plan(10, 10, "ivf") == "ivf:nlist=3,nprobe=3"
    assert search_plan(6_000, 1_500, "ivf") == "ivf:nlist=39,nprobe=8"  # forced: the fewest probes
    assert search_plan(10**6, 10**5, "exact") == "exact"
