"""The shared body of the cluster-based methods (``kmq``, ``kmeans-random``, ``kmeans-closest``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kmq.methods.allocate import allocate_budget_with_stats, cluster_weights
from kmq.methods.draw import draw_per_cluster
from kmq.methods.registry import Picked


def cluster_select(
    *,
    budget: int,
    random_state: np.random.Generator,
    labels: np.ndarray,
    allocation: str,
    within: str,
    quality: np.ndarray | None = None,
    temperature: float = 1.0,
    distances: np.ndarray | None = None,
) -> Picked:
    """Exact allocation over the clusters, then a draw inside each; inputs already checked by the registry."""
    sizes = np.bincount(labels)
    counts, alloc = allocate_budget_with_stats(sizes, cluster_weights(sizes, allocation), budget)
    indices, cluster = draw_per_cluster(
        labels, counts, quality=quality, within=within, temperature=temperature, random_state=random_state,
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
