"""Tests of the k-center greedy baseline (``kcenter``)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from kmq.errors import InvalidParameterError
from kmq.methods import get_method
from kmq.methods.kcenter import kcenter_greedy
from naive_references import naive_kcenter


def circle(degrees) -> np.ndarray:
    angles = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def blobs(n, d=8, k=6, spread=0.35, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    X = centers[rng.integers(k, size=n)] + spread * rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def replay(X, picked, tol=1e-6):
    """Replay a farthest-first traversal in float64, tolerating near-ties (another BLAS may round them apart).

    Asserts that every pick after the first is within ``tol`` of the largest distance to the centers
    chosen before it. Returns the first step with a near-tie (another row within ``tol`` of the
    farthest; ``len(picked)`` if none) and the covering radius of the picks.
    """
    X64 = X.astype(np.float64)
    mind = np.full(len(X), np.inf)
    first_tie = len(picked)
    for i, p in enumerate(np.asarray(picked).tolist()):
        if i:
            best = mind.max()
            assert mind[p] >= best - tol, f"pick {i}: row {p} at distance {mind[p]:.9f}, the farthest is {best:.9f}"
            if first_tie == len(picked) and np.count_nonzero(mind >= best - tol) > 1:
                first_tie = i
        mind = np.minimum(mind, 1.0 - X64 @ X64[p])
        mind[p] = -np.inf
    return first_tie, max(float(mind.max()), 0.0)


def run(X, budget, seed=0, **params):
    method = get_method("kcenter")
    return method.fn(n=len(X), budget=budget, random_state=np.random.default_rng(seed), embeddings=X, **params)


def test_hand_worked_circle():
    X = circle([0, 10, 90, 180, 270])
    # the mean direction is about 10 degrees -> row 1; farthest from it is 180 (row 3); then 270 is 90
    # degrees from its nearest center while 90 is 80 degrees from 10 -> row 4; then 90 (row 2)
    picked = run(X, 4)
    assert picked.indices.tolist() == [1, 3, 4, 2]
    assert picked.stats["radius"] == pytest.approx(1 - np.cos(np.deg2rad(10)), abs=1e-6)
    assert picked.reason[0] == "kcenter: start (nearest the mean)"
    assert picked.reason[1] == "kcenter: farthest, cos distance 1.985"


def test_ties_go_to_the_lowest_index():
    X = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.float32)  # mean 0: every row ties for the start
    assert run(X, 3).indices.tolist() == [0, 2, 1]
    dup = circle([0, 0, 0, 90])
    assert run(dup, 4).indices.tolist() == [0, 3, 1, 2]


@pytest.mark.parametrize(("n", "budget"), [(400, 60), (700, 300)])  # 300 > one queue of 256 centers
def test_matches_naive_reference(global_random_seed, n, budget):
    X = blobs(n, seed=global_random_seed)
    picked, gaps, stats = kcenter_greedy(X, budget)
    sims = X.astype(np.float64) @ X.astype(np.float64).mean(axis=0)
    assert sims[picked[0]] >= sims.max() - 1e-6  # the start: nearest the mean direction
    first_tie, radius = replay(X, picked)  # every pick is the farthest row, up to 1e-6
    assert stats["radius"] == pytest.approx(radius, abs=1e-5)
    ref, ref_radius = naive_kcenter(X, budget, int(picked[0]))
    assert picked[:first_tie].tolist() == ref[:first_tie]  # float32 and float64 agree up to a near-tie
    if first_tie == budget:
        assert stats["radius"] == pytest.approx(ref_radius, abs=1e-5)
    assert np.all(np.diff(gaps[1:]) <= 1e-6)  # farthest-first gaps never grow
    assert stats["full_passes"] >= 1 + (budget > 256)


def test_random_start_is_seeded():
    X = blobs(200)
    a, b, c = (
        run(X, 20, seed=3, start="random"),
        run(X, 20, seed=3, start="random"),
        run(X, 20, seed=4, start="random"),
    )
    assert a.indices.tolist() == b.indices.tolist()
    assert a.indices[0] != c.indices[0] or a.indices.tolist() != c.indices.tolist()
    ref, _ = naive_kcenter(X, 20, int(a.indices[0]))
    first_tie, _ = replay(X, a.indices)
    assert a.indices[:first_tie].tolist() == ref[:first_tie]


def test_replay_fails_on_a_wrong_pick():
    X = blobs(300)
    picked, _, _ = kcenter_greedy(X, 30)
    replay(X, picked)
    wrong = picked.copy()
    wrong[[5, 20]] = wrong[[20, 5]]  # a later, nearer center picked too early
    with pytest.raises(AssertionError, match="pick 5"):
        replay(X, wrong)


def test_approx_mode_is_valid_and_its_radius_an_upper_bound():
    X = blobs(1500, d=16, k=10)
    picked = run(X, 100, mode="approx", cells=40, probes=3)
    assert picked.stats["scan_fraction"] < 0.5
    idx = picked.indices
    assert idx.size == 100 and np.unique(idx).size == 100
    true_radius = float(np.max(1 - (X @ X[idx].T).max(axis=1)))
    assert picked.stats["radius_is_upper_bound"]
    assert picked.stats["radius"] >= true_radius - 1e-6


@pytest.mark.parametrize("budget", [0, 1, 17, 120])
def test_exact_budget_unique_deterministic(global_random_seed, budget):
    X = blobs(120, seed=global_random_seed)
    X[5] = X[7]  # a duplicate must not be picked twice
    a, b = run(X, budget, seed=global_random_seed), run(X, budget, seed=global_random_seed)
    assert a.indices.dtype == np.int64 and a.indices.shape == (budget,)
    assert np.unique(a.indices).size == budget
    assert a.indices.tolist() == b.indices.tolist()
    assert len(a.reason) == budget
    if budget == 120:
        assert a.stats["radius"] == 0.0


def test_parameter_and_data_errors():
    X = blobs(10)
    with pytest.raises(InvalidParameterError, match=r"The 'start' parameter of kcenter must be one of"):
        run(X, 3, start="median")
    with pytest.raises(InvalidParameterError, match=r"The 'cells' parameter of kcenter must be an int in \[1, inf\)"):
        run(X, 3, cells=0)
    with pytest.raises(InvalidParameterError, match="budget"):
        run(X, 11)
    with pytest.raises(InvalidParameterError, match=r"shape \(10, d\)"):
        run(X[:, 0], 3)
    bad = X.copy()
    bad[4] *= 2
    with pytest.raises(InvalidParameterError, match="Row 4 has norm 2"):
        run(bad, 3)
    bad[4] = np.nan
    with pytest.raises(InvalidParameterError, match="Row 4 has norm nan"):
        run(bad, 3)


def test_approx_partition_is_seeded_by_the_random_state():
    # kcenter_greedy used to take a separate `seed` that the method never passed: the partition was always seed 0
    assert "seed" not in inspect.signature(kcenter_greedy).parameters
    X = blobs(1500, d=16, k=10)
    a, b, c = (run(X, 60, seed=s, mode="approx", cells=40, probes=3).indices.tolist() for s in (1, 1, 2))
    assert a == b and a != c
    exact = [run(X, 60, seed=s).indices.tolist() for s in (1, 2)]  # the exact mode uses no randomness
    assert exact[0] == exact[1]
    again = run(X, 60, seed=3, start="random").indices.tolist()  # the random start is the same in both modes
    assert run(X, 60, seed=3, start="random", mode="approx", cells=40, probes=3).indices[0] == again[0]
