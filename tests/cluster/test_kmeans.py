import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, silhouette_score

from kmq.cluster import KMeans, candidate_ks, choose_k, cosine_silhouette, default_n_clusters
from kmq.embed import l2_normalize
from kmq.errors import InvalidParameterError, NotFittedError


def blobs(k=6, per=80, d=24, noise=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centers = l2_normalize(rng.normal(size=(k, d)))
    X = l2_normalize(np.repeat(centers, per, axis=0) + noise * rng.normal(size=(k * per, d)))
    return X, np.repeat(np.arange(k), per)


def test_recovers_blobs_up_to_permutation():
    X, truth = blobs()
    km = KMeans(6, random_state=0, nredo=3).fit(X)
    assert adjusted_rand_score(truth, km.labels_) > 0.95
    assert km.centroids_.shape == (6, 24) and km.labels_.dtype == np.int64
    np.testing.assert_allclose(np.linalg.norm(km.centroids_, axis=1), 1.0, rtol=1e-4)


def test_same_seed_same_result_other_seed_runs(global_random_seed):
    X, _ = blobs(k=10, noise=0.5, seed=3)
    a = KMeans(10, random_state=global_random_seed).fit(X)
    b = KMeans(10, random_state=global_random_seed).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.centroids_, b.centroids_)


def test_sample_is_explicit_and_chunked_assignment_matches_predict():
    X, _ = blobs(k=4, per=300)
    km = KMeans(4, max_points_per_centroid=50, chunk_size=97, random_state=0).fit(X)
    assert km.stats_["n_train"] == 200 and "200 of 1200" in km.stats_["train_sample"]
    np.testing.assert_array_equal(km.predict(X), km.labels_)
    sims = np.einsum("ij,ij->i", X, km.centroids_[km.labels_])
    np.testing.assert_allclose(km.similarity_, sims, atol=1e-5)
    assert np.all(km.similarity_ >= (X @ km.centroids_.T).max(axis=1) - 1e-5)


def test_errors():
    X, _ = blobs(k=2, per=3)
    with pytest.raises(InvalidParameterError, match="n_samples=6 should be >= n_clusters=7"):
        KMeans(7).fit(X)
    with pytest.raises(InvalidParameterError, match="'n_clusters' parameter of KMeans"):
        KMeans(0).fit(X)
    with pytest.raises(NotFittedError):
        KMeans(2).predict(X)


def test_cosine_silhouette_is_exact():
    rng = np.random.default_rng(0)
    X = l2_normalize(rng.normal(size=(300, 16)))
    labels = rng.integers(0, 7, 300)
    labels[0] = 7  # a singleton cluster counts 0
    assert cosine_silhouette(X, labels, chunk_size=64) == pytest.approx(
        silhouette_score(X, labels, metric="cosine"), abs=1e-6
    )
    assert cosine_silhouette(X, np.zeros(300)) == 0.0


def test_choose_k_finds_the_true_k():
    X, _ = blobs(k=8, per=60, noise=0.1)
    best, table = choose_k(X, [2, 4, 8, 16, 32], sample_size=300, random_state=0)
    assert best == 8
    assert [r["k"] for r in table] == [2, 4, 8, 16, 32]
    with pytest.raises(InvalidParameterError, match="candidates"):
        choose_k(X, [0, 8])
    with pytest.raises(InvalidParameterError, match=r"must hold 1 or ints in \[2, n_samples - 1 = 479\]"):
        choose_k(X, [480])


def test_default_k_rule():
    assert default_n_clusters(60885, 1000) == 174
    assert default_n_clusters(196000, 10000) == 313
    assert default_n_clusters(3000, 50) == 10  # capped at budget // 5
    assert default_n_clusters(10, 1) == 2
    assert [default_n_clusters(n, n) for n in (1, 2, 3, 5)] == [1, 2, 2, 2]  # never more clusters than records
    assert all(2 <= k < 5000 for k in candidate_ks(5000, 500))


def test_auto_candidates_stay_within_what_the_budget_and_the_sample_support():
    # the mixed 60,885-record pool with budget 5,000 tried k up to 2048 (432 s); never above budget // 5
    assert candidate_ks(60885, 5000) == [16, 32, 64, 128, 256, 512]
    assert max(candidate_ks(60885, 5000, sample_size=2000)) <= 200  # ten sample points per cluster
    assert candidate_ks(3000, 100) == [2, 4, 8, 16]  # finer powers when few fit from 16
    assert all(k <= 100 // 5 for k in candidate_ks(3000, 100))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_tiny_pools_cluster_with_the_default_k_and_with_auto(n):
    X = l2_normalize(np.random.default_rng(n).normal(size=(n, 8)))
    km = KMeans(default_n_clusters(n, n), random_state=0).fit(X)
    assert km.labels_.shape == (n,) and km.centroids_.shape[0] <= n
    best, table = choose_k(X, candidate_ks(n, n), random_state=0)
    assert 1 <= best < max(2, n) and [r["k"] for r in table] == candidate_ks(n, n)
    assert candidate_ks(n, n) == ([1] if n < 3 else [2])


def test_zero_columns_is_an_error_not_a_crash():
    code = (  # in a child process: faiss died of SIGFPE on this, which would take pytest down with it
        "import numpy as np; from kmq.cluster import KMeans; from kmq.errors import InvalidParameterError\n"
        "try: KMeans(2).fit(np.zeros((4, 0), dtype=np.float32))\n"
        "except InvalidParameterError as err: print(err)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "2-D array (n, d) with d >= 1; got shape (4, 0)" in res.stdout, res
