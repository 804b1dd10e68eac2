"""Seeded spherical k-means (numpy BLAS, or faiss), fitted on an explicit sample and assigned in chunks.

On unit vectors, spherical k-means (centroids renormalised each iteration, assignment by inner
product) is k-means under cosine geometry, which is what the paper's L2 k-means on unit-norm
embeddings amounts to. faiss would silently subsample to ``max_points_per_centroid * k`` training
points; we draw that sample ourselves from the seed, so its size is explicit, logged and reproducible,
and then assign every point in bounded-memory chunks.

Training and assignment each run in numpy (:mod:`kmq.cluster._lloyd`: a seeded Lloyd loop that follows
faiss's, and a fixed-block float32 matrix product + argmax) or faiss (``faiss.Kmeans``, an
``IndexFlatIP`` search). ``backend="auto"`` (the default) trains with faiss and assigns with numpy, the
fastest pair measured on kmq's 2-core machines, with OpenBLAS on its AVX2 kernels (BENCHMARKS.md, "k-means
backends": numpy assigns 1.3-1.4x faster, and trains at the same speed with an equal objective over seeds,
so training stays with faiss); it is a fixed choice, not a per-machine one. ``"numpy"`` does both in numpy
(no faiss; faster where numpy's OpenBLAS has AVX512/AMX kernels that faiss's does not, issue 15),
``"faiss"`` both in faiss (kmq's k-means before issue 15, the same results as then).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import numpy as np

from kmq._deps import require
from kmq.cluster._lloyd import BLOCK_ROWS, assign_blocks, spherical_kmeans
from kmq.errors import InvalidParameterError, NotFittedError

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "numpy", "faiss")
_TRAIN_ASSIGN = {"auto": ("faiss", "numpy"), "numpy": ("numpy", "numpy"), "faiss": ("faiss", "faiss")}


def default_n_clusters(n: int, budget: int) -> int:
    """The default k: ``round(sqrt(n / 2))``, at most ``budget // 5``, at least 2 and at most n.

    k grows with the square root of the pool (the common rule of thumb), and every cluster gets about
    five or more picks under equal allocation, so quality still has a choice to make inside each
    cluster. Examples: n=60,885, b=1,000 -> 174; n=196k, b=10k -> 313; n=3,000, b=300 -> 39; a pool of
    one record -> 1. Use ``--clusters auto`` to choose k by silhouette instead.
    """
    k = int(round((n / 2) ** 0.5))
    k = min(k, max(2, budget // 5))
    return int(min(max(2, k), n))


def _check_random_state(random_state: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


class KMeans:
    """Spherical k-means, in numpy (BLAS) or faiss.

    Parameters
    ----------
    n_clusters : int
    niter : int, default 25
        Lloyd iterations per run.
    nredo : int, default 1
        Runs from different seeds; the best objective is kept.
    max_points_per_centroid : int, default 256
        The training sample holds at most ``max_points_per_centroid * n_clusters`` points.
    random_state : int or Generator, default 0
        Seeds the training sample and the training (initial centroids, empty-cluster splits).
    chunk_size : int, default 65536
        Rows per assignment chunk (numpy: rounded up to a multiple of 4,096 rows, so the result does not
        depend on it).
    backend : {"auto", "numpy", "faiss"}, default "auto"
        What trains and what assigns: ``"auto"`` faiss.Kmeans trains and numpy assigns (a float32 matrix
        product + argmax, :mod:`kmq.cluster._lloyd`); ``"numpy"`` a seeded numpy Lloyd loop trains and numpy
        assigns; ``"faiss"`` faiss trains and an ``IndexFlatIP`` search assigns (kmq's k-means before issue
        15, the same results as then). Both assignments give the lowest centroid index among equal
        similarities, so ``"auto"`` labels the rows as ``"faiss"`` does but for float32 near-ties.
    assigner : callable or None, default None
        ``assigner(X, centroids, chunk_size, backend) -> (labels, similarity)`` assigns every row after training,
        for instance on Ray (:func:`kmq.engine.arrays.assign_rows`); it must give what
        ``assign_chunk(chunk, centroids, backend=backend)`` gives chunk by chunk. None: in this process.

    Attributes
    ----------
    centroids_ : ndarray of shape (n_clusters, d), float32
    labels_ : ndarray of shape (n,), int64
    similarity_ : ndarray of shape (n,), float32
        Cosine similarity of each point to its centroid.
    stats_ : dict
        Training sample size, objective, cluster size summary and timings.

    Examples
    --------
    >>> X = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    >>> km = KMeans(2, random_state=0).fit(X)
    >>> bool(km.labels_[0] == km.labels_[1] and km.labels_[2] == km.labels_[3] and km.labels_[0] != km.labels_[2])
    True
    """

    def __init__(
        self,
        n_clusters: int,
        *,
        niter: int = 25,
        nredo: int = 1,
        max_points_per_centroid: int = 256,
        random_state: int | np.random.Generator | None = 0,
        chunk_size: int = 65536,
        assigner: Callable[[np.ndarray, np.ndarray, int, str], tuple[np.ndarray, np.ndarray]] | None = None,
        backend: Literal["auto", "numpy", "faiss"] = "auto",
    ) -> None:
        self.n_clusters = n_clusters
        self.niter = niter
        self.nredo = nredo
        self.max_points_per_centroid = max_points_per_centroid
        self.random_state = random_state
        self.chunk_size = chunk_size
        self.assigner = assigner
        self.backend = backend

    def _check(self, X: np.ndarray) -> None:
        for name in ("n_clusters", "niter", "nredo", "max_points_per_centroid", "chunk_size"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InvalidParameterError(
                    f"The {name!r} parameter of KMeans must be an int in the range [1, inf). Got {value!r} instead."
                )
        if self.backend not in BACKENDS:
            raise InvalidParameterError(
                f"The 'backend' parameter of KMeans must be one of {BACKENDS}. Got {self.backend!r} instead."
            )
        if X.ndim != 2 or X.shape[1] == 0:
            raise InvalidParameterError(f"KMeans expects a 2-D array (n, d) with d >= 1; got shape {X.shape}.")
        if self.n_clusters > len(X):
            raise InvalidParameterError(
                f"n_samples={len(X)} should be >= n_clusters={self.n_clusters}. Pass a smaller --clusters."
            )

    def fit(self, X: np.ndarray) -> KMeans:
        """Train on a seeded sample of X, then assign every row of X.

        X may be float16 (rows a float16 ``npy:`` file kept resident): the training sample is converted to
        float32 and the rows are assigned in float32 chunks, so the result equals ``fit(X.astype(np.float32))``.
        """
        X = _rows(X)
        self._check(X)
        rng = _check_random_state(self.random_state)
        n, d = X.shape
        k = int(self.n_clusters)
        n_train = min(n, self.max_points_per_centroid * k)
        train_idx = np.sort(rng.choice(n, n_train, replace=False)) if n_train < n else np.arange(n)
        seed = int(rng.integers(2**31 - 1))
        start = time.perf_counter()
        # the sample as float32 (sample-sized); float32 X whole: no copy of it
        sample = np.ascontiguousarray(X[train_idx] if n_train < n else X, dtype=np.float32)
        trainer, _ = _TRAIN_ASSIGN[self.backend]
        if trainer == "faiss":
            self.centroids_, train = _faiss_train(sample, k, int(self.niter), int(self.nredo), seed), {}
        else:
            self.centroids_, train = spherical_kmeans(
                sample, k, niter=int(self.niter), nredo=int(self.nredo), rng=np.random.default_rng(seed)
            )
        del sample
        fit_s = time.perf_counter() - start
        self.labels_, self.similarity_ = self._assign(X)
        sizes = np.bincount(self.labels_, minlength=k)
        self.stats_: dict[str, Any] = {
            "n_clusters": k,
            "n_train": int(n_train),
            "train_sample": "all" if n_train == n else f"{n_train} of {n} points, seeded",
            "niter": int(self.niter),
            "nredo": int(self.nredo),
            "backend": self.backend,
            "trained_with": trainer,
            "assigned_with": _TRAIN_ASSIGN[self.backend][1],
            "train_seed": seed,
            "empty_splits": train.get("splits"),
            "objective_mean_cosine": float(self.similarity_.mean()),
            "size_min": int(sizes.min()),
            "size_max": int(sizes.max()),
            "size_median": float(np.median(sizes)),
            "empty_clusters": int((sizes == 0).sum()),
            "imbalance_factor": float(k * np.square(sizes).sum() / float(n) ** 2),
            "fit_seconds": round(fit_s, 3),
            "assign_seconds": round(time.perf_counter() - start - fit_s, 3),
        }
        logger.info(
            "k-means: k=%d on %s (d=%d), %d empty clusters, sizes %d..%d",
            k, self.stats_["train_sample"], d, self.stats_["empty_clusters"], sizes.min(), sizes.max(),
        )  # fmt: skip
        return self

    def _assign(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        chunk = int(self.chunk_size)
        kernel = _TRAIN_ASSIGN[self.backend][1]
        if kernel == "numpy":  # whole blocks per chunk: the labels do not depend on chunk_size
            chunk = -(-chunk // BLOCK_ROWS) * BLOCK_ROWS
        if self.assigner is not None:
            return self.assigner(X, self.centroids_, chunk, kernel)
        labels = np.empty(len(X), dtype=np.int64)
        sims = np.empty(len(X), dtype=np.float32)
        for lo in range(0, len(X), chunk):
            labels[lo : lo + chunk], sims[lo : lo + chunk] = assign_chunk(
                X[lo : lo + chunk], self.centroids_, backend=kernel
            )
        return labels, sims

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Nearest-centroid labels of new rows, ndarray of shape (m,), int64."""
        if not hasattr(self, "centroids_"):
            raise NotFittedError("This KMeans instance is not fitted yet. Call 'fit' first.")
        return self._assign(_rows(X))[0]


