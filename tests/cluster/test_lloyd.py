"""The numpy k-means backend (kmq.cluster._lloyd) against faiss, and its independence from chunking."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.cluster import KMeans, assign_chunk
from kmq.cluster._lloyd import BLOCK_ROWS, assign_blocks
from kmq.embed import l2_normalize
from kmq.errors import InvalidParameterError


@pytest.fixture(scope="module")
def dolly(datakit) -> np.ndarray:
    """dolly_3k's conversations, hashing-embedded (2,996 x 512, float32, unit rows)."""
    from kmq.embed.hashing import HashingEmbedder

    with open(datakit / "dolly_3k" / "dolly_3k.jsonl") as f:
        texts = [" ".join(m["content"] for m in json.loads(line)["messages"]) for line in f]
    return np.ascontiguousarray(l2_normalize(HashingEmbedder().embed_batch(texts)), dtype=np.float32)


def blobs(n, d, k, noise, seed):
    rng = np.random.default_rng(seed)
    centers = l2_normalize(rng.normal(size=(k, d)))
    return np.ascontiguousarray(l2_normalize(centers[rng.integers(k, size=n)] + noise * rng.normal(size=(n, d))))


def _agree_except_ties(X, C):
    lf, sf = assign_chunk(X, C, backend="faiss")
    ln, sn = assign_chunk(X, C, backend="numpy")
    S = X.astype(np.float64) @ C.astype(np.float64).T
    differ = np.flatnonzero(lf != ln)
    gap = np.abs(S[differ, lf[differ]] - S[differ, ln[differ]])
    assert np.all(gap < 1e-5), gap  # a label differs only where two centroids tie to float32 rounding
    np.testing.assert_allclose(sn, sf, atol=1e-5)
    return differ.size


def test_numpy_assignment_equals_faiss_on_real_and_random_rows(dolly):
    C = KMeans(60, random_state=0, backend="faiss").fit(dolly).centroids_
    assert _agree_except_ties(dolly, C) <= 3
    X = l2_normalize(np.random.default_rng(1).normal(size=(6000, 48))).astype(np.float32)
    assert _agree_except_ties(X, X[:100].copy()) <= 3


def test_equal_similarities_go_to_the_lowest_centroid_in_both_backends():
    X = blobs(300, 8, 3, 0.2, 0)
    C = np.repeat(X[:3], 2, axis=0)  # centroids 0 = 1, 2 = 3, 4 = 5: every row ties between a pair
    for backend in ("numpy", "faiss"):
        labels, _ = assign_chunk(X, C, backend=backend)
        assert np.all(labels % 2 == 0), backend


def test_numpy_backend_does_not_depend_on_the_chunking():
    X = blobs(2 * BLOCK_ROWS + 500, 16, 12, 0.6, 4)
    fits = [KMeans(12, random_state=3, chunk_size=c, max_points_per_centroid=64, backend="numpy").fit(X)
            for c in (97, 4096, 65536)]  # fmt: skip
    fits.append(KMeans(12, random_state=3, chunk_size=97, max_points_per_centroid=64, backend="numpy").fit(X))
    for km in fits[1:]:
        assert km.labels_.tobytes() == fits[0].labels_.tobytes()
        assert km.similarity_.tobytes() == fits[0].similarity_.tobytes()
        assert km.centroids_.tobytes() == fits[0].centroids_.tobytes()
    for m in (1, 7, BLOCK_ROWS, BLOCK_ROWS + 3):  # the first m rows: the same block positions, the same bytes
        labels, sims = assign_blocks(X[:m], fits[0].centroids_)
        assert sims.tobytes() == fits[0].similarity_[:m].tobytes() and np.array_equal(labels, fits[0].labels_[:m])
    assert fits[0].stats_["trained_with"] == fits[0].stats_["assigned_with"] == "numpy"


