"""Stratified selection: exact per-stratum quotas, then a method run inside each stratum.

For mixed pools (``--stratify source``, ``--quota source=lima:200 source=gsm8k_train:0.1``):

1. :func:`allocate_strata` splits the budget exactly over the strata. Fixed quotas come first: an int
   is a count, a float in ``[0, 1]`` a fraction of the budget. The rest of the budget goes to the other
   strata in proportion to their sizes (their share of the pool). The real-valued shares of the
   fraction strata and of the free strata are rounded together by largest remainder (ties to the
   earlier stratum), so each is within 1 of its share, the counts sum to the budget exactly and no count
   exceeds its stratum's size. A quota larger than its stratum, or fixed quotas summing above the
   budget, is an :class:`~kmq.errors.InvalidParameterError` that names the numbers.
2. :func:`select_stratified` runs a registered method inside each stratum on that stratum's rows, with
   the clustering of the whole pool (labels and centroids are passed through, not refitted), and maps
   the picks back to pool rows. Each stratum draws from its own child stream of the given generator
   (``random_state.spawn``, one per stratum in stratum order, so a stratum's picks do not depend on the
   other strata's counts).

The same functions take token quotas: see :func:`kmq.methods.tokens.select_tokens` and the ``tokens``
argument of :func:`select_stratified`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError
from kmq.methods.allocate import _round_shares
from kmq.methods.registry import Method, Picked, get_method
from kmq.methods.validation import check_random_state

__all__ = ["MISSING", "allocate_strata", "select_stratified", "stratum_codes"]

MISSING = "(missing)"  # the stratum of rows without a value for the field
_REL_TOL = 1e-9


def stratum_codes(values: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    """Stratum codes of per-row field values.

    Parameters
    ----------
    values : sequence of length n
        The field's value per row; ``None`` goes to the stratum :data:`MISSING`; other values by ``str``.

    Returns
    -------
    codes : ndarray of shape (n,), int64
        Index of each row's stratum in ``names``.
    names : list of str
        The strata, sorted.

    Examples
    --------
    >>> codes, names = stratum_codes(["lima", "gsm8k", None, "lima"])
    >>> codes.tolist(), names
    ([2, 1, 0, 2], ['(missing)', 'gsm8k', 'lima'])
    """
    names_of_rows = np.array([MISSING if v is None else str(v) for v in values], dtype=object)
    if names_of_rows.size == 0:
        return np.zeros(0, np.int64), []
    names, codes = np.unique(names_of_rows.astype(str), return_inverse=True)
    return codes.astype(np.int64).ravel(), [str(v) for v in names]


def allocate_strata(
    sizes: Mapping[str, int],
    budget: int,
    fixed: Mapping[str, int | float] | None = None,
    *,
    field: str = "stratum",
    unit: str = "rows",
) -> dict[str, int]:
    """Split ``budget`` exactly over the strata: fixed quotas first, the rest by the strata's sizes.

    Parameters
    ----------
    sizes : mapping of str to int
        Size of every stratum (rows, or tokens with a token budget), in the order of the result.
    budget : int
        Total to allocate, in ``[0, sum(sizes)]``.
    fixed : mapping of str to int or float, optional
        Quotas of some strata: an int is a count, a float in ``[0, 1]`` a fraction of the budget.
    field : str, default="stratum"
        The stratifying field, for the messages (``--quota source=lima:500``).
    unit : str, default="rows"
        What the sizes count, for the messages.

    Returns
    -------
    counts : dict of str to int
        One count per stratum, in the order of ``sizes``: summing to ``budget``, each within its size,
        fixed counts exact, fractions and the free strata's proportional shares within 1.

    Examples
    --------
    >>> allocate_strata({"a": 100, "b": 300, "c": 600}, 100)
    {'a': 10, 'b': 30, 'c': 60}
    >>> allocate_strata({"a": 100, "b": 300, "c": 600}, 100, {"a": 40, "c": 0.25})
    {'a': 40, 'b': 35, 'c': 25}
    """
    names = list(sizes)
    cap = np.array([_size(sizes[s], s, field) for s in names], dtype=np.int64)
    total = int(cap.sum())
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or not 0 <= budget <= total:
        raise InvalidParameterError(
            f"The budget must be an int in the range [0, {total}] (the {unit} of the {len(names)} strata of "
            f"{field!r}). Got {budget!r} instead."
        )
    budget = int(budget)
    counts = np.zeros(len(names), np.int64)
    shares = np.zeros(len(names))
    is_fixed = np.zeros(len(names), bool)
    is_count = np.zeros(len(names), bool)
    for name, quota in (fixed or {}).items():
        j = _position(names, name, field)
        is_fixed[j] = True
        if _is_count(quota, name, field):
            is_count[j] = True
            counts[j] = _check_room(int(quota), quota, name, cap[j], field, unit)
        else:
            shares[j] = _check_room(float(quota) * budget, quota, name, cap[j], field, unit, budget=budget)
    rest = budget - int(counts.sum()) - float(shares.sum())
    if rest < -_REL_TOL * max(budget, 1):
        taken = ", ".join(f"{field}={n}:{q}" for n, q in (fixed or {}).items())
        raise InvalidParameterError(
            f"The quotas {taken} take {budget - rest:g} of the budget {budget}. Lower them or raise the budget."
        )
    rest = max(rest, 0.0)
    free_cap = float(cap[~is_fixed].sum())
    if rest > _REL_TOL * max(budget, 1) and rest > free_cap:
        free = [n for n, f in zip(names, is_fixed, strict=True) if not f]
        where = f"the strata without a quota ({', '.join(free)}) have only {free_cap:g} {unit}" if free else (
            "every stratum has a quota"
        )  # fmt: skip
        raise InvalidParameterError(
            f"The quotas leave {rest:g} of the budget {budget} to the other strata of {field!r}, but {where}. "
            f"Raise the quotas, quote fewer strata or lower the budget."
        )
    if free_cap > 0:
        shares[~is_fixed] = rest * cap[~is_fixed] / free_cap
    counts += _round_shares(shares, np.where(is_count, 0, cap), budget - int(counts.sum()))  # counts stay exact
    return dict(zip(names, counts.tolist(), strict=True))


def _size(value: Any, name: str, field: str) -> int:
    """A stratum size: an int >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidParameterError(f"The size of stratum {field}={name} must be an int >= 0. Got {value!r} instead.")
    return int(value)


