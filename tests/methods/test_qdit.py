"""Tests of the QDIT baseline (``qdit``): greedy (1 - a) * C / ΔC + a * Z / ΔZ (mean coverage, mean z, ranges)."""

from __future__ import annotations

import numpy as np
import pytest

from kmq.errors import InvalidParameterError
from kmq.methods import get_method
from kmq.methods._arrays import zscore
from kmq.methods.qdit import knn_graph, qdit_greedy, qdit_objective
from naive_references import naive_qdit, naive_qdit_weights


def circle(degrees) -> np.ndarray:
    angles = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)


def blobs(n, d=8, k=6, spread=0.4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(k, d))[rng.integers(k, size=n)] + spread * rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def naive_objective(X, quality, picked, w_cov, w_q):
    """F(S) = w_cov * sum_v max(0, max_s cos(v, s)) / n + w_q * mean_s z(s), from scratch."""
    S = np.maximum(X.astype(np.float64) @ X.astype(np.float64).T, 0.0)
    z = (quality - quality.mean()) / quality.std()
    return w_cov * S[:, picked].max(axis=1).sum() / len(X) + w_q * z[picked].mean()


def run(X, quality, budget, seed=0, **params):
    method = get_method("qdit")
    return method.fn(
        n=len(X), budget=budget, random_state=np.random.default_rng(seed), embeddings=X, quality=quality, **params
    )


def test_hand_worked_circle():
    X = circle([0, 5, 10, 90, 180])
    # coverage gains (sim = max(cos, 0)): row 2 (10 deg) covers 0-10 deg and part of 90 -> first;
    # then 180 covers only itself (gain 1) vs 90 (1 - cos 80 = 0.83)
    assert run(X, np.zeros(5), 2, alpha=0.0).indices.tolist() == [2, 4]
    # row 3 (90 deg) is the best: alpha = 1 is top quality, [3, 0] (ties to the lower row)
    quality = np.array([0.0, 0.0, 0.0, 5.0, 0.0])
    assert run(X, quality, 2, alpha=1.0).indices.tolist() == [3, 0]
    # ranges: D = [2, 4] covers (4 + cos 10 + cos 5 + cos 80) / 5, T = [3, 0] covers cos 80 / 5 less, so
    # ΔC = cos 80 / 5; z = [-.5, -.5, -.5, 2, -.5] gives Z(T) = 0.75, Z(D) = -0.5, ΔZ = 1.25. After row 2, row 3
    # gains (1 - a)(1 - cos 80) / cos 80 + 0.8 a and row 4 gains (1 - a) / cos 80 - 0.2 a: row 3 wins iff a > 0.5
    for alpha, second in ((0.3, 4), (0.45, 4), (0.55, 3), (0.7, 3)):
        picked = run(X, quality, 2, alpha=alpha)
        assert picked.indices.tolist() == [2, second]
        c80 = np.cos(np.deg2rad(80))
        assert picked.stats["coverage_range"][1] - picked.stats["coverage_range"][0] == pytest.approx(c80 / 5)
        assert picked.stats["quality_range"] == pytest.approx([-0.5, 0.75])
        weights = ((1 - alpha) / (c80 / 5), alpha / 1.25)
        assert picked.stats["objective"] == pytest.approx(naive_objective(X, quality, [2, second], *weights))
        assert naive_qdit(X, quality, 2, alpha) == [2, second]
    first = run(X, quality, 2, alpha=0.7).reason[0]  # 0.3 / ΔC * C({2}) + 0.56 * z_2 / 2
    gain = 0.3 / (np.cos(np.deg2rad(80)) / 5) * (1 + np.cos(np.deg2rad(10)) + np.cos(np.deg2rad(5)) + c80) / 5
    assert first == f"qdit: greedy gain {gain - 0.56 * 0.25:.4g}"


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.8])
def test_exact_mode_matches_naive_reference(global_random_seed, alpha):
    rng = np.random.default_rng(global_random_seed)
    X = blobs(150, seed=global_random_seed)
    quality = rng.normal(size=150)
    indices, gains, stats = qdit_greedy(X, quality, 25, alpha=alpha, mode="exact")
    ref = naive_qdit(X, quality, 25, alpha)
    assert indices.tolist() == ref
    weights = naive_qdit_weights(X, quality, 25, alpha)
    assert [stats["weights"]["coverage"], stats["weights"]["quality"]] == pytest.approx(weights, rel=1e-5)
    exact = qdit_objective(X, zscore(quality), indices, alpha, ranges=stats if 0 < alpha < 1 else None)["objective"]
    assert exact == pytest.approx(naive_objective(X, quality, ref, *weights), rel=1e-5)
    assert stats["objective"] == pytest.approx(exact, rel=1e-6)
    assert gains.sum() == pytest.approx(exact, rel=1e-6)  # greedy gains add up to F(S)


