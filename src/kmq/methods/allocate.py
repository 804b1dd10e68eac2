"""Exact budget allocation over clusters: weights -> integer per-cluster counts.

The authors' code gives every cluster ``min(floor(b / K), |D_j|)`` and so silently returns fewer than
``b`` examples (the floor remainder and the shortfall of small clusters are lost). Here the result always
sums to the budget:

1. Water-filling on real numbers: every cluster gets ``lam * w_j``, capped at its capacity; ``lam`` is
   raised until the shares sum to the budget (a capped cluster's excess goes to the others, by weight).
2. Largest-remainder rounding of those real shares, never above a capacity; equal remainders are broken
   by cluster index, lowest first.
3. Clusters of weight 0 get nothing unless the positive-weight clusters cannot absorb the budget; then
   what is left goes to them in proportion to their capacity (as if their members were drawn uniformly).

Each count is within 1 of its real-valued water-filled share, so when no cap binds it is within 1 of
``budget * w_j / sum(w)``.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from kmq.errors import InvalidParameterError, invalid_parameter

ALLOCATIONS = ("equal", "proportional")


def equal_weights(k: int) -> np.ndarray:
    """Equal weights ``1 / k`` for ``k`` clusters.

    Parameters
    ----------
    k : int
        Number of clusters, >= 0.

    Returns
    -------
    weights : ndarray of shape (k,), float64
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise invalid_parameter("k", "equal_weights", "an int in the range [0, inf)", k)
    return np.full(int(k), 1.0 / k) if k else np.zeros(0)


def cluster_weights(sizes: np.ndarray, mode: Literal["equal", "proportional"] = "equal") -> np.ndarray:
    """Allocation weights of the clusters from their sizes.

    Parameters
    ----------
    sizes : ndarray of shape (k,), int
        Number of members (or of still selectable members) of each cluster.
    mode : {"equal", "proportional"}, default="equal"
        ``"equal"``: the same weight for every non-empty cluster (the authors' code and Algorithm 1's
        uniform start); empty clusters get weight 0. ``"proportional"``: weight ``|D_j| / |D|`` (the
        paper's Eq. 3 text), i.e. stratified sampling.

    Returns
    -------
    weights : ndarray of shape (k,), float64
        Non-negative, summing to 1 unless every cluster is empty (then all 0).

    Examples
    --------
    >>> cluster_weights(np.array([5, 0, 15]), "equal").tolist()
    [0.5, 0.0, 0.5]
    >>> cluster_weights(np.array([5, 0, 15]), "proportional").tolist()
    [0.25, 0.0, 0.75]
    """
    sizes = _check_capacity(sizes, "sizes", "cluster_weights")
    if mode not in ALLOCATIONS:
        raise invalid_parameter("mode", "cluster_weights", f"one of {list(ALLOCATIONS)}", mode)
    base = (sizes > 0).astype(np.float64) if mode == "equal" else sizes.astype(np.float64)
    total = base.sum()
    return base / total if total > 0 else base


def allocate_budget(capacity: np.ndarray, weights: np.ndarray | None, budget: int) -> np.ndarray:
    """Split ``budget`` over clusters exactly, by weight, never above a cluster's capacity.

    Parameters
    ----------
    capacity : ndarray of shape (k,), int
        How many members each cluster can still give (>= 0).
    weights : ndarray of shape (k,), float or None
        Non-negative finite weights (need not sum to 1). None means equal weights.
    budget : int
        Total to allocate, in ``[0, capacity.sum()]``.

    Returns
    -------
    counts : ndarray of shape (k,), int64
        ``counts.sum() == budget`` and ``0 <= counts <= capacity``. See the module docstring for the rule
        (water-filling, largest remainder with ties to the lowest index, zero-weight clusters last).

    Examples
    --------
    >>> allocate_budget(np.array([5, 1, 10]), None, 9).tolist()
    [4, 1, 4]
    >>> allocate_budget(np.array([9, 9, 9]), None, 10).tolist()
    [4, 3, 3]
    """
    return allocate_budget_with_stats(capacity, weights, budget)[0]


