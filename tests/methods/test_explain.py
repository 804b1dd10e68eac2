"""Per-pick explanations (``Picked.explain``): cluster quota, size and first-draw probability; method scores."""

from __future__ import annotations

import numpy as np
import pytest

from kmq.methods import get_method
from kmq.methods._arrays import zscore
from kmq.methods.allocate import allocate_budget, cluster_weights
from kmq.methods.draw import draw_per_cluster
from naive_references import naive_qdit_weights

CLUSTER_METHODS = ["kmq", "kmeans-random", "kmeans-closest"]


def blobs(n, d=8, k=6, spread=0.4, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(k, d))[rng.integers(k, size=n)] + spread * rng.normal(size=(n, d))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def naive_probability(within, quality, labels, rows, available, temperature=1.0):
    """First-draw probability of each row in ``rows`` inside its cluster, one cluster at a time, float64."""
    out = []
    for r in rows:
        members = np.flatnonzero((labels == labels[r]) & available)
        q = quality[members]
        if within == "uniform" or (within == "proportional" and q.sum() == 0):
            out.append(1.0 / members.size)
        elif within == "proportional":
            out.append(quality[r] / q.sum())
        else:
            z = (q - q.mean()) / q.std() if q.std() > 0 else np.zeros_like(q)
            w = np.exp(z / temperature - (z / temperature).max())
            out.append(w[members == r][0] / w.sum())
    return np.array(out)


@pytest.mark.parametrize("within", ["softmax", "proportional", "uniform"])
@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
def test_probabilities_equal_a_naive_computation(within, temperature, rng):
    n, k = 300, 6
    labels = rng.integers(0, k, size=n)
    quality = rng.random(n) * 4
    quality[labels == 2] = 1.5  # a constant cluster: uniform under softmax
    quality[rng.random(n) < 0.1] = 0.0  # some zero rows for proportional
    available = rng.random(n) < 0.8
    counts = np.minimum(np.bincount(labels[available], minlength=k), rng.integers(0, 12, size=k))
    kw = dict(quality=quality, within=within, temperature=temperature, available=available)
    idx, cl, prob = draw_per_cluster(labels, counts, random_state=7, return_probability=True, **kw)
    plain, plain_cl = draw_per_cluster(labels, counts, random_state=7, **kw)
    assert np.array_equal(idx, plain) and np.array_equal(cl, plain_cl)  # the probabilities change no pick
    assert prob.dtype == np.float64 and prob.shape == idx.shape
    ref = naive_probability(within, quality, labels, idx, available, temperature)
    np.testing.assert_allclose(prob, ref, rtol=1e-9)
    per_cluster = np.bincount(cl, weights=prob, minlength=k)
    assert (per_cluster <= 1 + 1e-12).all()


def test_full_draw_probabilities_sum_to_one(rng):
    labels = rng.integers(0, 5, size=200)
    quality = rng.normal(size=200) * 100
    sizes = np.bincount(labels, minlength=5)
    _, cl, prob = draw_per_cluster(labels, sizes, quality=quality, random_state=1, return_probability=True)
    np.testing.assert_allclose(np.bincount(cl, weights=prob, minlength=5), 1.0)


@pytest.mark.parametrize("within", ["top", "closest"])
def test_deterministic_draws_have_no_probability(within, rng):
    labels = rng.integers(0, 3, size=50)
    _, _, prob = draw_per_cluster(
        labels, np.array([2, 2, 2]), quality=rng.random(50), distances=rng.random(50), within=within,
        random_state=0, return_probability=True,
    )  # fmt: skip
    assert np.isnan(prob).all()


@pytest.mark.parametrize("name", CLUSTER_METHODS)
def test_cluster_methods_explain_quota_size_probability(name, dolly_arrays):
    a = dolly_arrays
    inputs = {"labels": a.labels, "quality": a.quality, "embeddings": a.X, "centroids": a.centroids}
    method = get_method(name)
    picked = method.fn(
        n=len(a.labels), budget=300, random_state=3, **{k: v for k, v in inputs.items() if k in method.needs}
    )
    ex = picked.explain
    assert set(ex) == {"quota", "cluster_size", "probability"}
    assert all(v.shape == picked.indices.shape for v in ex.values())
    sizes = np.bincount(a.labels)
    counts = allocate_budget(sizes, cluster_weights(sizes, "equal"), 300)
    cl = a.labels[picked.indices]
    assert ex["quota"].dtype == np.int64 and np.array_equal(ex["quota"], counts[cl])
    assert np.array_equal(ex["cluster_size"], sizes[cl])
    assert np.array_equal(np.bincount(cl, minlength=len(sizes)), counts)  # quota = picks of the cluster
    if name == "kmeans-closest":
        assert np.isnan(ex["probability"]).all()
        return
    ref = naive_probability("softmax" if name == "kmq" else "uniform", a.quality, a.labels, picked.indices,
                            np.ones(len(a.labels), bool))  # fmt: skip
    np.testing.assert_allclose(ex["probability"], ref, rtol=1e-9)
    assert (np.bincount(cl, weights=ex["probability"]) <= 1 + 1e-12).all()


def test_kcenter_scores_are_the_non_increasing_pick_distances():
    X = blobs(400, seed=1)
    picked = get_method("kcenter").fn(n=400, budget=40, random_state=0, embeddings=X)
    score = picked.explain["score"]
    assert score.dtype == np.float64 and score.shape == (40,)
    assert np.isinf(score[0]) and (np.diff(score[1:]) <= 1e-7).all()
    chosen = picked.indices
    naive = [np.min(1.0 - X[chosen[:i]].astype(np.float64) @ X[chosen[i]].astype(np.float64)) for i in range(1, 40)]
    np.testing.assert_allclose(score[1:], naive, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_qdit_gains_equal_a_naive_recomputation(alpha, rng):
    n, budget = 60, 8
    X = blobs(n, seed=2)
    quality = rng.normal(size=n)
    picked = get_method("qdit").fn(n=n, budget=budget, random_state=0, embeddings=X, quality=quality, alpha=alpha,
                                   mode="exact")  # fmt: skip
    w_cov, w_q = naive_qdit_weights(X, quality, budget, alpha)
    S = np.maximum(X.astype(np.float64) @ X.astype(np.float64).T, 0.0)
    z = zscore(quality)
    cover, cov_gain, q_gain = np.zeros(n), [], []
    for x in picked.indices.tolist():
        cov_gain.append(w_cov * (np.maximum(cover, S[x]).sum() - cover.sum()) / n)
        q_gain.append(w_q * z[x] / budget)
        cover = np.maximum(cover, S[x])
    ex = picked.explain
    np.testing.assert_allclose(ex["coverage_gain"], cov_gain, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ex["quality_gain"], q_gain, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ex["score"], np.add(cov_gain, q_gain), rtol=1e-4, atol=1e-6)


def test_deita_and_top_quality_scores_are_the_quality(rng):
    X = blobs(200, seed=3)
    quality = rng.normal(size=200)
    top = get_method("top-quality").fn(n=200, budget=20, random_state=0, quality=quality)
    assert np.array_equal(top.explain["score"], quality[top.indices])
    deita = get_method("deita").fn(n=200, budget=20, random_state=0, embeddings=X, quality=quality, tau=0.95)
    assert np.array_equal(deita.explain["score"], quality[deita.indices])
    near = deita.explain["nearest_cos"]
    assert np.isnan(near[0]) and (near[1:] < 0.95).all()
    assert get_method("random").fn(n=200, budget=20, random_state=0).explain == {}