def test_alpha_one_is_top_quality():
    rng = np.random.default_rng(0)
    X, quality = blobs(100), rng.normal(size=100)
    top = get_method("top-quality").fn(n=100, budget=30, random_state=None, quality=quality)
    for mode in ("exact", "sparse"):  # stochastic only sees a random sample per step
        assert run(X, quality, 30, alpha=1.0, mode=mode).indices.tolist() == top.indices.tolist()  # same order


def test_sparse_with_a_complete_graph_equals_exact():
    rng = np.random.default_rng(1)
    X, quality = blobs(120), rng.normal(size=120)
    exact = run(X, quality, 20, mode="exact")
    sparse = run(X, quality, 20, mode="sparse", n_neighbors=120)
    assert sparse.indices.tolist() == exact.indices.tolist()
    assert sparse.stats["coverage"] == pytest.approx(exact.stats["coverage"], abs=1e-6)


@pytest.mark.parametrize(("mode", "ratio"), [("sparse", 0.97), ("stochastic", 0.9)])
def test_approximate_modes_are_close_to_exact_on_clustered_data(mode, ratio):
    rng = np.random.default_rng(0)
    X, quality = blobs(600, d=16, k=12, spread=0.3), rng.normal(size=600)
    z = zscore(quality)
    reference = run(X, quality, 60, mode="exact")  # both scored under the exact run's objective (its ranges)
    exact = qdit_objective(X, z, reference.indices, 0.5, ranges=reference.stats)["objective"]
    approx = run(X, quality, 60, mode=mode, n_neighbors=16)
    assert qdit_objective(X, z, approx.indices, 0.5, ranges=reference.stats)["objective"] >= ratio * exact
    assert approx.stats["fl_on"] == "knn graph"


def test_knn_graph_is_exact_when_every_cell_is_probed():
    X = blobs(400, d=6, k=5)
    nbr, sim, stats = knn_graph(X, 10, cells=6, probes=50)
    assert stats["n_cells"] > 1
    S = X @ X.T
    np.fill_diagonal(S, 2.0)
    ref = np.argsort(-S, axis=1, kind="stable")[:, :10]
    for row in range(400):  # same neighbour sets (no ties on random data), self first in value
        assert set(nbr[row].tolist()) == set(ref[row].tolist())
        assert sim[row].max() == 1.0 and row in nbr[row]
    partial = knn_graph(X, 10, cells=12, probes=3)[0]
    recall = np.mean([len(set(partial[r]) & set(ref[r])) / 10 for r in range(400)])
    assert recall > 0.8


@pytest.mark.parametrize("mode", ["exact", "sparse", "stochastic"])
@pytest.mark.parametrize("budget", [0, 1, 40, 90])
def test_exact_budget_unique_deterministic(global_random_seed, mode, budget):
    rng = np.random.default_rng(global_random_seed)
    X, quality = blobs(90, seed=global_random_seed), rng.normal(size=90)
    X[3] = X[4]
    a = run(X, quality, budget, seed=global_random_seed, mode=mode)
    b = run(X, quality, budget, seed=global_random_seed, mode=mode)
    assert a.indices.dtype == np.int64 and a.indices.shape == (budget,)
    assert np.unique(a.indices).size == budget
    assert a.indices.tolist() == b.indices.tolist()
    assert len(a.reason) == budget


