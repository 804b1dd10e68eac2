"""The paper's two k-means baselines, on kMQ's clusters and exact allocation.

``kmeans-random`` (kM-Random)
    Each cluster's share drawn uniformly at random: kMQ without quality.
``kmeans-closest`` (kM-Closest)
    Each cluster's share taken as its members closest to the centroid (cosine), ties by row index. The
    authors' code took one nearest point per centroid of a k = b clustering, which returns duplicates
    (paper.md §7 item 23); here every row is picked at most once and the budget is exact.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from kmq.methods._clustered import CLUSTER_DRAWS, ClusterDraw, cluster_select
from kmq.methods.allocate import ALLOCATIONS
from kmq.methods.registry import Picked, register
from kmq.methods.validation import check_choice

_CHUNK = 65536


@register("kmeans-random", help="kM-Random: kMQ's clusters and allocation, uniform draws inside each cluster.")
def kmeans_random(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    labels: np.ndarray,
    allocation: Literal["equal", "proportional"] = "equal",
) -> Picked:
    """Select ``budget`` rows: exact per-cluster shares, uniform without replacement inside each cluster."""
    spec = kmeans_random_draw(allocation=allocation)
    return cluster_select(budget=budget, random_state=random_state, labels=labels, spec=spec)


def kmeans_random_draw(*, allocation: str = "equal", **_: object) -> ClusterDraw:
    """kmeans-random's parameters checked, as a :class:`~kmq.methods._clustered.ClusterDraw`."""
    return ClusterDraw(check_choice(allocation, "allocation", "kmeans-random", ALLOCATIONS), "uniform")


@register("kmeans-closest", help="kM-Closest: each cluster's share taken closest to its centroid, no duplicates.")
def kmeans_closest(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    labels: np.ndarray,
    centroids: np.ndarray,
    embeddings: np.ndarray,
    allocation: Literal["equal", "proportional"] = "equal",
) -> Picked:
    """Select ``budget`` rows: exact per-cluster shares, each the members nearest to their centroid.

    Parameters
    ----------
    labels : ndarray of shape (n,), int
        Cluster id of every row, in ``[0, k)``.
    centroids : ndarray of shape (k, d), float32
        Cluster centers (any norm; compared by direction).
    embeddings : ndarray of shape (n, d), float32
        L2-normalised rows.
    allocation : {"equal", "proportional"}, default="equal"
        Budget split over clusters, as for ``kmq``.
    """
    spec = kmeans_closest_draw(labels=labels, centroids=centroids, embeddings=embeddings, allocation=allocation)
    return cluster_select(budget=budget, random_state=random_state, labels=labels, spec=spec)


def kmeans_closest_draw(
    *, labels: np.ndarray, centroids: np.ndarray, embeddings: np.ndarray, allocation: str = "equal", **_: object
) -> ClusterDraw:
    """kmeans-closest's parameters checked and its distances computed, as a ``ClusterDraw``."""
    allocation = check_choice(allocation, "allocation", "kmeans-closest", ALLOCATIONS)
    return ClusterDraw(allocation, "closest", distances=centroid_distances(embeddings, labels, centroids))


def centroid_distances(embeddings: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """Cosine distance ``1 - cos`` of every row to its own centroid: (n,) float64, in bounded chunks."""
    n = embeddings.shape[0]
    norms = np.linalg.norm(centroids, axis=1)
    Cn = centroids / np.where(norms > 0, norms, 1.0)[:, None]
    distances = np.empty(n, dtype=np.float64)
    for lo in range(0, n, _CHUNK):
        rows = slice(lo, lo + _CHUNK)
        block = np.asarray(embeddings[rows], dtype=np.float32)  # float16 rows: one float32 chunk, no (n, d) copy
        distances[rows] = 1.0 - np.einsum("ij,ij->i", block, Cn[labels[rows]])
    return distances


CLUSTER_DRAWS["kmeans-random"] = kmeans_random_draw
CLUSTER_DRAWS["kmeans-closest"] = kmeans_closest_draw
