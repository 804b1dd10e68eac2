"""Cluster balance of the picks: entropy over clusters, KL(selected || pool) and clusters left empty."""

from __future__ import annotations

import math

import numpy as np

from kmq.errors import InvalidParameterError
from kmq.methods.validation import check_number

__all__ = ["cluster_balance"]


def cluster_balance(labels: np.ndarray, picks: np.ndarray, k: int) -> dict[str, float | int | None]:
    """How the picks spread over the clusters, compared with the pool.

    Rows with a negative label belong to no cluster and are left out of both distributions.

    Parameters
    ----------
    labels : ndarray of shape (n,), int
        Cluster id of every pool row, in ``[0, k)`` (or negative: no cluster).
    picks : ndarray of shape (b,), int
        The picked pool rows.
    k : int
        Number of clusters, >= 1.

    Returns
    -------
    balance : dict
        ``cluster_entropy``: entropy in nats of the picks' distribution over clusters (None without
        picks in a cluster); ``cluster_entropy_max``: ``log(k)``; ``cluster_kl``: ``KL(selected || pool)``
        in nats, where the pool distribution is the clusters' share of the pool's rows (0 when the
        picks are exactly stratified; None without picks); ``empty_clusters``: clusters that have pool
        rows but no pick.

    Examples
    --------
    >>> labels = np.array([0, 0, 1, 1, 1, 1])
    >>> out = cluster_balance(labels, np.array([0, 2, 3]), 2)
    >>> round(out["cluster_entropy"], 4), out["cluster_kl"], out["empty_clusters"]
    (0.6365, 0.0, 0)
    >>> cluster_balance(labels, np.array([2, 3]), 2)["empty_clusters"]
    1
    """
    k = int(check_number(k, "k", "cluster_balance", low=1, kind=int))
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise InvalidParameterError(
            f"The 'labels' parameter of cluster_balance must be a 1-D int array of cluster ids. "
            f"Got shape {labels.shape} and dtype {labels.dtype} instead."
        )
    if labels.size and labels.max() >= k:
        raise InvalidParameterError(
            f"The 'labels' parameter of cluster_balance has cluster ids up to {labels.max()} but k={k}. "
            f"Pass k >= {labels.max() + 1}."
        )
    pool = np.bincount(labels[labels >= 0], minlength=k)
    picked = labels[np.asarray(picks, dtype=np.int64)]
    sel = np.bincount(picked[picked >= 0], minlength=k)
    out: dict[str, float | int | None] = {
        "cluster_entropy": None,
        "cluster_entropy_max": math.log(k),
        "cluster_kl": None,
        "empty_clusters": int(((pool > 0) & (sel == 0)).sum()),
    }
    m = int(sel.sum())
    if m == 0:
        return out
    nz = sel > 0
    p = sel[nz] / m
    q = pool[nz] / pool.sum()  # every picked cluster has pool rows: the picks are pool rows
    out["cluster_entropy"] = float(max(-(p * np.log(p)).sum(), 0.0))
    out["cluster_kl"] = float(max((p * np.log(p / q)).sum(), 0.0))
    return out
