"""kmq.engine.arrays on the local engine: the chunked map and k-means' row assignment through it."""

from __future__ import annotations

import numpy as np
import pytest

from kmq.cluster import KMeans, assign_chunk
from kmq.engine import LocalEngine
from kmq.engine.arrays import assign_rows, chunks, map_chunks


@pytest.mark.parametrize("n,size", [(10, 3), (9, 3), (1, 5), (0, 4)])
def test_chunks_cover_the_rows_in_order(n, size):
    X = np.arange(n * 2).reshape(n, 2)
    parts = list(chunks(X, size))
    assert all(len(p) <= size for p in parts) and len(parts) == -(-n // size)
    assert np.array_equal(np.concatenate(parts) if parts else X, X)


def test_map_chunks_local_is_the_plain_loop():
    X = np.random.default_rng(0).standard_normal((50, 4))
    got = list(map_chunks(LocalEngine(), np.multiply, chunks(X, 7), 3.0))
    assert len(got) == 8 and [len(g) for g in got] == [7] * 7 + [1] and np.array_equal(np.concatenate(got), X * 3.0)


@pytest.mark.parametrize("backend", ["auto", "numpy", "faiss"])
def test_assigner_hook_gives_the_loop_values_and_the_kernel_is_the_nearest_centroid(backend):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3_000, 16)).astype(np.float16)
    plain = KMeans(12, random_state=5, chunk_size=700, backend=backend).fit(X)
    calls = []

    def assigner(*args):
        calls.append(args[2:])
        return assign_rows(LocalEngine(), *args)

    hooked = KMeans(12, random_state=5, chunk_size=700, backend=backend, assigner=assigner).fit(X)
    assert calls == [(4096 if backend != "faiss" else 700, "faiss" if backend == "faiss" else "numpy")]
    assert np.array_equal(plain.labels_, hooked.labels_) and np.array_equal(plain.similarity_, hooked.similarity_)
    labels, sims = assign_chunk(X[:100], plain.centroids_)
    ref = X[:100].astype(np.float32) @ plain.centroids_.T
    assert np.array_equal(labels, ref.argmax(1)) and np.allclose(sims, ref.max(1), atol=1e-5)