def allocate_budget_with_stats(
    capacity: np.ndarray, weights: np.ndarray | None, budget: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`allocate_budget` plus what the caps changed.

    Returns
    -------
    counts : ndarray of shape (k,), int64
        As :func:`allocate_budget`.
    stats : dict
        ``n_capped``: clusters whose capacity bound (they got all they had, less than their weighted
        share); ``redistributed``: units moved away from the uncapped largest-remainder allocation
        (``sum(max(uncapped - counts, 0))``); ``zero_weight_filled``: units given to weight-0 clusters
        because the others were exhausted.
    """
    capacity = _check_capacity(capacity, "capacity", "allocate_budget")
    k = capacity.shape[0]
    weights = np.ones(k) if weights is None else _check_weights(weights, k)
    total = int(capacity.sum())
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or not 0 <= budget <= total:
        raise InvalidParameterError(
            f"The 'budget' parameter of allocate_budget must be an int in the range [0, {total}] (the total "
            f"capacity of the {k} clusters). Got {budget!r} instead. Lower the budget or add examples."
        )
    budget = int(budget)
    positive = weights > 0
    cap_pos = np.where(positive, capacity, 0)
    budget_pos = min(budget, int(cap_pos.sum()))
    shares, capped = _water_fill(cap_pos, weights, budget_pos)
    counts = _round_shares(shares, cap_pos, budget_pos)
    filled = budget - budget_pos
    if filled:  # positive-weight clusters exhausted: the rest goes to weight-0 clusters, by capacity
        cap_zero = np.where(positive, 0, capacity)
        counts += _round_shares(cap_zero * (filled / cap_zero.sum()), cap_zero, filled)
        capped = positive.copy()  # every positive-weight cluster would have taken more
    stats = {
        "n_capped": int(capped.sum()),
        "redistributed": int(np.maximum(_uncapped(weights, budget) - counts, 0).sum()),
        "zero_weight_filled": int(filled),
    }
    return counts, stats


def _water_fill(capacity: np.ndarray, weights: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Real shares ``min(capacity, lam * w)`` summing to ``budget``; returns (shares, capped mask)."""
    shares = np.zeros(capacity.shape[0])
    capped = np.zeros(capacity.shape[0], dtype=bool)
    idx = np.flatnonzero(weights > 0)
    if budget == 0 or idx.size == 0:
        return shares, capped
    cap, w = capacity[idx].astype(np.float64), weights[idx]
    order = np.argsort(cap / w, kind="stable")
    cap, w = cap[order], w[order]
    ratio = cap / w
    # f(ratio_j) = sum of shares when lam = ratio_j; the first breakpoint reaching the budget bounds lam.
    cum_cap = np.cumsum(cap)
    w_after = np.concatenate([np.cumsum(w[::-1])[::-1][1:], [0.0]])
    j = int(np.searchsorted(cum_cap + ratio * w_after >= budget, True))  # clusters [0, j) are capped
    cap_before = cum_cap[j - 1] if j else 0.0
    lam = (budget - cap_before) / w[j:].sum()
    local = np.concatenate([cap[:j], lam * w[j:]])
    shares[idx[order]] = local
    capped[idx[order[:j]]] = True
    return shares, capped


def _round_shares(shares: np.ndarray, capacity: np.ndarray, budget: int) -> np.ndarray:
    """Largest-remainder rounding of real ``shares`` to ints summing to ``budget``, within ``capacity``."""
    counts = np.minimum(np.floor(shares).astype(np.int64), capacity)
    frac = shares - np.floor(shares)
    left = budget - int(counts.sum())
    while left > 0:  # one pass in exact arithmetic; more only to absorb floating-point error
        room = np.flatnonzero(counts < capacity)
        if room.size == 0:
            raise RuntimeError(f"cannot place {left} more unit(s): every cluster is full")  # unreachable
        top = room[np.lexsort((room, -frac[room]))[:left]]  # largest remainder, ties by lowest index
        counts[top] += 1
        frac[top] = -1.0
        left -= top.size
    while left < 0:  # floating-point overshoot: take back from the smallest remainders
        has = np.flatnonzero(counts > 0)
        low = has[np.lexsort((-has, frac[has]))[:-left]]
        counts[low] -= 1
        left += low.size
    return counts


def _uncapped(weights: np.ndarray, budget: int) -> np.ndarray:
    """Largest-remainder allocation ignoring capacities (for the ``redistributed`` stat)."""
    total = weights.sum()
    if total == 0 or budget == 0:
        return np.zeros(weights.shape[0], dtype=np.int64)
    unlimited = np.full(weights.shape[0], budget, dtype=np.int64)
    return _round_shares(weights * (budget / total), unlimited, budget)


def _check_capacity(capacity: np.ndarray, name: str, owner: str) -> np.ndarray:
    """Validate a (k,) array of non-negative integers and return it as int64."""
    arr = np.asarray(capacity)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        got = f"an array of shape {arr.shape} and dtype {arr.dtype}"
        raise InvalidParameterError(f"The {name!r} parameter of {owner} must be a 1-D int array. Got {got} instead.")
    arr = arr.astype(np.int64)
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be non-negative. Got {bad.size} negative value(s), "
            f"first {name}[{bad[0]}]={arr[bad[0]]}."
        )
    return arr


def _check_weights(weights: np.ndarray, k: int) -> np.ndarray:
    """Validate (k,) finite non-negative weights and return them as float64."""
    arr = np.asarray(weights, dtype=np.float64)
    if arr.shape != (k,):
        raise InvalidParameterError(
            f"The 'weights' parameter of allocate_budget must have shape ({k},) like capacity. "
            f"Got shape {arr.shape} instead."
        )
    bad = np.flatnonzero(~np.isfinite(arr) | (arr < 0))
    if bad.size:
        raise InvalidParameterError(
            f"The 'weights' parameter of allocate_budget must be finite and >= 0. Got {bad.size} bad value(s), "
            f"first weights[{bad[0]}]={arr[bad[0]]}."
        )
    return arr
