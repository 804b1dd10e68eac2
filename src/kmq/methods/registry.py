"""The registry of selection methods.

A method is a pure function over arrays aligned with the pool's rows. Its keyword-only signature is its
whole declaration: ``n``, ``budget`` and ``random_state`` first, then the inputs it needs, then its own
parameters with their defaults. The pipeline computes only the inputs a method asks for (``random``
needs no embedding, ``top-quality`` no clustering):

- ``embeddings``: ndarray of shape (n, d), float32, L2-normalised rows
- ``labels``: ndarray of shape (n,), int64 cluster ids in [0, k)
- ``centroids``: ndarray of shape (k, d), float32
- ``quality``: ndarray of shape (n,), float64, higher is better, finite

:func:`register` reads the needs and the defaults from that signature and wraps the function so that
the common inputs are checked once, before it runs (:mod:`kmq.methods.validation`): ``n`` and
``budget``, ``random_state`` (turned into a ``np.random.Generator``), and each needed input (converted to
the dtype above). The method then checks only its own parameters and returns a :class:`Picked`.

This module imports no method module (the package ``kmq.methods`` imports the built-in ones after it)
and nothing else of kmq besides errors and the checks: anyone with arrays can use it.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError
from kmq.methods.validation import (
    check_budget,
    check_centroids,
    check_embeddings,
    check_labels,
    check_random_state,
    check_scores,
)

__all__ = ["INPUTS", "METHODS", "Method", "Picked", "check_params", "get_method", "register"]

INPUTS = frozenset({"embeddings", "labels", "centroids", "quality"})
COMMON = ("n", "budget", "random_state")


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
    explain : dict of str to ndarray
        Per-pick explanations, each an array aligned with ``indices`` (empty when the method has none):
        ``quota`` and ``cluster_size`` (int64: the pick's cluster's allocated count and selectable rows)
        and ``probability`` (float64: first-draw probability inside the cluster, NaN for deterministic
        draws) for the cluster methods; ``score`` (float64: the method's score at pick time) for
        ``kcenter``, ``qdit``, ``deita`` and ``top-quality``; method-specific extras (see each method).
    """

    indices: np.ndarray
    reason: list[str] | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    explain: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Method:
    """A registered selection method.

    Attributes
    ----------
    name : str
        The registry key (``--method``).
    fn : callable
        The method with its inputs checked first; call it as ``fn(*, n, budget, random_state, <needs>, **params)``.
    needs : frozenset of str
        The inputs of :data:`INPUTS` that the signature asks for.
    params : dict
        The method's own parameters and their defaults, read from the signature.
    help : str
        One line for ``--help`` and the docs.
    choices : dict of str to tuple
        The allowed values of each parameter annotated with ``Literal[...]`` (the CLI's ``choices``).
    """

    name: str
    fn: Callable[..., Picked]
    needs: frozenset[str]
    params: dict[str, Any]
    help: str = ""
    choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)


METHODS: dict[str, Method] = {}


def register(name: str, *, help: str = "") -> Callable[[Callable[..., Picked]], Callable[..., Picked]]:
    """Decorator that adds a method function to :data:`METHODS` and returns it with its inputs checked first.

    The function must take keyword-only arguments: ``n``, ``budget``, ``random_state``, any of
    :data:`INPUTS` (its needs) and its own parameters, each with a default (the method's defaults).
    """

    def deco(fn: Callable[..., Picked]) -> Callable[..., Picked]:
        needs, params = _declaration(name, fn)
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def method(*args: Any, **kwargs: Any) -> Picked:
            bound = sig.bind(*args, **kwargs)  # a missing or unknown argument is a TypeError, as for fn
            return fn(**_checked_inputs(name, needs, bound.arguments))

        METHODS[name] = Method(name, method, needs, params, help, _choices(fn, params))
        return method

    return deco


def _declaration(name: str, fn: Callable[..., Picked]) -> tuple[frozenset[str], dict[str, Any]]:
    """The needs and the parameter defaults of a method function, from its signature."""
    sig = inspect.signature(fn)
    wrong = [p.name for p in sig.parameters.values() if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    missing = [c for c in COMMON if c not in sig.parameters]
    no_default = [
        p.name
        for p in sig.parameters.values()
        if p.name not in INPUTS and p.name not in COMMON and p.default is inspect.Parameter.empty
    ]
    if wrong or missing or no_default:
        raise TypeError(
            f"Method {name!r} must take keyword-only arguments {', '.join(COMMON)}, its inputs and its "
            f"parameters with defaults; not keyword-only: {wrong}, missing: {missing}, "
            f"parameters without a default: {no_default}."
        )
    needs = frozenset(sig.parameters) & INPUTS
    params = {p.name: p.default for p in sig.parameters.values() if p.name not in INPUTS and p.name not in COMMON}
    return needs, params


def _choices(fn: Callable[..., Picked], params: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    """The ``Literal[...]`` values of each parameter's annotation."""
    hints = typing.get_type_hints(fn)
    return {p: typing.get_args(hints[p]) for p in params if typing.get_origin(hints.get(p)) is typing.Literal}


def _checked_inputs(owner: str, needs: frozenset[str], args: dict[str, Any]) -> dict[str, Any]:
    """Check ``n``, ``budget``, ``random_state`` and the needed inputs once; return the arguments converted."""
    out = dict(args)
    n, budget = check_budget(args["n"], args["budget"], owner)
    out.update(n=n, budget=budget, random_state=check_random_state(args["random_state"], owner))
    if "labels" in needs:
        out["labels"] = check_labels(args["labels"], n=n, owner=owner)
    if "quality" in needs:
        out["quality"] = check_scores(args["quality"], n, name="quality", owner=owner)
    if "embeddings" in needs:
        out["embeddings"] = check_embeddings(args["embeddings"], n, owner)
    if "centroids" in needs:
        d = out["embeddings"].shape[1] if "embeddings" in needs else None
        out["centroids"] = check_centroids(args["centroids"], d, owner)
        if "labels" in needs:
            check_labels(out["labels"], k=out["centroids"].shape[0], k_from="centroids", owner=owner)
    return out


def get_method(name: str) -> Method:
    """Look a method up by name; an unknown name lists the valid ones."""
    try:
        return METHODS[name]
    except KeyError:
        raise InvalidParameterError(
            f"The 'method' parameter must be one of {sorted(METHODS)}. Got {name!r} instead."
        ) from None


def check_params(method: Method, params: dict[str, Any]) -> dict[str, Any]:
    """Merge ``params`` over the method's defaults; an unknown key lists the valid ones, a value outside a
    ``Literal`` parameter's choices lists those (before any data is read)."""
    unknown = set(params) - set(method.params)
    if unknown:
        raise InvalidParameterError(
            f"Unknown parameter(s) {sorted(unknown)} for method {method.name!r}; valid: {sorted(method.params)}."
        )
    for key, allowed in method.choices.items():
        if key in params and params[key] not in allowed:
            raise InvalidParameterError(
                f"The {key!r} parameter of method {method.name!r} must be one of {list(allowed)}. "
                f"Got {params[key]!r} instead."
            )
    return {**method.params, **params}
