"""The ``top-quality`` baseline and the checks and helpers shared by the baseline selectors.

:mod:`kmq.methods.kcenter`, :mod:`kmq.methods.deita` and :mod:`kmq.methods.qdit` validate their inputs
with the helpers here, so every baseline reports a bad parameter with the same message form, and they
share :func:`coarse_partition`, the faiss two-level k-means that k-center uses to prune distance
updates and QDIT uses to build its sparse nearest-neighbour graph.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import numpy as np

from kmq.errors import InvalidParameterError, MissingDependencyError, invalid_parameter
from kmq.methods.draw import check_scores
from kmq.methods.kmq import check_budget
from kmq.methods.registry import Picked, register

__all__ = ["check_embeddings", "coarse_partition", "quality_order", "top_quality", "zscore"]

_NORM_TOL = 1e-3
_CHUNK_BYTES = 64 << 20


def row_chunk(n_cols: int, itemsize: int = 4) -> int:
    """Rows per chunk so that a (rows, n_cols) temporary stays near 64 MiB."""
    return max(1, _CHUNK_BYTES // max(1, n_cols * itemsize))


def check_embeddings(embeddings: np.ndarray, n: int, owner: str) -> np.ndarray:
    """Validate (n, d) finite L2-normalised rows; return them as C-contiguous float32 (no copy when already so)."""
    arr = np.asarray(embeddings)
    if arr.ndim != 2 or arr.shape[0] != n or not np.issubdtype(arr.dtype, np.floating) or arr.shape[1] == 0:
        raise InvalidParameterError(
            f"The 'embeddings' parameter of {owner} must be a float array of shape ({n}, d), one row per pool row. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    step = row_chunk(arr.shape[1])
    for start in range(0, n, step):
        block = arr[start : start + step]
        norms = np.sqrt(np.einsum("ij,ij->i", block, block, dtype=np.float64))
        bad = np.flatnonzero(~(np.abs(norms - 1.0) <= _NORM_TOL))  # also catches NaN and inf
        if bad.size:
            row = start + int(bad[0])
            raise InvalidParameterError(
                f"The 'embeddings' parameter of {owner} must have finite, L2-normalised rows. Row {row} has norm "
                f"{norms[bad[0]]:.6g}. Normalise the rows (x / ||x||) and drop non-finite ones first."
            )
    return arr


def check_number(
    value: object, name: str, owner: str, *, low: float, high: float = math.inf, closed: str = "[)", kind: type = float
) -> float | int:
    """Validate a real (``kind=float``) or an int (``kind=int``) in an interval; ``closed`` is "()", "(]", etc."""
    types = (int, np.integer) if kind is int else (int, float, np.integer, np.floating)
    ok = isinstance(value, types) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v >= low if closed[0] == "[" else v > low) and (v <= high if closed[1] == "]" else v < high)
    if not ok:
        what = "an int" if kind is int else "a float"
        hi = "inf" if math.isinf(high) else f"{high:g}"
        raise invalid_parameter(name, owner, f"{what} in {closed[0]}{low:g}, {hi}{closed[1]}", value)
    return int(value) if kind is int else float(value)


def check_choice(value: object, name: str, owner: str, choices: tuple[str, ...]) -> str:
    """Validate a string option."""
    if value not in choices:
        raise invalid_parameter(name, owner, f"one of {list(choices)}", value)
    return str(value)


def require_faiss(purpose: str) -> ModuleType:
    """Import faiss or fail with the pip command."""
    try:
        import faiss
    except ImportError as err:
        raise MissingDependencyError(f"Please install `faiss` to use {purpose} (`pip install faiss-cpu`).") from err
    return faiss


def zscore(values: np.ndarray) -> np.ndarray:
    """Standardise to mean 0 and standard deviation 1 (float64); constant values give zeros."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std()
    if values.size == 0 or not std > 0:
        return np.zeros_like(values)
    return (values - values.mean()) / std


def quality_order(quality: np.ndarray) -> np.ndarray:
    """Row indices by quality, highest first; equal scores keep the lower row index first (int64)."""
    return np.argsort(-np.asarray(quality, dtype=np.float64), kind="stable").astype(np.int64, copy=False)


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
    costs O(n·sqrt(n_cells)·d) per level instead of O(n·n_cells·d) for a flat k-means. The cells are an
    acceleration structure only: callers must not depend on them being optimal.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        C-contiguous rows.
    n_cells : int
        Wanted number of cells (1 means one cell holding every row).
    seed : int, default=0
        faiss k-means seed.
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
    faiss = require_faiss("the coarse partition of the k-center and QDIT baselines")
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


@register(
    "top-quality",
    needs={"quality"},
    params={},
    help="The budget highest-quality rows (quality only, no diversity); ties go to the lower row index.",
)
def top_quality(*, n: int, budget: int, random_state: np.random.Generator | int | None, quality: np.ndarray) -> Picked:
    """Select the ``budget`` rows with the highest quality.

    Parameters
    ----------
    n : int
        Pool size.
    budget : int
        Number of rows to select, in ``[0, n]``.
    random_state : numpy.random.Generator, int or None
        Unused (the method is deterministic); accepted for the common signature.
    quality : ndarray of shape (n,), float
        Finite scores, higher is better.

    Returns
    -------
    Picked
        ``indices`` of shape (budget,), int64, best first; reason ``"top quality"``; stats with the lowest
        selected score (``threshold``) and the selected mean.

    Examples
    --------
    >>> top_quality(n=5, budget=2, random_state=0, quality=np.array([1.0, 3.0, 2.0, 3.0, 0.0])).indices.tolist()
    [1, 3]
    """
    owner = "top-quality"
    n, budget = check_budget(n, budget, owner)
    quality = check_scores(quality, n, name="quality", owner=owner)
    indices = quality_order(quality)[:budget]
    picked = quality[indices]
    stats = {
        "threshold": float(picked[-1]) if budget else None,
        "selected_mean_quality": float(picked.mean()) if budget else None,
        "pool_mean_quality": float(quality.mean()) if n else None,
    }
    return Picked(indices=indices, reason=["top quality"] * budget, stats=stats)
