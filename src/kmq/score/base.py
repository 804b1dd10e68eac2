"""The scorer interface: a pool -> quality (n,) float64, higher is better.

A subclass writes :meth:`Scorer.score`. :func:`check_scores` is the one place that rejects a scorer's
output that selection cannot use (wrong length, NaN or infinite values), naming the records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from kmq.errors import DataFormatError


class Scorer(ABC):
    """Base class of quality scorers.

    Attributes
    ----------
    name : str
        The spec the user gave (``"heuristic"``, ``"column:score"``).
    stats_ : dict
        What the last :meth:`score` call did (counts, which encoder was used, seconds).
    """

    name: str = "scorer"

    def __init__(self) -> None:
        self.stats_: dict[str, Any] = {}

    def identity(self) -> dict[str, Any]:
        """Everything that changes the scores; the quality cache key is built from it."""
        return {"class": type(self).__name__, "name": self.name}

    @abstractmethod
    def score(self, pool: Any) -> np.ndarray:
        """Score every record.

        Returns
        -------
        quality : ndarray of shape (len(pool),), float64, finite
        """


def check_scores(scores: np.ndarray, ids: Sequence[str], *, scorer: str) -> np.ndarray:
    """Validate a scorer's output: shape (n,), numeric and finite; errors name the first bad record."""
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (len(ids),):
        raise DataFormatError(
            f"Scorer {scorer} returned {arr.shape[0] if arr.ndim else 0} scores for {len(ids)} records."
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataFormatError(
            f"Scorer {scorer} gave {int(bad.sum())} NaN or infinite scores (first: record {ids[first]!r}, "
            f"value {arr[first]}). Fix or drop those records, or fill the scores before selecting."
        )
    return arr
