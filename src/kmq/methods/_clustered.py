"""The shared body of the cluster-based methods (``kmq``, ``kmeans-random``, ``kmeans-closest``).

Each of them is an allocation over the clusters plus a draw inside each (:class:`ClusterDraw`). The
record budget (:func:`cluster_select`) and the token budget (:mod:`kmq.methods.tokens`) share it, so
both draw with the same keys. :data:`CLUSTER_DRAWS` maps a method name to the function that turns its
inputs and parameters into its :class:`ClusterDraw` (the method modules fill it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kmq.methods.allocate import allocate_budget_with_stats, cluster_weights
from kmq.methods.draw import draw_per_cluster
from kmq.methods.registry import Picked

__all__ = ["CLUSTER_DRAWS", "ClusterDraw", "cluster_select", "cluster_stats"]


@dataclass(frozen=True, slots=True)
class ClusterDraw:
    """How a cluster method allocates and draws (parameters already checked).

    Attributes
    ----------
    allocation : {"equal", "proportional"}
        Weights of the clusters (:func:`~kmq.methods.allocate.cluster_weights`).
    within : {"softmax", "proportional", "uniform", "top", "closest"}
        The draw inside a cluster (:mod:`kmq.methods.draw`).
    quality : ndarray of shape (n,), float64 or None
        Needed by ``softmax``, ``proportional`` and ``top``.
    temperature : float
        Softmax temperature.
    distances : ndarray of shape (n,), float64 or None
        Distance to the own centroid, needed by ``closest``.
    """

    allocation: str
    within: str
    quality: np.ndarray | None = None
    temperature: float = 1.0
    distances: np.ndarray | None = None

    def draw(self, labels: np.ndarray, counts: np.ndarray, random_state: np.random.Generator):
        """:func:`~kmq.methods.draw.draw_per_cluster` with this spec: (indices, cluster, probability)."""
        return draw_per_cluster(
            labels, counts, quality=self.quality, within=self.within, temperature=self.temperature,
            random_state=random_state, distances=self.distances, return_probability=True,
        )  # fmt: skip


CLUSTER_DRAWS: dict[str, Callable[..., ClusterDraw]] = {}


def cluster_select(*, budget: int, random_state: np.random.Generator, labels: np.ndarray, spec: ClusterDraw) -> Picked:
    """Exact allocation over the clusters, then a draw inside each; inputs already checked by the registry.

    ``explain`` holds per pick its cluster's ``quota`` (allocated count) and ``cluster_size`` (selectable
    rows), both int64, and its first-draw ``probability`` inside the cluster (float64, NaN for
    deterministic draws; see :func:`~kmq.methods.draw.draw_per_cluster`).
    """
    sizes = np.bincount(labels)
    counts, alloc = allocate_budget_with_stats(sizes, cluster_weights(sizes, spec.allocation), budget)
    indices, cluster, probability = spec.draw(labels, counts, random_state)
    reason = [f"cluster {c}: {spec.within} draw" for c in cluster.tolist()]
    explain = {"quota": counts[cluster], "cluster_size": sizes[cluster], "probability": probability}
    return Picked(indices=indices, reason=reason, stats=cluster_stats(spec, sizes, counts, alloc), explain=explain)


def cluster_stats(spec: ClusterDraw, sizes: np.ndarray, counts: np.ndarray, alloc: dict[str, Any]) -> dict[str, Any]:
    """The manifest stats of an allocation (``counts`` per cluster, in records or tokens)."""
    nonempty = counts[sizes > 0]
    return {
        "allocation": spec.allocation,
        "within": spec.within,
        **({"temperature": spec.temperature} if spec.within == "softmax" else {}),
        "n_clusters": int(sizes.shape[0]),
        "n_nonempty_clusters": int((sizes > 0).sum()),
        "n_selected_clusters": int((counts > 0).sum()),
        "per_cluster_min": int(nonempty.min()) if nonempty.size else 0,
        "per_cluster_max": int(nonempty.max()) if nonempty.size else 0,
        "n_capped": alloc["n_capped"],
        "redistributed": alloc["redistributed"],
    }
