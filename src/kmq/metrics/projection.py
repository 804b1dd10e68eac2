"""The 2-D map of a pool for the report: a seeded sample of rows (every pick while they fit) projected by PCA.

PCA is exact, deterministic and fast (one d x d covariance of the sample, O(m d^2)); UMAP (``umap-learn``,
when installed) separates clusters better on the page but costs minutes at 50k points and depends on
its own seed handling, so it is opt-in (``method="umap"``).
"""

from __future__ import annotations

import numpy as np

from kmq.errors import InvalidParameterError

#: at most this many points on the map
MAP_POINTS = 50_000
#: random stream of the map's sample (the pipeline's are 1-5)
STREAM_MAP = 6


def map_rows(n: int, picks: np.ndarray, *, seed: int, max_points: int = MAP_POINTS) -> np.ndarray:
    """The pool rows the map shows, sorted: every pick when they fill at most half of it, plus a seeded sample.

    Parameters
    ----------
    n : int
        Pool size.
    picks : ndarray of int
        The selected rows.
    seed : int
    max_points : int

    Returns
    -------
    rows : ndarray of int64, sorted, at most ``max_points`` long
    """
    picks = np.unique(np.asarray(picks, dtype=np.int64))
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, STREAM_MAP])
    if len(picks) > max_points // 2:
        picks = np.sort(rng.choice(picks, size=max_points // 2, replace=False))
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), picks, assume_unique=True)
    others = rng.choice(rest, size=max_points - len(picks), replace=False)
    return np.sort(np.concatenate([picks, others]))


def project_2d(X: np.ndarray, *, method: str = "pca", seed: int = 0, rows: np.ndarray | None = None) -> np.ndarray:
    """Coordinates (m, 2) float32 of the rows of ``X`` (m, d), or of ``X[rows]``: the top two principal components.

    PCA's component signs are fixed (the largest loading positive), so the map does not flip between
    runs or BLAS builds. With ``rows`` the sample is gathered a block at a time straight into the one float64
    matrix PCA centres in place (no float32 copy of the sample beside it); ``method="umap"`` runs UMAP.
    """
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise InvalidParameterError(
                "The map projection 'umap' needs the umap-learn package: pip install umap-learn, or use pca."
            ) from None
        X = np.asarray(X if rows is None else X[rows], dtype=np.float32)
        if X.shape[0] == 0:
            return np.zeros((0, 2), dtype=np.float32)
        return umap.UMAP(n_components=2, random_state=seed, metric="cosine").fit_transform(X).astype(np.float32)
    if method != "pca":
        raise InvalidParameterError(f"The map projection must be pca or umap. Got {method!r} instead.")
    Xc = _float64_rows(X, rows)
    m = Xc.shape[0]
    if m == 0:
        return np.zeros((0, 2), dtype=np.float32)
    Xc -= Xc.mean(axis=0)  # row-by-row sums: the same bits as X.mean(axis=0, dtype=np.float64) on float32 rows
    cov = Xc.T @ Xc / max(m - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    comps = vecs[:, np.argsort(vals)[::-1][:2]]
    if comps.shape[1] < 2:  # d == 1
        comps = np.pad(comps, ((0, 0), (0, 2 - comps.shape[1])))
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(comps.shape[1])])
    comps = comps * np.where(signs == 0, 1.0, signs)
    return (Xc @ comps).astype(np.float32)


def _float64_rows(X: np.ndarray, rows: np.ndarray | None, block: int = 8192) -> np.ndarray:
    """``X[rows]`` (all rows when None) as float32 values widened to a new C-contiguous float64 matrix."""
    X = np.asarray(X)
    rows = np.arange(X.shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), X.shape[1]), dtype=np.float64)
    for lo in range(0, len(rows), block):
        out[lo : lo + block] = X[rows[lo : lo + block]].astype(np.float32, copy=False)
    return out
