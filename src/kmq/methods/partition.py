"""The coarse partition: recursive faiss k-means into compact cells of similar size.

An acceleration structure shared by the k-center baseline (it prunes distance updates) and QDIT (it
builds the sparse nearest-neighbour graph inside and between cells). Callers must not depend on the
cells being optimal.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

from kmq._deps import require

__all__ = ["coarse_partition"]


@contextmanager
def _single_thread(faiss: ModuleType) -> Iterator[None]:
    """Run faiss on one OpenMP thread: on small problems (and next to numpy's BLAS threads) two are slower."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _kmeans_labels(faiss: ModuleType, X: np.ndarray, k: int, seed: int, niter: int) -> np.ndarray:
    """Fit faiss k-means with ``k`` centroids on (a sample of) X and return every row's nearest centroid."""
    if k <= 1 or X.shape[0] <= k:
        return np.zeros(X.shape[0], np.int64) if k <= 1 else np.arange(X.shape[0], dtype=np.int64)
    km = faiss.Kmeans(
        X.shape[1], k, niter=niter, seed=seed, max_points_per_centroid=64, min_points_per_centroid=1, verbose=False
    )
    km.train(X)
    _, assign = km.index.search(X, 1)
    return assign[:, 0].astype(np.int64)


def coarse_partition(
    X: np.ndarray, n_cells: int, *, seed: int = 0, niter: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split the rows into about ``n_cells`` compact cells of similar size with recursive faiss k-means.

    Each level splits a part into at most ``ceil(sqrt(n_cells))`` k-means cells, and any cell still
    larger than twice the target size ``n / n_cells`` is split again (at most 4 levels). Assigning n rows
    costs O(n·sqrt(n_cells)·d) per level instead of O(n·n_cells·d) for a flat k-means.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        C-contiguous rows.
    n_cells : int
        Wanted number of cells (1 means one cell holding every row).
    seed : int, default=0
        faiss k-means seed (the methods draw it from their ``random_state``).
    niter : int, default=10
        k-means iterations per split.

    Returns
    -------
    order : ndarray of shape (n,), int64
        Row indices grouped by cell; increasing row index inside a cell.
    starts : ndarray of shape (n_cells_out + 1,), int64
        Cell ``c`` holds ``order[starts[c]:starts[c + 1]]``; every cell is non-empty.
    labels : ndarray of shape (n,), int64
        Cell of every row.
    """
    n = X.shape[0]
    if n_cells <= 1 or n <= 1:
        return np.arange(n, dtype=np.int64), np.array([0, n], dtype=np.int64), np.zeros(n, np.int64)
    faiss = require("faiss", purpose="the coarse partition of the k-center and QDIT baselines")
    target = n / n_cells
    fanout = max(2, math.ceil(math.sqrt(n_cells)))
    labels = np.empty(n, np.int64)
    todo = [(np.arange(n, dtype=np.int64), 0)]
    n_out = 0
    with _single_thread(faiss):
        while todo:
            members, depth = todo.pop()
            if members.size <= 2 * target or depth == 4:
                labels[members] = n_out
                n_out += 1
                continue
            k = min(fanout, math.ceil(members.size / target))
            part = X if members.size == n else np.ascontiguousarray(X[members])
            sub = _kmeans_labels(faiss, part, k, seed + n_out + len(todo), niter)
            grouped = np.argsort(sub, kind="stable")
            bounds = np.cumsum(np.bincount(sub, minlength=k))[:-1]
            todo.extend((g, depth + 1) for g in np.split(members[grouped], bounds) if g.size)
    order = np.argsort(labels, kind="stable").astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_out))]).astype(np.int64)
    return order, starts, labels
