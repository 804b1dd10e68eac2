"""float16 ``npy:`` vectors stay float16 in memory (issue 15, 10M rows): same results, no float32 matrix copy."""

import json
import tracemalloc

import numpy as np
import pytest

import kmq
from kmq.cache import digest
from kmq.cluster import KMeans
from kmq.embed.precomputed import load_npy_embeddings, load_npy_source, resident_dtype
from kmq.methods.kmeans_baselines import centroid_distances
from kmq.metrics import diagnostics
from kmq.metrics.projection import map_rows, project_2d


def clustered(n, d, k, seed=0, spread=0.15):
    """Unit-ish rows around ``k`` random directions, float32."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    return (centers[labels] + spread * rng.standard_normal((n, d), dtype=np.float32) / np.sqrt(d)).astype(np.float32)


def test_float16_files_stay_float16_and_float32_files_are_unchanged(tmp_path):
    x = clustered(70_000, 8, 5)  # more than one chunk of rows
    x[7] = 0
    np.save(tmp_path / "h.npy", x.astype(np.float16))
    np.save(tmp_path / "f.npy", x)
    H, hkey = load_npy_source(tmp_path / "h.npy", len(x), keep_float16=True)
    assert H.dtype == np.float16 and resident_dtype(np.float16) == np.float16 and not H[7].any()
    up = load_npy_embeddings(tmp_path / "h.npy", len(x))  # the float32 rows of the same file
    assert np.array_equal(H, up.astype(np.float16))  # normalised in float32, then rounded
    assert (np.abs(H.astype(np.float32) - up) <= np.abs(up) * 2.0**-11 + 2.0**-25).all()  # the tolerance
    assert hkey == digest("npy-float16", H) and hkey != load_npy_source(tmp_path / "h.npy", len(x))[1]
    F, fkey = load_npy_source(tmp_path / "f.npy", len(x), keep_float16=True)  # a float32 file: as before
    assert F.dtype == np.float32 and fkey == load_npy_source(tmp_path / "f.npy", len(x))[1]
    assert fkey == digest("npy", F)


@pytest.mark.parametrize("n_train", ["sample", "all"])
def test_kmeans_on_float16_equals_kmeans_on_the_same_values_as_float32(n_train):
    X16 = clustered(6_000, 16, 12, seed=1).astype(np.float16)
    params = {"max_points_per_centroid": 40 if n_train == "sample" else 1000, "chunk_size": 1000}
    a = KMeans(12, random_state=3, **params).fit(X16)
    b = KMeans(12, random_state=3, **params).fit(X16.astype(np.float32))
    assert np.array_equal(a.labels_, b.labels_) and np.array_equal(a.centroids_, b.centroids_)
    assert np.array_equal(a.similarity_, b.similarity_)
    assert a.stats_["n_train"] == (480 if n_train == "sample" else 6_000)
    assert np.array_equal(a.predict(X16[:50]), b.predict(X16[:50].astype(np.float32)))


def _peak(fn):
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_no_whole_matrix_float32_copy_on_the_select_path(tmp_path):
    """numpy reports its buffers to tracemalloc: the peak of each step stays far below a float32 (n, d) matrix."""
    n, d = 400_000, 64
    np.save(tmp_path / "h.npy", clustered(n, d, 20, seed=2).astype(np.float16))
    f32_bytes = n * d * 4
    (X, _), peak = _peak(lambda: load_npy_source(tmp_path / "h.npy", n, keep_float16=True))
    assert X.dtype == np.float16 and peak < 0.9 * f32_bytes  # the float16 result and a few chunks (a copy: 1.5x)
    km, peak = _peak(lambda: KMeans(20, random_state=0, max_points_per_centroid=64).fit(X))
    assert peak < 0.45 * f32_bytes  # labels, similarities, a small sample, 65,536-row float32 chunks (a copy: 1x)
    _, peak = _peak(lambda: centroid_distances(X, km.labels_, km.centroids_))
    assert peak < 0.45 * f32_bytes
    picks = np.random.default_rng(0).choice(n, 2_000, replace=False)
    diag, peak = _peak(lambda: diagnostics(picks=picks, n=n, embeddings=X, labels=km.labels_, seed=0))
    assert peak < 0.45 * f32_bytes
    rows = map_rows(n, picks, seed=0)
    xy, peak = _peak(lambda: project_2d(X, rows=rows, seed=0))
    assert peak < 0.45 * f32_bytes
    X32 = X.astype(np.float32)  # the same values as float32: the same numbers
    same = diagnostics(picks=picks, n=n, embeddings=X32, labels=km.labels_, seed=0)
    assert {**diag, "seconds": 0} == {**same, "seconds": 0} and 0 < diag["selected"]["coverage_mean"] < 0.1
    assert np.array_equal(xy, project_2d(X32, rows=rows, seed=0))
    assert np.array_equal(centroid_distances(X, km.labels_, km.centroids_),
                          centroid_distances(X32, km.labels_, km.centroids_))  # fmt: skip


def exact_unit_rows(n, seed=0):
    """Rows of four +-0.5 coordinates (exact in float16, norm exactly 1): 8 clusters of disjoint coordinates in
    d = 32, the last sign of each row random, so normalising changes no bit whatever the dtype."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 8, n)
    X = np.zeros((n, 32), np.float32)
    cols = labels[:, None] * 4 + np.arange(4)
    X[np.arange(n)[:, None], cols] = 0.5
    X[np.arange(n), cols[:, 3]] *= rng.choice([-1.0, 1.0], n)
    return X


