"""Diversity of a set of picks: the Vendi score, coverage of the pool and the facility-location value.

All three use the cosine kernel on L2-normalised rows (the inner product).
"""

from __future__ import annotations

import numpy as np

from kmq.errors import InvalidParameterError
from kmq.metrics._search import Index, nearest_similarity

__all__ = ["coverage", "coverage_from_similarity", "facility_location", "vendi_score"]


def _rows(X: np.ndarray, name: str, owner: str, d: int | None = None) -> np.ndarray:
    arr = np.asarray(X)
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.floating) or (d is not None and arr.shape[1] != d):
        width = "d" if d is None else str(d)
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be a float array of shape (m, {width}) of L2-normalised rows. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    return arr


def vendi_score(X: np.ndarray) -> float:
    """Vendi score of the rows of ``X`` under the cosine kernel (Friedman & Dieng, 2023).

    ``exp(-sum_i l_i log l_i)`` with ``l_i`` the eigenvalues of ``K / m``, ``K = X X^T`` (m x m). When
    ``m > d`` the eigenvalues come from the d x d matrix ``X^T X / m`` instead (the same nonzero
    eigenvalues, O(m d^2)). The eigenvalues are divided by their sum (the trace, m for unit rows), so a
    zero row (an empty text) weighs nothing. It is 1 when all rows are equal and m when they are orthogonal.

    Parameters
    ----------
    X : ndarray of shape (m, d), float
        L2-normalised rows, m >= 1.

    Returns
    -------
    score : float
        In [1, min(m, d)]; NaN when every row is zero.

    Examples
    --------
    >>> round(vendi_score(np.eye(3)), 6)
    3.0
    >>> round(vendi_score(np.array([[1.0, 0.0], [1.0, 0.0]])), 6)
    1.0
    """
    X = _rows(X, "X", "vendi_score").astype(np.float64)
    m, d = X.shape
    if m == 0:
        raise InvalidParameterError("The 'X' parameter of vendi_score must have at least one row. Got 0 rows.")
    gram = X @ X.T if m <= d else X.T @ X
    eig = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    total = eig.sum()
    if not total > 0:
        return float("nan")
    p = eig[eig > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def coverage_from_similarity(similarity: np.ndarray) -> tuple[float, float]:
    """Mean and 95th percentile (linear) of the cosine distances ``max(1 - s, 0)``, as float64."""
    dist = np.maximum(1.0 - np.asarray(similarity, dtype=np.float64), 0.0)
    return float(dist.mean()), float(np.percentile(dist, 95))


def coverage(X_pool: np.ndarray, X_picks: np.ndarray, *, index: Index = "exact", seed: int = 0) -> tuple[float, float]:
    """How far the pool is from the picks: the cosine distance of each pool row to its nearest pick.

    A faiss inner-product search of the pool rows against the picks (``IndexFlatIP`` in chunks, never a
    (n, b) matrix). Pass a sample of the pool rows for large problems: ``index="auto"`` or ``"ivf"`` use the
    approximate cell search of :mod:`kmq.metrics._search`, whose shortfall is not the same for every set
    of picks (it is larger for picks that leave sparse regions), so comparisons should stay exact.

    Parameters
    ----------
    X_pool : ndarray of shape (n, d), float32
        L2-normalised pool rows (pass a sample of them for large pools), n >= 1.
    X_picks : ndarray of shape (b, d), float32
        L2-normalised rows of the picks, b >= 1.
    index : {"exact", "auto", "ivf"}, default="exact"
    seed : int, default=0
        Seed of the cell search.

    Returns
    -------
    mean, p95 : float
        Mean and 95th percentile of ``1 - cos``; 0 when every pool row is a pick.

    Examples
    --------
    >>> X = np.eye(3, dtype=np.float32)
    >>> [round(v, 4) for v in coverage(X, X[:2])]
    [0.3333, 0.9]
    """
    similarity = _nearest(X_pool, X_picks, "coverage", index, seed)
    return coverage_from_similarity(similarity)


def facility_location(X_pool: np.ndarray, X_picks: np.ndarray, *, index: Index = "exact", seed: int = 0) -> float:
    """Facility-location value: the mean over pool rows of the largest cosine to a pick.

    Parameters and search as :func:`coverage` (on the same rows it is ``1 - coverage mean`` up to the
    clipping of negative distances).

    Returns
    -------
    value : float
        In [-1, 1]; 1 when every pool row is a pick.
    """
    return float(np.mean(_nearest(X_pool, X_picks, "facility_location", index, seed), dtype=np.float64))


def _nearest(X_pool: np.ndarray, X_picks: np.ndarray, owner: str, index: Index, seed: int) -> np.ndarray:
    X_picks = _rows(X_picks, "X_picks", owner)
    X_pool = _rows(X_pool, "X_pool", owner, d=X_picks.shape[1])
    for name, arr in (("X_pool", X_pool), ("X_picks", X_picks)):
        if len(arr) == 0:
            raise InvalidParameterError(f"The {name!r} parameter of {owner} must have at least one row. Got 0 rows.")
    return nearest_similarity(X_picks, X_pool, index=index, seed=seed)[0]
