"""The ``top-quality`` baseline: the budget highest-quality rows, no diversity."""

from __future__ import annotations

import numpy as np

from kmq.methods._arrays import quality_order
from kmq.methods.registry import Picked, register

__all__ = ["top_quality"]


@register(
    "top-quality",
    help="The budget highest-quality rows (quality only, no diversity); ties go to the lower row index.",
)
def top_quality(*, n: int, budget: int, random_state: np.random.Generator | int | None, quality: np.ndarray) -> Picked:
    """Select the ``budget`` rows with the highest quality.

    Parameters
    ----------
    n : int
        Pool size.
    budget : int
        Number of rows to select, in ``[0, n]``.
    random_state : numpy.random.Generator, int or None
        Unused (the method is deterministic); accepted for the common signature.
    quality : ndarray of shape (n,), float
        Finite scores, higher is better.

    Returns
    -------
    Picked
        ``indices`` of shape (budget,), int64, best first; reason ``"top quality"``; stats with the lowest
        selected score (``threshold``) and the selected mean; ``explain["score"]``: the quality (float64).

    Examples
    --------
    >>> top_quality(n=5, budget=2, random_state=0, quality=np.array([1.0, 3.0, 2.0, 3.0, 0.0])).indices.tolist()
    [1, 3]
    """
    indices = quality_order(quality)[:budget]
    picked = quality[indices]
    stats = {
        "threshold": float(picked[-1]) if budget else None,
        "selected_mean_quality": float(picked.mean()) if budget else None,
        "pool_mean_quality": float(quality.mean()) if n else None,
    }
    return Picked(indices=indices, reason=["top quality"] * budget, stats=stats, explain={"score": picked})