def assign_chunk(
    X: np.ndarray, centroids: np.ndarray, *, backend: Literal["numpy", "faiss"] = "numpy"
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid (by inner product) of each row of one chunk: labels (m,) int64, similarity (m,) float32.

    A pure function of the chunk's bytes (and the BLAS thread count): the local loop and a distributed one
    (:func:`kmq.engine.arrays.assign_rows`) call it on the same chunks and get the same values. ``backend``
    ``"numpy"``: :func:`kmq.cluster._lloyd.assign_blocks`; ``"faiss"``: an ``IndexFlatIP`` search.
    """
    if backend == "numpy":
        return assign_blocks(X, centroids)
    faiss = require("faiss", purpose="k-means clustering")
    index = faiss.IndexFlatIP(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    s, i = index.search(np.ascontiguousarray(X, dtype=np.float32), 1)
    return i[:, 0].astype(np.int64, copy=False), s[:, 0]


def _faiss_train(sample: np.ndarray, k: int, niter: int, nredo: int, seed: int) -> np.ndarray:
    """Centroids (k, d) float32 of ``faiss.Kmeans(spherical=True)`` trained on every row of ``sample``."""
    faiss = require("faiss", purpose="k-means clustering")
    km = faiss.Kmeans(
        sample.shape[1],
        k,
        niter=niter,
        nredo=nredo,
        seed=seed,
        spherical=True,
        max_points_per_centroid=len(sample) + 1,  # we already sampled: faiss must not subsample again
        min_points_per_centroid=1,
        verbose=False,
    )
    km.train(sample)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _rows(X: np.ndarray) -> np.ndarray:
    """X as k-means reads it: float32 or float16 rows as they are (float16 goes to faiss as float32 chunks, never
    as a whole-matrix copy), any other dtype converted to one C-contiguous float32 matrix."""
    X = np.asarray(X)
    if X.dtype == np.float16:
        return X
    return np.ascontiguousarray(X, dtype=np.float32)
