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
    digests = bytearray()  # 16 bytes per text, no dict of n entries
    for text in texts:
        digests += hashlib.blake2b(normalise(text).encode("utf-8", "surrogatepass"), digest_size=16).digest()
    keys = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2)
    dup_of = np.full(len(keys), -1, dtype=np.int64)
    if len(keys) < 2:
        return dup_of
    order = np.lexsort((keys[:, 1], keys[:, 0]))  # stable: pool order inside each group of equal digests
    hi, lo = keys[order, 0], keys[order, 1]
    new_group = np.empty(len(order), dtype=bool)
    new_group[0] = True
    np.not_equal(hi[1:], hi[:-1], out=new_group[1:])
    new_group[1:] |= lo[1:] != lo[:-1]
    del hi, lo
    first = order[np.flatnonzero(new_group)][np.cumsum(new_group) - 1]  # each row's group's first row
    later = first != order
    dup_of[order[later]] = first[later]
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
        kept = np.empty(0, dtype=np.int64)
        kept_vecs = np.empty((0, X.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), block):
            chunk = rows[start : start + block]
            V = np.asarray(X[chunk], dtype=np.float32)  # float16-resident rows: compared in float32 (H1, scale)
            keep_local = _greedy_block(V, chunk, kept, kept_vecs, tau, out)
            kept = np.concatenate([kept, chunk[keep_local]])
            kept_vecs = np.concatenate([kept_vecs, V[keep_local]])
    return out


def _greedy_block(
    V: np.ndarray, chunk: np.ndarray, kept: np.ndarray, kept_vecs: np.ndarray, tau: float, out: np.ndarray
) -> np.ndarray:
    """One block of the greedy scan: mark the block's duplicates in ``out`` and return the kept positions.

    Equal to visiting the rows one by one in pool order (each row is a duplicate of the most similar kept row,
    earlier blocks first on a tie, if that cosine is above ``tau``; else it is kept), but only rows with an
    earlier row of the block above ``tau`` (or a NaN cosine) need that visit: for the others the kept rows of
    the block cannot decide anything, so the best cosine to the earlier blocks settles them all at once.
    """
    m = len(chunk)
    inner = V @ V.T  # within the block, each row against the earlier ones
    near = np.tril(~(inner <= tau), -1)  # earlier rows of the block that may decide a row (NaN counts)
    if len(kept):
        prev = V @ kept_vecs.T
        best_prev = np.argmax(prev, axis=1)
        s_prev = prev[np.arange(m), best_prev]
    else:
        best_prev = np.full(m, -1)
        s_prev = np.full(m, -np.inf, dtype=np.float32)
    is_kept = np.zeros(m, dtype=bool)
    settled = ~near.any(axis=1)
    dup = settled & (s_prev > tau)
    out[chunk[dup]] = kept[best_prev[dup]]
    is_kept[settled & ~dup] = True
    for a in np.flatnonzero(~settled):
        cand = np.flatnonzero(near[a, :a])
        cand = cand[is_kept[cand]]
        s_local, best_local = -np.inf, -1
        if len(cand):
            sims = inner[a, cand]
            best_local = int(np.argmax(sims))
            s_local = sims[best_local]
        if max(s_prev[a], s_local) > tau:
            out[chunk[a]] = kept[best_prev[a]] if s_prev[a] >= s_local else int(chunk[cand[best_local]])
        else:
            is_kept[a] = True
    return np.flatnonzero(is_kept)
