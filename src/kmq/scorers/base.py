"""The scorer interface: a pool -> quality (n,) float64, higher is better.

A subclass writes :meth:`Scorer.score`. :func:`check_scores` is the one place that rejects a scorer's
output (wrong length, infinite values, NaN unless the scorer :attr:`~Scorer.allows_missing`), naming the
records; :func:`require_scored` is the extra check of selection, whose methods need a finite score for
every record.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from kmq.errors import DataFormatError, InvalidParameterError
from kmq.redact import redact_url


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

    @property
    def allows_missing(self) -> bool:
        """Whether :meth:`score` may return NaN on purpose for records it could not score (written as missing).

        False by default; the LLM judge with ``on_unparsable="nan"`` says True.
        """
        return False

    def identity(self) -> dict[str, Any]:
        """Everything that changes the scores; the quality cache key is built from it."""
        return {"class": type(self).__name__, "name": self.name}

    def model_parts(self) -> list[Any]:
        """The model scorers inside this one whose cache misses an engine may compute (:mod:`kmq.engine`).

        Each part is a :class:`~kmq.scorers._lm.HFModelScorer` (itself; Deita's two models); none for scorers
        without a local model (heuristic, column, relevance, whose encoder is the run's, and the HTTP judge).
        """
        return []

    @abstractmethod
    def score(self, pool: Any) -> np.ndarray:
        """Score every record.

        Returns
        -------
        quality : ndarray of shape (len(pool),), float64
            Finite, except NaN for unscored records when :attr:`allows_missing` is true.
        """


def check_scores(scores: np.ndarray, ids: Sequence[str], *, scorer: str | Scorer) -> np.ndarray:
    """Validate a scorer's output: shape (n,), numeric, finite; errors name the first bad record.

    Pass the :class:`Scorer` itself (not only its name) to let one that :attr:`~Scorer.allows_missing` keep
    its NaN; infinite values are rejected always.
    """
    name = scorer.name if isinstance(scorer, Scorer) else scorer
    missing_ok = isinstance(scorer, Scorer) and scorer.allows_missing
    arr = np.asarray(scores, dtype=np.float64)
    if arr.shape != (len(ids),):
        raise DataFormatError(
            f"Scorer {name} returned {arr.shape[0] if arr.ndim else 0} scores for {len(ids)} records."
        )
    bad = np.isinf(arr) if missing_ok else ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raise DataFormatError(
            f"Scorer {name} gave {int(bad.sum())} {'infinite' if missing_ok else 'NaN or infinite'} scores "
            f"(first: record {ids[first]!r}, value {arr[first]}). Fix or drop those records, or fill the scores "
            "before selecting."
        )
    return arr


def require_scored(quality: np.ndarray, ids: Sequence[str], *, scorer: str = "the scorer") -> np.ndarray:
    """``quality`` if every value is finite; NaN (records a scorer left unscored on purpose) is refused.

    Selection methods rank, standardise and sample by quality, so an unscored record has no place among
    them. The error names the first unscored record and the fix.
    """
    arr = np.asarray(quality, dtype=np.float64)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.argmax(bad))
        raise InvalidParameterError(
            f"Scorer {redact_url(scorer)} left {int(bad.sum())} of {len(arr)} records unscored (first: record "
            f"{ids[first]!r}), and selection needs a score for every record. Pass --judge-unparsable min (score "
            "them 1.0) or error (stop and show the answers), or fix the judge."
        )
    return arr