def test_a_float16_pool_selects_as_its_float32_upcast(datakit, tmp_path):
    """Where the vectors are equal (the float16 file and its float32 upcast normalise to the same values) the
    selection, its outputs and its diagnostics are the same; otherwise rows differ by float16's rounding."""
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:1_200]
    records = [dict(json.loads(x), score=float(i % 7)) for i, x in enumerate(lines)]
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in records))
    x = exact_unit_rows(len(records))
    np.save(tmp_path / "h.npy", x.astype(np.float16))
    np.save(tmp_path / "f.npy", x)
    runs = {}
    for name in ("h", "f"):
        runs[name] = kmq.select(str(pool), budget=120, embedder=f"npy:{tmp_path / name}.npy", scorer="column:score",
                                clusters=8, out=tmp_path / f"{name}.jsonl", run_dir=tmp_path / name)  # fmt: skip
    h, f = runs["h"], runs["f"]
    assert h.manifest["stages"]["embed"]["conversation"]["resident_dtype"] == "float16"
    assert f.manifest["stages"]["embed"]["conversation"]["resident_dtype"] == "float32"
    assert h.ids == f.ids and np.array_equal(h.clusters, f.clusters)
    assert len(set(h.clusters.tolist())) == 8
    for out in ("h.jsonl", "{}/selection.parquet", "{}/pool.parquet", "{}/map.parquet", "{}/clusters.parquet"):
        assert (tmp_path / out.format("h")).read_bytes() == (tmp_path / out.format("f")).read_bytes(), out
    assert {**h.manifest["diagnostics"], "seconds": 0} == {**f.manifest["diagnostics"], "seconds": 0}


@pytest.mark.parametrize("name", ["fastchat_dummy", "dolly_3k"])
def test_prompt_keys_a_batch_at_a_time_equal_the_whole_pool_ones(datakit, name):
    from kmq.data import read_pool
    from kmq.metrics import prompt_keys
    from kmq.pipeline import first_prompt_keys

    messages = read_pool(str(datakit / name / f"{name}.jsonl")).messages
    whole = prompt_keys(messages.first_user())
    assert np.array_equal(first_prompt_keys(messages, batch=7), whole) and len(set(whole.tolist())) > 50
    assert messages.first_user(5, 9) == messages.first_user()[5:9] and messages.first_user(9, 9) == []
