"""Selection: pure functions over arrays (labels, quality, weights, budget, seed) -> selected rows.

``allocate_budget`` splits a budget exactly over clusters, ``draw_per_cluster`` draws inside them without
replacement, and :data:`METHODS` holds the registered selection methods (``kmq``, ``random``, ...).
"""

import sys
import types
from typing import Any

from kmq.select.allocate import allocate_budget, allocate_budget_with_stats, cluster_weights, equal_weights
from kmq.select.draw import check_random_state, draw_in_cluster, draw_per_cluster
from kmq.select.methods import METHODS, Method, Picked, _load_builtin, check_params, get_method, register

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

_load_builtin()  # register the built-in methods, so METHODS is complete as soon as kmq.select is imported


class _CallableModule(types.ModuleType):
    """``kmq.select`` is both this package and the top-level function ``kmq.select(pool, budget=...)``.

    Importing a submodule binds the package to the name ``kmq.select``, which would shadow the
    function; making the package callable keeps both documented spellings working.
    """

    def __call__(self, pool: Any, **kwargs: Any) -> Any:
        from kmq.pipeline import select

        return select(pool, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