def _position(names: list[str], name: str, field: str) -> int:
    """Index of a quoted stratum; an unknown one lists the strata."""
    try:
        return names.index(name)
    except ValueError:
        raise InvalidParameterError(
            f"The quota {field}={name} names no stratum: the pool's values of {field!r} are {names}."
        ) from None


def _is_count(quota: Any, name: str, field: str) -> bool:
    """True for an int count >= 0, False for a float fraction in [0, 1]; anything else is an error."""
    if isinstance(quota, (int, np.integer)) and not isinstance(quota, bool) and quota >= 0:
        return True
    if isinstance(quota, (float, np.floating)) and 0.0 <= quota <= 1.0:
        return False
    raise InvalidParameterError(
        f"The quota {field}={name}:{quota!r} must be a count (an int >= 0) or a fraction of the budget (a float "
        f"in [0, 1]). Got {quota!r} instead."
    )


def _check_room(share, quota, name: str, size: int, field: str, unit: str, *, budget: int | None = None):
    """A quota must fit its stratum."""
    if share > size * (1 + _REL_TOL):
        of = f" ({share:g} of the budget {budget})" if budget is not None else ""
        most = f"{size}" if budget is None else f"{size / budget:.4g} (a fraction) or a count of at most {size}"
        raise InvalidParameterError(
            f"The quota {field}={name}:{quota}{of} is larger than its stratum, which has {size} {unit}. "
            f"Lower the quota to at most {most}."
        )
    return min(share, size)


def select_stratified(
    method: Method | str,
    *,
    strata: np.ndarray,
    counts: Mapping[str, int] | np.ndarray,
    random_state: np.random.Generator | int | None,
    inputs: Mapping[str, np.ndarray],
    params: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    tokens: np.ndarray | None = None,
) -> Picked:
    """Run ``method`` inside each stratum with that stratum's count and concatenate the picks.

    Parameters
    ----------
    method : Method or str
        A registered method (or its name).
    strata : ndarray of shape (n,), int
        Stratum code of every pool row, in ``[0, s)`` (:func:`stratum_codes`).
    counts : mapping of str to int, or ndarray of shape (s,), int
        Records per stratum (:func:`allocate_strata`); a mapping is keyed by ``names``. With ``tokens``,
        token quotas per stratum instead.
    random_state : numpy.random.Generator, int or None
        Spawns one child stream per stratum.
    inputs : mapping of str to ndarray
        The method's inputs over the whole pool (``embeddings``, ``labels``, ``centroids``, ``quality``):
        row-aligned ones are cut to each stratum, ``centroids`` is passed as is.
    params : mapping, optional
        The method's parameters.
    names : sequence of str, optional
        Name of each stratum (default ``"0"``, ``"1"``, ...), for the stats and reasons.
    tokens : ndarray of shape (n,), int or None
        Tokens per row: then ``counts`` are token quotas and every stratum runs
        :func:`~kmq.methods.tokens.select_tokens`. A stratum's unused quota (less than one of its rows)
        is carried to the next stratum, so the total stays within one row of the token budget.

    Returns
    -------
    Picked
        ``indices`` of the pool rows, grouped by stratum in code order, each group in the method's order;
        reasons prefixed with ``stratum NAME:``; ``explain`` as the method's (computed inside the stratum:
        a cluster's ``quota`` and ``cluster_size`` count its rows in that stratum) plus ``stratum``
        (int64 codes); ``stats["strata"]``: per stratum its ``size``, ``quota`` and ``picked`` (and
        ``tokens`` with a token budget) and the method's own stats (``method``).
    """
    method = get_method(method) if isinstance(method, str) else method
    params = dict(params or {})
    strata = _check_strata(strata)
    n_strata = int(strata.max()) + 1 if strata.size else 0
    if names is None:
        names = [str(i) for i in range(n_strata)]
    names = [str(s) for s in names]
    if n_strata > len(names):
        raise InvalidParameterError(
            f"'strata' has codes up to {n_strata - 1} but 'names' names only {len(names)} strata. Pass the names of "
            f"stratum_codes."
        )
    quota = _counts_array(counts, names)
    if tokens is not None:
        tokens = np.asarray(tokens)
        if tokens.shape != strata.shape:
            raise InvalidParameterError(f"'tokens' has shape {tokens.shape} but 'strata' has {strata.shape}.")
    room = np.bincount(strata, weights=tokens, minlength=len(names)).round().astype(np.int64)
    short = np.flatnonzero(quota > room)
    if short.size:
        j, unit = short[0], "rows" if tokens is None else "tokens"
        raise InvalidParameterError(
            f"The count {quota[j]} of stratum {names[j]!r} is larger than its {room[j]} {unit}. Allocate the "
            f"counts with allocate_strata."
        )
    streams = check_random_state(random_state, "select_stratified").spawn(len(names))
    order = np.argsort(strata, kind="stable")
    groups = np.split(order, np.cumsum(np.bincount(strata, minlength=len(names)))[:-1])
    parts: list[tuple[int, np.ndarray, Picked]] = []
    table: dict[str, Any] = {}
    carry = 0  # token mode: what the earlier strata left unused (less than one of their rows each)
    for j, rows in enumerate(groups):
        sub = {k: (v if k == "centroids" else np.asarray(v)[rows]) for k, v in inputs.items()}
        want = min(int(quota[j]) + carry, int(room[j]))
        picked = _run_stratum(method, rows, want, streams[j], sub, params, tokens)
        entry = {"size": int(rows.size), "quota": int(quota[j]), "picked": int(picked.indices.size) if picked else 0}
        if tokens is not None:
            entry["tokens"] = int(picked.stats["tokens"]["achieved"]) if picked else 0
            carry = int(quota[j]) + carry - entry["tokens"]
        if picked is not None:
            entry["method"] = picked.stats
            parts.append((j, rows, picked))
        table[names[j]] = entry
    return _concat(parts, names, table, tokens is not None)


