"""Token budgets: select until a total of ``T`` training tokens, as exactly as records allow.

Users pay for training tokens, not records. :func:`select_tokens` takes the tokens of every row and a
token budget ``T`` (:func:`parse_token_budget` reads ``2M-tokens``, ``40k-tokens``, ``1500000-tokens``):

**Cluster methods** (``kmq``, ``kmeans-random``, ``kmeans-closest``):

1. Allocation by tokens: the exact water-filling and largest-remainder rounding of
   :func:`~kmq.methods.allocate.allocate_budget` with each cluster's capacity its total tokens and the
   method's allocation weights: ``equal``, the same for every non-empty cluster; ``proportional``, the
   cluster's share of the pool's tokens (what a uniform sample of ``T`` tokens gives it on average, as
   the record weights are what a uniform sample of records gives). So every cluster gets an integer
   token quota, they sum to ``T``, and none exceeds its cluster's tokens.
2. Inside each cluster, its rows in the draw's order (the same keys as :mod:`kmq.methods.draw`, so
   common random numbers hold): first fit, i.e. a row is taken iff it fits in what the rows taken before
   it left of the quota. That is the longest prefix within the quota, then the next rows that still fit.
   A cluster ends below its quota by less than each of its rows left out.
3. A global pass: what the clusters left unused (``G = T - total``) goes to whole rows, at most one
   more row per cluster, clusters in decreasing order of their unused quota (ties: lower id), each
   taking its first row in draw order that fits in ``G``. So each cluster's total is within one of its
   rows of its quota, the total never exceeds ``T``, and ``T - total`` is smaller than the longest row
   (whenever some row is left out: if ``G`` were at least the longest row, every cluster would have
   taken a row and together they would exceed ``T``). The total is not the closest subset sum to ``T``
   (that is a knapsack problem); the gap is in practice a small fraction of one row.

When every row has 1 token, ``T`` tokens select exactly the rows of a record budget of ``T``, in the
same order, for every method (when all rows have the same length ``c``, ``T // c`` records).

**Methods that pick in an order** (``random``, ``top-quality``, ``kcenter``, ``qdit``, ``deita``, any
other registered one): the method runs with an estimated record budget ``b`` (``1.2 · T / mean tokens``
+ 16, or ``T // c`` when every row has ``c`` tokens); its picks, in its order, are taken by first fit
within ``T``. If all ``b`` picks fit and rows are left, ``b`` grows (at least 1.5x) and the method runs
again, from the same random state. The selection is the last run's picks, cut at ``T``: for ``qdit``
the objective's calibration is that of the run's ``b`` rows, and ``random`` draws ``b`` rows (not the
same rows for another ``b``). So ``T - total`` is below the longest row here too.

``stats["tokens"]`` reports the ``budget``, the ``achieved`` total and the ``records`` selected.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from kmq.config import parse_token_budget  # the one parser of token budgets (config validates them)
from kmq.errors import InvalidParameterError, SelectionShortfallError
from kmq.methods._clustered import CLUSTER_DRAWS, cluster_stats
from kmq.methods.allocate import allocate_budget_with_stats, cluster_weights
from kmq.methods.registry import Method, Picked, _checked_inputs, get_method
from kmq.methods.validation import check_random_state

__all__ = ["first_fit", "parse_token_budget", "select_tokens"]

def first_fit(
    tokens: np.ndarray, groups: np.ndarray, gap: np.ndarray, taken: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """First fit inside each group, in the given order: a row is taken iff it fits in its group's gap left.

    Vectorised in rounds: every round takes, in each group, the longest run of still-fitting rows whose
    sum fits (one grouped cumulative sum), then drops the rows that no longer fit. Each round takes at
    least one row per live group; the result is that of the sequential loop.

    Parameters
    ----------
    tokens : ndarray of shape (m,), int64
        Tokens of each row (>= 0), in the scan order.
    groups : ndarray of shape (m,), int64
        Group of each row, contiguous (sorted) groups, in ``[0, k)``.
    gap : ndarray of shape (k,), int64
        What each group may still take.
    taken : ndarray of shape (m,), bool or None
        Rows already taken (skipped by the scan).

    Returns
    -------
    taken : ndarray of shape (m,), bool
        The rows taken (those given included).
    gap : ndarray of shape (k,), int64
        What each group has left.

    Examples
    --------
    >>> first_fit(np.array([4, 5, 2, 1]), np.zeros(4, np.int64), np.array([7]))[0].tolist()
    [True, False, True, True]
    """
    gap = np.array(gap, dtype=np.int64)
    taken = np.zeros(tokens.shape[0], bool) if taken is None else taken.copy()
    live = ~taken & (tokens <= gap[groups])
    while live.any():
        idx = np.flatnonzero(live)
        g, t = groups[idx], tokens[idx]
        csum = np.cumsum(t)
        starts = np.flatnonzero(np.concatenate([[True], g[1:] != g[:-1]]))
        within = csum - np.repeat(csum[starts] - t[starts], np.diff(np.append(starts, idx.size)))
        fit = within <= gap[g]  # a prefix of every group: the sums only grow
        taken[idx[fit]] = True
        gap -= np.bincount(g[fit], weights=t[fit], minlength=gap.shape[0]).round().astype(np.int64)
        live[idx] = False
        rest = idx[~fit]
        live[rest] = tokens[rest] <= gap[groups[rest]]
    return taken, gap


def select_tokens(
    method: Method | str,
    *,
    tokens: np.ndarray,
    token_budget: int,
    random_state: np.random.Generator | int | None,
    inputs: Mapping[str, np.ndarray],
    params: Mapping[str, Any] | None = None,
) -> Picked:
    """Select rows with ``method`` until ``token_budget`` tokens (see the module docstring for the rule).

    Parameters
    ----------
    method : Method or str
        A registered method (or its name).
    tokens : ndarray of shape (n,), int
        Training tokens of every pool row, >= 0.
    token_budget : int
        ``T``, in ``[0, tokens.sum()]``.
    random_state : numpy.random.Generator, int or None
        As for the method.
    inputs : mapping of str to ndarray
        The method's inputs (``embeddings``, ``labels``, ``centroids``, ``quality``).
    params : mapping, optional
        The method's parameters.

    Returns
    -------
    Picked
        ``indices`` of shape (m,), int64 (m varies with the rows' lengths); ``reason``; ``explain`` as
        the method's, plus ``tokens`` (int64) per pick; for the cluster methods ``quota`` is the number of
        rows selected from the pick's cluster and ``token_quota`` its token quota; ``stats`` as the
        method's plus ``tokens``: ``budget``, ``achieved``, ``records`` and how they were reached.

    Examples
    --------
    >>> picked = select_tokens("top-quality", tokens=np.array([5, 3, 4, 2]), token_budget=8, random_state=0,
    ...                        inputs={"quality": np.array([4.0, 3.0, 2.0, 1.0])})
    >>> picked.indices.tolist(), picked.stats["tokens"]["achieved"]
    ([0, 1], 8)
    """
    method = get_method(method) if isinstance(method, str) else method
    params = dict(params or {})
    tokens = _check_tokens(tokens)
    n = tokens.shape[0]
    total = int(tokens.sum())
    if isinstance(token_budget, bool) or not isinstance(token_budget, (int, np.integer)) or token_budget < 0:
        raise InvalidParameterError(f"The token budget must be an int >= 0. Got {token_budget!r} instead.")
    if token_budget > total:
        raise InvalidParameterError(
            f"The token budget ({token_budget} tokens) is larger than the pool's {total} tokens ({n} rows). "
            f"Pass --budget {total}-tokens or less."
        )
    rng = check_random_state(random_state, method.name)
    missing = sorted(method.needs - set(inputs))
    if missing:
        raise InvalidParameterError(f"Method {method.name!r} needs the input(s) {missing}.")
    checked = _checked_inputs(method.name, method.needs, {"n": n, "budget": 0, "random_state": rng, **inputs})
    checked = {k: checked[k] for k in method.needs}
    if method.name in CLUSTER_DRAWS:
        return _cluster_tokens(method.name, tokens, int(token_budget), rng, checked, params)
    return _ordered_tokens(method, tokens, int(token_budget), rng, checked, params)


def _cluster_tokens(name: str, tokens, budget: int, rng, inputs: dict, params: dict) -> Picked:
    """Token allocation over the clusters, first fit in draw order inside each, then one global pass."""
    spec = CLUSTER_DRAWS[name](**inputs, **params)
    labels = inputs["labels"]
    sizes = np.bincount(labels)
    capacity = np.bincount(labels, weights=tokens, minlength=sizes.shape[0]).round().astype(np.int64)
    weights = cluster_weights(capacity if spec.allocation == "proportional" else sizes, spec.allocation)
    quota, alloc = allocate_budget_with_stats(capacity, weights, budget)
    order, cluster, probability = spec.draw(labels, np.where(quota > 0, sizes, 0), rng)  # every row, draw order
    t = tokens[order]
    taken, gap = first_fit(t, cluster, quota)
    in_cluster = int(taken.sum())
    taken, extra = _one_more_row(t, cluster, taken, gap, budget - int(t[taken].sum()))
    idx = order[taken]
    cl = cluster[taken]
    counts = np.bincount(cl, minlength=sizes.shape[0])
    achieved = int(t[taken].sum())
    explain = {
        "quota": counts[cl], "token_quota": quota[cl], "cluster_size": sizes[cl],
        "probability": probability[taken], "tokens": t[taken],
    }  # fmt: skip
    stats = cluster_stats(spec, sizes, counts, alloc)
    stats["tokens"] = {
        "budget": budget, "achieved": achieved, "records": int(idx.size), "in_cluster_records": in_cluster,
        "extra_records": extra, "longest_row": int(tokens.max()) if tokens.size else 0,
        "per_cluster_token_quota_min": int(quota[sizes > 0].min()) if (sizes > 0).any() else 0,
        "per_cluster_token_quota_max": int(quota.max()) if quota.size else 0,
    }  # fmt: skip
    reason = [f"cluster {c}: {spec.within} draw, token quota {quota[c]}" for c in cl.tolist()]
    return Picked(indices=idx, reason=reason, stats=stats, explain=explain)


def _one_more_row(t, cluster, taken, gap, left: int) -> tuple[np.ndarray, int]:
    """The global pass: clusters by decreasing unused quota each take their first row that fits in ``left``."""
    taken = taken.copy()
    if left <= 0 or taken.all():
        return taken, 0
    ends = np.cumsum(np.bincount(cluster, minlength=gap.shape[0]))
    starts = ends - np.bincount(cluster, minlength=gap.shape[0])
    smallest = int(t[~taken].min())
    extra = 0
    for c in np.lexsort((np.arange(gap.shape[0]), -gap)).tolist():
        if left < smallest:
            break
        lo, hi = starts[c], ends[c]
        fits = np.flatnonzero(~taken[lo:hi] & (t[lo:hi] <= left))
        if fits.size:
            taken[lo + fits[0]] = True
            left -= int(t[lo + fits[0]])
            extra += 1
    return taken, extra


def _ordered_tokens(method: Method, tokens, budget: int, rng, inputs: dict, params: dict) -> Picked:
    """Run the method with a record budget that grows until its picks, cut at the token budget, suffice."""
    n = tokens.shape[0]
    mean = max(float(tokens.mean()), 1.0) if n else 1.0
    b = min(n, math.ceil(1.2 * budget / mean) + 16) if budget else 0
    if n and tokens.min() == tokens.max() > 0:  # equal lengths: exactly budget // length records, one run
        b = min(n, budget // int(tokens[0]))
    runs = 0
    while True:
        runs += 1
        try:
            picked = method.fn(n=n, budget=b, random_state=copy.deepcopy(rng), **inputs, **params)
        except SelectionShortfallError as err:
            raise SelectionShortfallError(
                f"{method.name} could not give the {b} records tried for the token budget of {budget} tokens: {err}"
            ) from err
        order = np.asarray(picked.indices, dtype=np.int64)
        t = tokens[order]
        taken, gap = first_fit(t, np.zeros(order.size, np.int64), np.array([budget]))
        if not (taken.all() and b < n and gap[0] > 0):
            break
        got = max(float(t.mean()), 1.0) if t.size else mean
        b = min(n, max(math.ceil(1.5 * b), b + math.ceil(1.2 * int(gap[0]) / got) + 16))
    explain = {k: np.asarray(v)[taken] for k, v in picked.explain.items()}
    explain["tokens"] = t[taken]
    reason = [r for r, keep in zip(picked.reason, taken.tolist(), strict=True) if keep] if picked.reason else None
    stats = dict(picked.stats)
    stats["tokens"] = {
        "budget": budget, "achieved": int(t[taken].sum()), "records": int(taken.sum()), "record_budget": b,
        "runs": runs, "longest_row": int(tokens.max()) if n else 0,
    }  # fmt: skip
    return Picked(indices=order[taken], reason=reason, stats=stats, explain=explain)


def _check_tokens(tokens: np.ndarray) -> np.ndarray:
    """(n,) int counts >= 0, as int64."""
    arr = np.asarray(tokens)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InvalidParameterError(
            f"The 'tokens' parameter must be a 1-D int array, the tokens of each pool row. Got shape {arr.shape} "
            f"and dtype {arr.dtype} instead."
        )
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise InvalidParameterError(f"The 'tokens' parameter must be >= 0. Got tokens[{bad[0]}]={arr[bad[0]]}.")
    return arr
