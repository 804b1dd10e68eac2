"""The registry of selection methods.

A method is a pure function over arrays aligned with the pool's rows. It declares which inputs it
needs, so the pipeline computes only those (``random`` needs no embedding, ``top-quality`` no clustering):

- ``embeddings``: ndarray of shape (n, d), float32, L2-normalised rows
- ``labels``: ndarray of shape (n,), int64 cluster ids in [0, k)
- ``centroids``: ndarray of shape (k, d), float32
- ``quality``: ndarray of shape (n,), float64, higher is better, finite

Every method is called as ``fn(*, n, budget, random_state, <needed inputs>, **params)`` and returns a
:class:`Picked`. ``random_state`` is a ``np.random.Generator`` made once by the caller from the seed.
This module imports nothing else of kmq (besides errors): anyone with arrays can use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError

INPUTS = frozenset({"embeddings", "labels", "centroids", "quality"})


@dataclass(slots=True)
class Picked:
    """What a method returns.

    Attributes
    ----------
    indices : ndarray of shape (budget,), int64
        Pool row indices, unique, in the order the method picked them.
    reason : list of str or None
        One short human-readable reason per picked index (``"cluster 12: softmax draw"``), or None.
    stats : dict
        JSON-serialisable counts and diagnostics of the run (written to the manifest).
    """

    indices: np.ndarray
    reason: list[str] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Method:
    """A registered selection method: its function, the inputs it needs and its parameters with defaults."""

    name: str
    fn: Callable[..., Picked]
    needs: frozenset[str]
    params: dict[str, Any]
    help: str = ""


METHODS: dict[str, Method] = {}


def register(name: str, *, needs: set[str] | frozenset[str], params: dict[str, Any] | None = None, help: str = ""):
    """Decorator that adds a method function to :data:`METHODS`."""
    unknown = set(needs) - INPUTS
    if unknown:
        raise ValueError(f"unknown inputs {sorted(unknown)}; valid: {sorted(INPUTS)}")

    def deco(fn: Callable[..., Picked]) -> Callable[..., Picked]:
        METHODS[name] = Method(name, fn, frozenset(needs), dict(params or {}), help)
        return fn

    return deco


def get_method(name: str) -> Method:
    """Look a method up by name; an unknown name lists the valid ones."""
    _load_builtin()
    try:
        return METHODS[name]
    except KeyError:
        raise InvalidParameterError(
            f"The 'method' parameter must be one of {sorted(METHODS)}. Got {name!r} instead."
        ) from None


def check_params(method: Method, params: dict[str, Any]) -> dict[str, Any]:
    """Merge ``params`` over the method's defaults; an unknown key lists the valid ones."""
    unknown = set(params) - set(method.params)
    if unknown:
        raise InvalidParameterError(
            f"Unknown parameter(s) {sorted(unknown)} for method {method.name!r}; valid: {sorted(method.params)}."
        )
    return {**method.params, **params}


def _load_builtin() -> None:
    # Importing the modules registers their methods.
    from kmq.methods import baselines, deita, kcenter, kmeans_baselines, qdit  # noqa: F401
    from kmq.methods import kmq as _kmq  # noqa: F401