def _run_stratum(method: Method, rows, want: int, stream, inputs: dict, params: dict, tokens) -> Picked | None:
    """The method on one stratum's rows: ``want`` records, or ``want`` tokens with ``tokens``; None for 0."""
    if want == 0:
        return None
    if tokens is None:
        return method.fn(n=rows.size, budget=want, random_state=stream, **inputs, **params)
    from kmq.methods.tokens import select_tokens

    return select_tokens(method, tokens=tokens[rows], token_budget=want, random_state=stream, inputs=inputs,
                         params=params)  # fmt: skip


def _concat(parts: list[tuple[int, np.ndarray, Picked]], names: list[str], table: dict, by_tokens: bool) -> Picked:
    """One Picked from the strata's picks."""
    keys = list(dict.fromkeys(k for _, _, p in parts for k in p.explain))
    explain: dict[str, list[np.ndarray]] = {k: [] for k in keys}
    indices, reason, stratum = [], [], []
    for j, rows, p in parts:
        local = np.asarray(p.indices, dtype=np.int64)
        indices.append(rows[local])
        stratum.append(np.full(local.size, j, np.int64))
        reason += [f"stratum {names[j]}: {r}" for r in (p.reason or ["selected"] * local.size)]
        for k in keys:
            explain[k].append(p.explain.get(k, np.full(local.size, np.nan)))
    cat = {k: np.concatenate(v) for k, v in explain.items()}
    cat["stratum"] = np.concatenate(stratum) if stratum else np.zeros(0, np.int64)
    idx = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    stats: dict[str, Any] = {"stratified": True, "strata": table}
    if by_tokens:
        stats["tokens"] = {"achieved": int(sum(e["tokens"] for e in table.values())), "records": int(idx.size)}
    return Picked(indices=idx, reason=reason, stats=stats, explain=cat)


def _check_strata(strata: np.ndarray) -> np.ndarray:
    """(n,) int codes >= 0, as int64."""
    arr = np.asarray(strata)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InvalidParameterError(
            f"The 'strata' parameter of select_stratified must be a 1-D int array of stratum codes (stratum_codes). "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise InvalidParameterError("The 'strata' parameter of select_stratified must hold codes >= 0.")
    return arr


def _counts_array(counts: Mapping[str, int] | np.ndarray, names: list[str]) -> np.ndarray:
    """Counts per stratum code, as int64 (a mapping is keyed by the names; missing names count 0)."""
    if isinstance(counts, Mapping):
        unknown = sorted(set(map(str, counts)) - set(names))
        if unknown:
            raise InvalidParameterError(f"counts for unknown strata {unknown}; the strata are {names}.")
        arr = np.array([counts.get(s, 0) for s in names])
    else:
        arr = np.asarray(counts)
    if arr.shape != (len(names),) or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0) or (arr < 0).any():
        raise InvalidParameterError(
            f"The 'counts' parameter of select_stratified must hold one int >= 0 per stratum ({len(names)}). "
            f"Got {arr.tolist()!r} instead."
        )
    return arr.astype(np.int64)
