"""Scorer specs -> scorer objects (``--scorer``), and the offline heuristic scorer class.

Specs: ``heuristic`` (offline default, see :mod:`kmq.score.heuristic`) and ``column:FIELD``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError
from kmq.score.base import Scorer
from kmq.score.column import ColumnScorer

SPECS = ("heuristic", "column:FIELD")


class HeuristicScorer(Scorer):
    """The offline quality heuristic over a pool's prompt and response views.

    Parameters
    ----------
    embedder : Embedder or None
        Encoder for prompt–response relevance. Pass the clustering encoder: every text is embedded
        once and cached, so prompts embedded for ``--embed-on prompt`` are reused. None drops the
        relevance signal.
    """

    name = "heuristic"

    def __init__(self, embedder: Any = None, *, show_progress: bool | None = None) -> None:
        super().__init__()
        self.embedder = embedder
        self.show_progress = show_progress

    def identity(self) -> dict[str, Any]:
        from kmq.score import heuristic

        return {
            **super().identity(),
            "version": getattr(heuristic, "VERSION", 1),
            "encoder": self.embedder.key if self.embedder is not None else None,
        }

    def score(self, pool) -> np.ndarray:
        from kmq.score.heuristic import heuristic_scores

        start = time.perf_counter()
        prompts, responses = pool.texts("prompt"), pool.texts("response")
        pv = rv = None
        if self.embedder is not None:
            pv = self.embedder.encode(prompts, show_progress=self.show_progress, desc="embedding prompts")
            rv = self.embedder.encode(responses, show_progress=self.show_progress, desc="embedding responses")
        scores, stats = heuristic_scores(prompts, responses, pv, rv)
        self.stats_ = {
            "scorer": self.name,
            "relevance_encoder": self.embedder.name if self.embedder is not None else None,
            **stats,
            "seconds": round(time.perf_counter() - start, 3),
        }
        return scores


def get_scorer(spec: str, *, embedder: Any = None, show_progress: bool | None = None) -> Scorer:
    """Build the scorer a spec names; an unknown spec lists the valid ones."""
    if spec == "heuristic":
        return HeuristicScorer(embedder, show_progress=show_progress)
    if spec.startswith("column:") and spec[7:]:
        return ColumnScorer(spec[7:])
    raise InvalidParameterError(f"The 'scorer' parameter must be one of {list(SPECS)}. Got {spec!r} instead.")