def test_stochastic_depends_on_the_seed_only():
    rng = np.random.default_rng(0)
    X, quality = blobs(300), rng.normal(size=300)
    a, b = run(X, quality, 10, seed=1, mode="stochastic"), run(X, quality, 10, seed=2, mode="stochastic")
    assert a.stats["sample_size"] == 139  # ceil(300 / 10 * ln(100)) = ceil(138.2)
    assert a.indices.tolist() != b.indices.tolist()


def test_constant_quality_is_pure_diversity():
    X = blobs(80)
    a = run(X, np.full(80, 3.0), 10, alpha=0.5)
    b = run(X, np.zeros(80), 10, alpha=0.0)
    assert a.indices.tolist() == b.indices.tolist()


def test_parameter_errors():
    X, q = blobs(10), np.arange(10.0)
    with pytest.raises(
        InvalidParameterError, match=r"The 'alpha' parameter of qdit must be a float in \[0, 1\]\. Got 1.5"
    ):
        run(X, q, 3, alpha=1.5)
    with pytest.raises(InvalidParameterError, match="'mode' parameter of qdit must be one of"):
        run(X, q, 3, mode="fast")
    with pytest.raises(InvalidParameterError, match="'n_neighbors'"):
        run(X, q, 3, n_neighbors=0)
    with pytest.raises(InvalidParameterError, match="'epsilon'"):
        run(X, q, 3, epsilon=1.0)
    with pytest.raises(InvalidParameterError, match="quality"):
        run(X, q[:5], 3)


def test_uncached_exact_gains_give_the_same_selection():
    import kmq.methods.qdit as qdit_module

    rng = np.random.default_rng(2)
    X, quality = blobs(200), rng.normal(size=200)
    bonus, w_fl = 0.5 * zscore(quality) / 30, 0.5 / 200
    cached = qdit_module._lazy_greedy_array(qdit_module._DenseGains(X), bonus, w_fl, 30, 8)
    full = qdit_greedy(X, quality, 30, mode="exact")
    assert full[2]["similarity_cache"] is True
    engine = qdit_module._DenseGains(X, cache_max_n=199)
    assert engine.S is None
    chunked = qdit_module._lazy_greedy_array(engine, bonus, w_fl, 30, 8)
    assert chunked[0].tolist() == cached[0].tolist()  # same gains, same weights: the same greedy
    np.testing.assert_allclose(chunked[1], cached[1], rtol=1e-5)
    # the whole run: the pure facility-location calibration has near-ties that float32 rounding (X[c] @ X.T
    # against X @ X.T) may break the other way, which moves the quality range; the objective stays put
    other = qdit_greedy(X, quality, 30, mode="exact", cache_max_n=199)
    assert other[2]["similarity_cache"] is False
    assert np.intersect1d(other[0], full[0]).size >= 27
    z = zscore(quality)
    same_ranges = qdit_objective(X, z, other[0], 0.5, ranges=full[2])["objective"]
    assert same_ranges == pytest.approx(qdit_objective(X, z, full[0], 0.5, ranges=full[2])["objective"], rel=1e-3)


def test_exact_mode_caches_the_similarities_above_8192_rows():
    X = blobs(8200, d=4, seed=5)  # 8,200² float32 = 269 MB, under the fixed 2 GiB cache
    picked, _, stats = qdit_greedy(X, np.zeros(8200), 4, alpha=0.0, mode="exact")
    assert stats["similarity_cache"] is True and np.unique(picked).size == 4


def test_exact_mode_breaks_ties_like_the_naive_loop():
    # every row three times: equal gains everywhere, so the lowest row index must win each tie
    X = np.repeat(blobs(40, seed=3), 3, axis=0)
    quality = np.repeat(np.random.default_rng(3).normal(size=40), 3)
    for budget in (1, 10, 60):
        # alpha != 0.5: at 0.5 the two endpoint selections score the same by construction (F(D) = F(T)),
        # so with budget 1 the first step is an exact tie between them that float rounding decides
        indices = qdit_greedy(X, quality, budget, alpha=0.3, mode="exact")[0]
        assert indices.tolist() == naive_qdit(X, quality, budget, 0.3)


