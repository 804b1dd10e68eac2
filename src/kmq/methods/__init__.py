"""Selection methods: pure functions over arrays (labels, quality, weights, budget, seed) -> selected rows.

``allocate_budget`` splits a budget exactly over clusters, ``draw_per_cluster`` draws inside them without
replacement, and :data:`METHODS` holds the registered selection methods (``kmq``, ``random``, ...).
"""

from kmq.methods.allocate import allocate_budget, allocate_budget_with_stats, cluster_weights, equal_weights
from kmq.methods.draw import check_random_state, draw_in_cluster, draw_per_cluster
from kmq.methods.registry import METHODS, Method, Picked, _load_builtin, check_params, get_method, register

__all__ = [
    "METHODS",
    "Method",
    "Picked",
    "allocate_budget",
    "allocate_budget_with_stats",
    "check_params",
    "check_random_state",
    "cluster_weights",
    "draw_in_cluster",
    "draw_per_cluster",
    "equal_weights",
    "get_method",
    "register",
]

_load_builtin()  # register the built-in methods: METHODS is complete once kmq.methods is imported
