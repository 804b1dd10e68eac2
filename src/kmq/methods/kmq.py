"""The ``kmq`` (k-means-quality) and ``random`` selection methods.

``kmq`` splits the budget over the clusters exactly (:func:`~kmq.methods.allocate.allocate_budget`) and
draws each cluster's share without replacement (:func:`~kmq.methods.draw.draw_per_cluster`). Unlike the
authors' code it never returns fewer than ``budget`` rows: clusters smaller than their share give all
they have and the rest goes to the other clusters by weight.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError, invalid_parameter
from kmq.methods.allocate import ALLOCATIONS, allocate_budget_with_stats, cluster_weights
from kmq.methods.draw import check_labels, check_random_state, check_scores, check_temperature, draw_per_cluster
from kmq.methods.registry import Picked, register

KMQ_WITHIN = ("softmax", "proportional", "uniform", "top")


def check_budget(n: int, budget: int, owner: str) -> tuple[int, int]:
    """Validate the pool size ``n >= 0`` and ``0 <= budget <= n``; returns them as ints."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise invalid_parameter("n", owner, "an int in the range [0, inf)", n)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or not 0 <= budget <= n:
        raise InvalidParameterError(
            f"The 'budget' parameter of {owner} must be an int in the range [0, {n}] (the pool size). "
            f"Got {budget!r} instead. Lower the budget or use a larger pool."
        )
    return int(n), int(budget)


@register(
    "kmq",
    needs={"labels", "quality"},
    params={"allocation": "equal", "within": "softmax", "temperature": 1.0},
    help="k-means-quality: exact per-cluster budget, quality-weighted draws without replacement inside clusters.",
)
def kmq(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    labels: np.ndarray,
    quality: np.ndarray,
    allocation: str = "equal",
    within: str = "softmax",
    temperature: float = 1.0,
) -> Picked:
    """Select ``budget`` rows with kMQ.

    Parameters
    ----------
    n : int
        Pool size.
    budget : int
        Number of rows to select, in ``[0, n]``; the result has exactly that many.
    random_state : numpy.random.Generator, int or None
        Source of randomness.
    labels : ndarray of shape (n,), int
        Cluster id of every row, in ``[0, k)``.
    quality : ndarray of shape (n,), float
        Finite quality scores, higher is better.
    allocation : {"equal", "proportional"}, default="equal"
        Budget split over clusters: equal per non-empty cluster (authors' code) or by cluster size (paper).
    within : {"softmax", "proportional", "uniform", "top"}, default="softmax"
        Draw inside a cluster (see :mod:`kmq.methods.draw`).
    temperature : float, default=1.0
        Softmax temperature over within-cluster z-scores.

    Returns
    -------
    Picked
        ``indices`` of shape (budget,), int64, grouped by cluster; one reason per index; ``stats``.
    """
    owner = "kmq"
    n, budget = check_budget(n, budget, owner)
    if allocation not in ALLOCATIONS:
        raise invalid_parameter("allocation", owner, f"one of {list(ALLOCATIONS)}", allocation)
    if within not in KMQ_WITHIN:
        raise invalid_parameter("within", owner, f"one of {list(KMQ_WITHIN)}", within)
    temperature = check_temperature(temperature, owner)
    quality = check_scores(quality, n, name="quality", owner=owner)
    return cluster_select(
        owner, n=n, budget=budget, random_state=random_state, labels=labels, allocation=allocation,
        within=within, quality=quality, temperature=temperature,
    )  # fmt: skip


def cluster_select(
    owner: str,
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    labels: np.ndarray,
    allocation: str,
    within: str,
    quality: np.ndarray | None = None,
    temperature: float = 1.0,
    distances: np.ndarray | None = None,
) -> Picked:
    """Shared body of the cluster-based methods: exact allocation over clusters, then a draw inside each."""
    rng = check_random_state(random_state)
    labels = check_labels(labels, owner=owner)
    if labels.shape[0] != n:
        raise InvalidParameterError(f"'labels' has {labels.shape[0]} rows but the pool has n={n}. Align them.")
    sizes = np.bincount(labels)
    counts, alloc = allocate_budget_with_stats(sizes, cluster_weights(sizes, allocation), budget)
    indices, cluster = draw_per_cluster(
        labels, counts, quality=quality, within=within, temperature=temperature, random_state=rng,
        distances=distances,
    )  # fmt: skip
    reason = [f"cluster {c}: {within} draw" for c in cluster.tolist()]
    nonempty = counts[sizes > 0]
    stats: dict[str, Any] = {
        "allocation": allocation,
        "within": within,
        **({"temperature": temperature} if within == "softmax" else {}),
        "n_clusters": int(sizes.shape[0]),
        "n_nonempty_clusters": int((sizes > 0).sum()),
        "n_selected_clusters": int((counts > 0).sum()),
        "per_cluster_min": int(nonempty.min()) if nonempty.size else 0,
        "per_cluster_max": int(nonempty.max()) if nonempty.size else 0,
        "n_capped": alloc["n_capped"],
        "redistributed": alloc["redistributed"],
    }
    return Picked(indices=indices, reason=reason, stats=stats)


@register("random", needs=set(), params={}, help="Uniform random sample without replacement.")
def random(*, n: int, budget: int, random_state: np.random.Generator | int | None) -> Picked:
    """Select ``budget`` of ``n`` rows uniformly at random, without replacement.

    Returns
    -------
    Picked
        ``indices`` of shape (budget,), int64, in draw order; reason ``"uniform random"``.
    """
    n, budget = check_budget(n, budget, "random")
    rng = check_random_state(random_state)
    indices = rng.choice(n, size=budget, replace=False).astype(np.int64) if budget else np.zeros(0, np.int64)
    return Picked(indices=indices, reason=["uniform random"] * budget, stats={})
