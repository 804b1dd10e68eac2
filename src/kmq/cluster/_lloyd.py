"""Spherical k-means in numpy: the assignment as a float32 matrix product + argmax, and a seeded Lloyd loop.

The assignment computes ``X @ C.T`` in blocks of exactly :data:`BLOCK_ROWS` rows (the last one zero-padded):
OpenBLAS's float32 product gives a row's last bits according to the product's shape and the row's place in
it, so fixed-shape blocks make every row's similarity independent of how the caller chunks X (chunks that are
multiples of the block) and of n. It still depends on the BLAS library and its thread count.

The training follows faiss's ``Clustering`` (``faiss.Kmeans(spherical=True)``): centroids start at ``k``
distinct sample rows, each iteration assigns, averages and renormalises, and an empty cluster takes a copy of a
cluster chosen with probability ``(size - 1) / (n - k)``, both copies perturbed by ``±1/1024`` on alternate
coordinates, as faiss's ``split_clusters`` does; the draws come from the caller's Generator.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BLOCK_ROWS = 4096  # rows per matrix product; a (4096, k) float32 block is 16 MiB at k = 1,000
_SPLIT_EPS = 1.0 / 1024.0


def assign_blocks(X: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (largest inner product, the lowest index among equal ones) of every row of X.

    Parameters
    ----------
    X : ndarray of shape (m, d), float32 or float16
    centroids : ndarray of shape (k, d), float32

    Returns
    -------
    labels : ndarray of shape (m,), int64
    similarity : ndarray of shape (m,), float32
        The inner product with that centroid.
    """
    m, d = X.shape
    ct = np.ascontiguousarray(np.asarray(centroids, dtype=np.float32).T)
    labels = np.empty(m, np.int64)
    sims = np.empty(m, np.float32)
    scores = np.empty((BLOCK_ROWS, ct.shape[1]), np.float32)
    rows = np.arange(BLOCK_ROWS)
    direct = X.dtype == np.float32 and X.flags.c_contiguous
    buf = None
    for lo in range(0, m, BLOCK_ROWS):
        part = X[lo : lo + BLOCK_ROWS]
        if len(part) < BLOCK_ROWS or not direct:  # a float32 copy, zero-padded to the block's shape
            buf = np.empty((BLOCK_ROWS, d), np.float32) if buf is None else buf
            buf[: len(part)] = part
            buf[len(part) :] = 0.0
            part = buf
        np.matmul(part, ct, out=scores)
        best = scores.argmax(axis=1)
        hi = min(m, lo + BLOCK_ROWS)
        labels[lo:hi] = best[: hi - lo]
        sims[lo:hi] = scores[rows[: hi - lo], best[: hi - lo]]
    return labels, sims


def _normalise(C: np.ndarray) -> None:
    """Rows of C to unit L2 norm in place; a zero row stays zero (faiss's ``fvec_renorm_L2``)."""
    norms = np.sqrt(np.einsum("ij,ij->i", C, C, dtype=np.float64)).astype(np.float32)
    np.divide(C, norms[:, None], out=C, where=norms[:, None] > 0)


def _centroid_means(X: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean row of every cluster (float32, zero for an empty one) and the cluster sizes (int64)."""
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels, minlength=k)
    ends = np.cumsum(sizes).tolist()
    C = np.zeros((k, X.shape[1]), np.float32)
    for c in np.flatnonzero(sizes).tolist():  # each cluster's rows in row order, summed in float32 (as faiss)
        C[c] = X.take(order[ends[c] - sizes[c] : ends[c]], axis=0).sum(axis=0)
    C /= np.maximum(sizes, 1)[:, None].astype(np.float32)
    return C, sizes


def _split_empty(C: np.ndarray, sizes: np.ndarray, n: int, rng: np.random.Generator) -> int:
    """faiss's ``split_clusters``: every empty cluster becomes a perturbed copy of a big one; returns the count."""
    k = len(sizes)
    sizes = sizes.astype(np.float64)
    sign = np.where(np.arange(C.shape[1]) % 2 == 0, _SPLIT_EPS, -_SPLIT_EPS).astype(np.float32)
    empty = np.flatnonzero(sizes == 0)
    for ci in empty.tolist():
        p = (sizes - 1.0) / max(1, n - k)
        while True:  # faiss walks the clusters in order, taking cj when a uniform draw falls below p[cj]
            hit = np.flatnonzero(rng.random(k) < p)
            if hit.size:
                cj = int(hit[0])
                break
        C[ci] = C[cj] * (1 + sign)
        C[cj] *= 1 - sign
        sizes[ci] = sizes[cj] / 2
        sizes[cj] -= sizes[ci]
    return int(empty.size)


def spherical_kmeans(
    X: np.ndarray, k: int, *, niter: int, nredo: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, Any]]:
    """Seeded spherical Lloyd iterations on the training rows X; the run with the best objective is kept.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        Training rows (unit norm for cosine geometry), n >= k.
    k, niter, nredo : int
        Clusters, iterations per run and runs.
    rng : numpy.random.Generator
        The initial centroids and the empty-cluster splits.

    Returns
    -------
    centroids : ndarray of shape (k, d), float32
        Unit rows.
    stats : dict
        ``train_objective`` (sum of the training rows' similarity at the last assignment of the best run) and
        ``splits`` (empty clusters re-seeded over all runs).
    """
    n = len(X)
    best, best_obj, splits = None, -np.inf, 0
    for _ in range(nredo):
        C = np.array(X[np.sort(rng.choice(n, k, replace=False))], dtype=np.float32)
        _normalise(C)
        obj = -np.inf
        for _ in range(niter):
            labels, sims = assign_blocks(X, C)
            obj = float(sims.sum(dtype=np.float64))
            C, sizes = _centroid_means(X, labels, k)
            splits += _split_empty(C, sizes, n, rng)
            _normalise(C)
        if best is None or obj > best_obj:
            best, best_obj = C, obj
    return best, {"train_objective": best_obj, "splits": splits}
