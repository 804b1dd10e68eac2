"""Quality scorers: a pool -> quality (n,) float64, higher is better.

The model-based scorers (:class:`PerplexityScorer`, :class:`IFDScorer`, :class:`RewardScorer`,
:class:`DeitaScorer`, :class:`JudgeScorer`) load on first use, so importing this package pulls no torch.
"""

from __future__ import annotations

from kmq._lazy import lazy_getattr
from kmq.scorers.base import Scorer, check_scores, require_scored
from kmq.scorers.column import ColumnScorer
from kmq.scorers.scorers import HeuristicScorer, get_scorer

_LAZY = {
    "PerplexityScorer": "kmq.scorers.perplexity",
    "IFDScorer": "kmq.scorers.perplexity",
    "RewardScorer": "kmq.scorers.reward",
    "DeitaScorer": "kmq.scorers.deita",
    "JudgeScorer": "kmq.scorers.judge",
}

__all__ = ["ColumnScorer", "HeuristicScorer", "Scorer", "check_scores", "get_scorer", "require_scored", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
