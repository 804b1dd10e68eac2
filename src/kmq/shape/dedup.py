"""Deduplication: records that say the same thing collapse to one candidate before selection.

``exact``
    Records whose normalised conversation (whitespace runs folded to one space, case folded) is identical.
``near[:TAU]``
    Also records whose clustering embeddings have cosine above ``TAU`` (default 0.95,
    :data:`kmq.config.DEDUP_TAU`; the spec is parsed by :func:`kmq.config.parse_dedup`). Near duplicates are
    searched inside each k-means cluster only (a pair above 0.95 lands in one cluster in practice), so the
    cost is the sum of the squared cluster sizes, never an n x n matrix; blocks of rows keep memory bounded.

In both modes the *first* record in pool order is kept and each later copy points to the row it
duplicates (``dup_of``), so the result is deterministic and does not depend on the seed.
"""

from __future__ import annotations

import hashlib

import numpy as np


def normalise(text: str) -> str:
    """The text compared by exact deduplication: whitespace runs folded to one space, case folded."""
    return " ".join(text.split()).casefold()


def exact_duplicates(texts: list[str]) -> np.ndarray:
    """For each text, the row of the first identical (normalised) text before it, or -1 for the first one.

    Returns
    -------
    dup_of : ndarray of shape (n,), int64
    """
    first: dict[bytes, int] = {}
    dup_of = np.full(len(texts), -1, dtype=np.int64)
    for i, text in enumerate(texts):
        key = hashlib.blake2b(normalise(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()
        j = first.setdefault(key, i)
        if j != i:
            dup_of[i] = j
    return dup_of


def near_duplicates(
    X: np.ndarray, labels: np.ndarray, tau: float, *, dup_of: np.ndarray | None = None, block: int = 2048
) -> np.ndarray:
    """Mark rows whose cosine to an earlier kept row of the same cluster is above ``tau``.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32, unit rows
    labels : ndarray of shape (n,), int
        Cluster of each row; only rows of one cluster are compared.
    tau : float in (0, 1)
    dup_of : ndarray of shape (n,), int64, optional
        Rows already marked (``exact_duplicates``); they are neither kept nor compared again.

    Returns
    -------
    dup_of : ndarray of shape (n,), int64
        -1 for a kept row, else the kept row it duplicates (the earliest of the most similar ones).
    """
    n = len(X)
    out = np.full(n, -1, dtype=np.int64) if dup_of is None else np.asarray(dup_of, dtype=np.int64).copy()
    order = np.argsort(labels, kind="stable")  # rows grouped by cluster, pool order inside each
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for rows in np.split(order, bounds):
        rows = rows[out[rows] < 0]
        if len(rows) < 2:
            continue
        kept: list[int] = []
        kept_vecs = np.empty((0, X.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), block):
            chunk = rows[start : start + block]
            V = X[chunk]
            inner = V @ V.T  # within the block, each row against the earlier ones
            prev = V @ kept_vecs.T if len(kept) else np.empty((len(chunk), 0), dtype=np.float32)
            keep_local: list[int] = []
            for a, row in enumerate(chunk):
                best_prev = int(np.argmax(prev[a])) if prev.shape[1] else -1
                s_prev = prev[a, best_prev] if best_prev >= 0 else -np.inf
                s_local, best_local = -np.inf, -1
                if keep_local:
                    sims = inner[a, keep_local]
                    best_local = int(np.argmax(sims))
                    s_local = sims[best_local]
                if max(s_prev, s_local) > tau:
                    out[row] = kept[best_prev] if s_prev >= s_local else int(chunk[keep_local[best_local]])
                else:
                    keep_local.append(a)
            kept += [int(chunk[a]) for a in keep_local]
            kept_vecs = np.concatenate([kept_vecs, V[keep_local]]) if keep_local else kept_vecs
    return out
