"""The ``kmq`` (k-means-quality) and ``random`` selection methods.

``kmq`` splits the budget over the clusters exactly (:func:`~kmq.methods.allocate.allocate_budget`) and
draws each cluster's share without replacement (:func:`~kmq.methods.draw.draw_per_cluster`). Unlike the
authors' code it never returns fewer than ``budget`` rows: clusters smaller than their share give all
they have and the rest goes to the other clusters by weight.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from kmq.methods._clustered import CLUSTER_DRAWS, ClusterDraw, cluster_select
from kmq.methods.allocate import ALLOCATIONS
from kmq.methods.registry import Picked, register
from kmq.methods.validation import check_choice, check_temperature

KMQ_WITHIN = ("softmax", "proportional", "uniform", "top")


@register(
    "kmq",
    help="k-means-quality: exact per-cluster budget, quality-weighted draws without replacement inside clusters.",
)
def kmq(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    labels: np.ndarray,
    quality: np.ndarray,
    allocation: Literal["equal", "proportional"] = "equal",
    within: Literal["softmax", "proportional", "uniform", "top"] = "softmax",
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
        ``indices`` of shape (budget,), int64, grouped by cluster; one reason per index; ``stats``;
        ``explain`` with ``quota``, ``cluster_size`` and ``probability`` per pick (see
        :func:`~kmq.methods._clustered.cluster_select`).
    """
    spec = kmq_draw(quality=quality, allocation=allocation, within=within, temperature=temperature)
    return cluster_select(budget=budget, random_state=random_state, labels=labels, spec=spec)


def kmq_draw(
    *, quality: np.ndarray, allocation: str = "equal", within: str = "softmax", temperature: float = 1.0, **_: object
) -> ClusterDraw:
    """kmq's parameters checked, as a :class:`~kmq.methods._clustered.ClusterDraw` (other inputs ignored)."""
    owner = "kmq"
    allocation = check_choice(allocation, "allocation", owner, ALLOCATIONS)
    within = check_choice(within, "within", owner, KMQ_WITHIN)
    temperature = check_temperature(temperature, owner)
    return ClusterDraw(allocation, within, quality=quality, temperature=temperature)


CLUSTER_DRAWS["kmq"] = kmq_draw


@register("random", help="Uniform random sample without replacement.")
def random(*, n: int, budget: int, random_state: np.random.Generator | int | None) -> Picked:
    """Select ``budget`` of ``n`` rows uniformly at random, without replacement.

    Returns
    -------
    Picked
        ``indices`` of shape (budget,), int64, in draw order; reason ``"uniform random"``.
    """
    indices = random_state.choice(n, size=budget, replace=False).astype(np.int64) if budget else np.zeros(0, np.int64)
    return Picked(indices=indices, reason=["uniform random"] * budget, stats={})