@pytest.mark.parametrize("batch", [1, 3, 8, 64])
def test_array_and_heap_lazy_greedy_agree(global_random_seed, batch):
    import kmq.methods.qdit as qdit_module

    rng = np.random.default_rng(global_random_seed)
    X, quality = blobs(300, k=12, seed=global_random_seed), rng.normal(size=300)
    bonus, w_fl = 0.5 * zscore(quality) / 300, 0.5 / 300
    heap = qdit_module._lazy_greedy(qdit_module._DenseGains(X), bonus, w_fl, 300, batch)
    array = qdit_module._lazy_greedy_array(qdit_module._DenseGains(X), bonus, w_fl, 300, batch)
    assert array[0].tolist() == heap[0].tolist()  # budget = n: the last steps pick from one or two rows
    # a row's float32 sum may round differently with the batch it is evaluated in: float32-level agreement
    np.testing.assert_allclose(array[1], heap[1], rtol=1e-6)


def test_graph_partition_is_seeded_by_the_random_state():
    # the kNN graph's partition used to be seeded 0 whatever the method's random_state
    X, quality = blobs(4200, d=8, k=20), np.random.default_rng(0).normal(size=4200)
    a, b = (run(X, quality, 5, seed=s, mode="sparse", n_neighbors=4) for s in (1, 2))
    assert a.stats["n_cells"] > 1  # above 4,096 rows the graph is built on a partition
    assert a.stats["mean_candidates"] != b.stats["mean_candidates"]  # another seed, another partition


# On a real pool (dolly_3k, hashing vectors, heuristic quality): the default alpha must trade, not rank by quality.


def test_default_alpha_trades_coverage_for_quality_on_a_real_pool(dolly_arrays):
    X, quality, b = dolly_arrays.X, dolly_arrays.quality, 300
    top = get_method("top-quality").fn(n=len(X), budget=b, random_state=None, quality=quality).indices
    picked = run(X, quality, b)  # the registered default alpha
    assert picked.stats["alpha"] == 0.5
    # before: 296 of 300 shared with top-quality (quality's per-pick gains were ~25x coverage's)
    assert np.intersect1d(picked.indices, top).size < 0.8 * b
    # both terms act: strictly inside both ranges, away from either endpoint
    (c_top, c_div), (z_div, z_top) = picked.stats["coverage_range"], picked.stats["quality_range"]
    assert c_top + 0.2 * (c_div - c_top) < picked.stats["coverage"] < c_div
    assert z_div + 0.2 * (z_top - z_div) < picked.stats["quality"] < z_top
    # alpha = 1 is top-quality in its order; alpha = 0 is the calibration's facility-location run
    assert run(X, quality, b, alpha=1.0).indices.tolist() == top.tolist()
    diverse = run(X, quality, b, alpha=0.0)
    assert diverse.stats["coverage"] == pytest.approx(c_div, abs=1e-9)
    assert diverse.stats["quality"] == pytest.approx(z_div, abs=1e-12)


def test_alpha_zero_is_facility_location_greedy_on_a_real_pool(dolly_arrays):
    # each of the first picks has the largest float64 facility-location gain of all unpicked rows
    X = dolly_arrays.X
    picks = run(X, dolly_arrays.quality, 15, alpha=0.0).indices.tolist()
    S = np.maximum(X.astype(np.float64) @ X.astype(np.float64).T, 0.0)
    cover = np.zeros(len(X))
    for step, x in enumerate(picks):
        gains = np.maximum(S - cover, 0.0).sum(axis=1)
        gains[picks[:step]] = -np.inf
        assert gains[x] >= gains.max() * (1 - 1e-6), step
        cover = np.maximum(cover, S[x])