@pytest.mark.parametrize("backend", ["auto", "numpy"])
def test_float16_rows_give_what_their_float32_copy_gives(backend):
    X16 = blobs(5000, 24, 8, 0.5, 2).astype(np.float16)
    a = KMeans(8, random_state=0, max_points_per_centroid=100, backend=backend).fit(X16)
    b = KMeans(8, random_state=0, max_points_per_centroid=100, backend=backend).fit(X16.astype(np.float32))
    assert a.labels_.tobytes() == b.labels_.tobytes() and a.similarity_.tobytes() == b.similarity_.tobytes()


def test_auto_trains_like_faiss_and_labels_like_it_but_for_ties(dolly):
    auto = KMeans(50, random_state=4).fit(dolly)
    old = KMeans(50, random_state=4, backend="faiss").fit(dolly)
    assert (auto.stats_["trained_with"], auto.stats_["assigned_with"]) == ("faiss", "numpy")
    assert auto.centroids_.tobytes() == old.centroids_.tobytes()  # the same faiss training
    assert _agree_except_ties(dolly, auto.centroids_) == int((auto.labels_ != old.labels_).sum())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_backends_reach_the_same_objective(dolly, seed):
    objective = {
        backend: KMeans(40, random_state=seed, backend=backend).fit(dolly).stats_["objective_mean_cosine"]
        for backend in ("numpy", "faiss")
    }
    assert objective["numpy"] == pytest.approx(objective["faiss"], rel=0.02), objective


def test_empty_clusters_are_split_and_centroids_stay_unit():
    X = np.repeat(blobs(4, 6, 4, 0.3, 5), 25, axis=0)  # 4 distinct rows, 7 clusters: 3 must stay empty
    km = KMeans(7, random_state=0, backend="numpy").fit(X)
    assert km.stats_["empty_splits"] > 0 and np.isfinite(km.centroids_).all()
    np.testing.assert_allclose(np.linalg.norm(km.centroids_, axis=1), 1.0, rtol=1e-5)
    assert len(np.unique(km.labels_)) == 4


def test_unknown_backend_is_an_error():
    with pytest.raises(InvalidParameterError, match=r"'backend' parameter of KMeans must be one of \('auto', 'numpy'"):
        KMeans(2, backend="cuda").fit(blobs(10, 4, 2, 0.1, 0))


def test_the_cluster_stage_runs_the_configured_backend_under_its_own_key(datakit, tmp_path, monkeypatch):
    from kmq.data import read_pool
    from kmq.pipeline import build_config
    from kmq.stages import Stages

    monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path))
    path = str(datakit / "dolly_3k" / "dolly_3k.jsonl")
    pool, got = read_pool(path), {}
    for backend in ("auto", "numpy", "faiss"):
        cfg = build_config(None, {"pool": path, "budget": 300, "embed.embedder": "hashing",
                                  "cluster.kmeans_backend": backend})  # fmt: skip
        got[backend] = Stages(cfg, pool, False).clusters(300)
        assert got[backend].stats["backend"] == backend and got[backend].stats["cached"] is False
    assert len({st.key for st in got.values()}) == 3
    assert got["numpy"].stats["trained_with"] == "numpy" and got["auto"].stats["trained_with"] == "faiss"
    assert np.array_equal(got["auto"].value[1], got["faiss"].value[1])  # the same faiss centroids


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 9000), d=st.integers(1, 12), k=st.integers(1, 20), cut=st.integers(0, 9000),
       seed=st.integers(0, 2**16))  # fmt: skip
def test_block_assignment_is_the_nearest_centroid_and_a_prefix_keeps_its_bytes(m, d, k, cut, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, d), dtype=np.float32)
    C = rng.standard_normal((k, d), dtype=np.float32)
    labels, sims = assign_blocks(X, C)
    S = X.astype(np.float64) @ C.astype(np.float64).T
    assert np.all(S.max(axis=1) - S[np.arange(m), labels] <= 1e-4 * (1 + np.abs(S).max()))
    np.testing.assert_allclose(sims, S[np.arange(m), labels], rtol=1e-4, atol=1e-4)
    head_labels, head_sims = assign_blocks(X[: min(cut, m)], C)
    assert head_sims.tobytes() == sims[: min(cut, m)].tobytes() and np.array_equal(head_labels, labels[: min(cut, m)])
