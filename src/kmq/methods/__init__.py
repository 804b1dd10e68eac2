"""Selection methods: pure functions over arrays (labels, quality, embeddings, budget, seed) -> selected rows.

``allocate_budget`` splits a budget exactly over clusters, ``draw_per_cluster`` draws inside them without
replacement, and :data:`METHODS` holds the registered selection methods (``kmq``, ``random``, ...).
:mod:`~kmq.methods.strata` runs a method inside strata with exact quotas, and :mod:`~kmq.methods.tokens`
selects to a token budget.

There is no import cycle: :mod:`~kmq.methods.registry` imports no method module; this package imports
the built-in method modules, and each of them imports the registry and registers its methods with it.
"""

from kmq.methods import deita, kcenter, kmeans_baselines, kmq, qdit, top_quality  # noqa: F401  (registers them)
from kmq.methods.allocate import allocate_budget, allocate_budget_with_stats, cluster_weights, equal_weights
from kmq.methods.draw import draw_in_cluster, draw_per_cluster
from kmq.methods.registry import METHODS, Method, Picked, check_params, get_method, register
from kmq.methods.strata import allocate_strata, select_stratified, stratum_codes
from kmq.methods.tokens import parse_token_budget, select_tokens
from kmq.methods.validation import check_random_state

__all__ = [
    "METHODS",
    "Method",
    "Picked",
    "allocate_budget",
    "allocate_budget_with_stats",
    "allocate_strata",
    "check_params",
    "check_random_state",
    "cluster_weights",
    "draw_in_cluster",
    "draw_per_cluster",
    "equal_weights",
    "get_method",
    "parse_token_budget",
    "register",
    "select_stratified",
    "select_tokens",
    "stratum_codes",
]
