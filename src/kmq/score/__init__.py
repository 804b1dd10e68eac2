"""Quality scorers: a pool -> quality (n,) float64, higher is better."""

from kmq.score.base import Scorer, check_scores
from kmq.score.column import ColumnScorer
from kmq.score.scorers import HeuristicScorer, get_scorer

__all__ = ["ColumnScorer", "HeuristicScorer", "Scorer", "check_scores", "get_scorer"]
