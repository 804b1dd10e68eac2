"""The paper's two k-means baselines, on kMQ's clusters and exact allocation.

``kmeans-random`` (kM-Random)
    Each cluster's share drawn uniformly at random: kMQ without quality.
``kmeans-closest`` (kM-Closest)
    Each cluster's share taken as its members closest to the centroid (cosine), ties by row index. The
    authors' code took one nearest point per centroid of a k = b clustering, which returns duplicates
    (paper.md §7 item 23); here every row is picked at most once and the budget is exact.
"""

from __future__ import annotations

import numpy as np

from kmq.errors import InvalidParameterError, invalid_parameter
from kmq.methods.allocate import ALLOCATIONS
from kmq.methods.kmq import check_budget, cluster_select
from kmq.methods.registry import Picked, register


def _check_allocation(allocation: str, owner: str) -> None:
    if allocation not in ALLOCATIONS:
        raise invalid_parameter("allocation", owner, f"one of {list(ALLOCATIONS)}", allocation)


@register(
    "kmeans-random",
    needs={"labels"},
    params={"allocation": "equal"},
    help="kM-Random: kMQ's clusters and allocation, uniform draws inside each cluster.",
)
def kmeans_random(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    labels: np.ndarray,
    allocation: str = "equal",
) -> Picked:
    """Select ``budget`` rows: exact per-cluster shares, uniform without replacement inside each cluster."""
    n, budget = check_budget(n, budget, "kmeans-random")
    _check_allocation(allocation, "kmeans-random")
    return cluster_select(
        "kmeans-random", n=n, budget=budget, random_state=random_state, labels=labels, allocation=allocation,
        within="uniform",
    )  # fmt: skip


@register(
    "kmeans-closest",
    needs={"labels", "centroids", "embeddings"},
    params={"allocation": "equal"},
    help="kM-Closest: each cluster's share taken closest to its centroid, no duplicates.",
)
def kmeans_closest(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    labels: np.ndarray,
    centroids: np.ndarray,
    embeddings: np.ndarray,
    allocation: str = "equal",
) -> Picked:
    """Select ``budget`` rows: exact per-cluster shares, each the members nearest to their centroid.

    Parameters
    ----------
    labels : ndarray of shape (n,), int
    centroids : ndarray of shape (k, d), float32
    embeddings : ndarray of shape (n, d), float32, unit rows
    """
    owner = "kmeans-closest"
    n, budget = check_budget(n, budget, owner)
    _check_allocation(allocation, owner)
    X = np.asarray(embeddings, dtype=np.float32)
    C = np.asarray(centroids, dtype=np.float32)
    lab = np.asarray(labels)
    if X.shape[0] != n or X.ndim != 2 or C.ndim != 2 or C.shape[1] != X.shape[1]:
        raise InvalidParameterError(
            f"{owner}: embeddings {X.shape} and centroids {C.shape} must be (n={n}, d) and (k, d)."
        )
    if lab.shape[0] != n or (n and (lab.min() < 0 or lab.max() >= C.shape[0])):
        raise InvalidParameterError(f"{owner}: labels must be {n} ints in [0, {C.shape[0]}).")
    norms = np.linalg.norm(C, axis=1)
    Cn = C / np.where(norms > 0, norms, 1.0)[:, None]
    distances = np.empty(n, dtype=np.float64)
    for lo in range(0, n, 65536):  # 1 - cos(x, own centroid), in bounded chunks
        distances[lo : lo + 65536] = 1.0 - np.einsum("ij,ij->i", X[lo : lo + 65536], Cn[lab[lo : lo + 65536]])
    return cluster_select(
        owner, n=n, budget=budget, random_state=random_state, labels=lab, allocation=allocation,
        within="closest", distances=distances,
    )  # fmt: skip
