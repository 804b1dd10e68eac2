"""What the picks are made of: quality quantiles and the counts of a field's values (source, category)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from kmq.errors import InvalidParameterError

__all__ = ["MISSING", "QUANTILES", "mix_counts", "quantiles"]

#: the quantile keys of :func:`quantiles`, besides ``mean``, ``min`` and ``max``
QUANTILES = {"q05": 0.05, "q25": 0.25, "q50": 0.5, "q75": 0.75, "q95": 0.95}
#: the key of rows whose field is absent (None or NaN)
MISSING = "(missing)"


def quantiles(values: np.ndarray) -> dict[str, float] | None:
    """Mean, min, q05, q25, q50, q75, q95 and max of the finite values (linear interpolation).

    Parameters
    ----------
    values : ndarray of shape (m,), float
        Non-finite values are left out.

    Returns
    -------
    summary : dict of str to float, or None
        None when no value is finite.

    Examples
    --------
    >>> quantiles(np.array([0.0, 1.0, 2.0, 3.0, 4.0, np.nan]))["q25"]
    1.0
    """
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return None
    qs = np.quantile(arr, list(QUANTILES.values()))
    return {
        "mean": float(arr.mean()),
        "min": float(arr.min()),
        **{key: float(q) for key, q in zip(QUANTILES, qs, strict=True)},
        "max": float(arr.max()),
    }


def _key(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return value if isinstance(value, str) else str(value)


def mix_counts(
    values: Sequence | np.ndarray, rows: np.ndarray | None = None, *, keys: Sequence[str] | None = None
) -> dict[str, int]:
    """Counts of a field's values, over all rows or over ``rows``.

    Parameters
    ----------
    values : sequence or ndarray of shape (n,)
        One value per pool row; None and NaN count as ``"(missing)"``, other values by ``str(value)``.
    rows : ndarray of shape (b,), int, or None
        The rows to count (the picks); None means every row.
    keys : sequence of str, or None
        Report exactly these keys first, in this order, with 0 for the absent ones (the pool's keys, so
        the picks' mix lines up with the pool's); values outside them follow.

    Returns
    -------
    counts : dict of str to int
        Without ``keys``: by count, largest first, equal counts by value, ``"(missing)"`` last.

    Examples
    --------
    >>> mix_counts(["a", "b", "b", None])
    {'b': 2, 'a': 1, '(missing)': 1}
    >>> mix_counts(["a", "b", "b", None], np.array([0]), keys=["b", "a"])
    {'b': 0, 'a': 1}
    """
    if rows is None:
        counter = Counter(map(_key, values))
    else:
        n = len(values)
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise InvalidParameterError(
                f"The 'rows' parameter of mix_counts must index the {n} values. Got rows up to {rows.max()} "
                f"(min {rows.min()}) instead."
            )
        if isinstance(values, np.ndarray):
            counter = Counter(map(_key, values[rows].tolist()))
        else:
            counter = Counter(_key(values[i]) for i in rows.tolist())
    ordered = sorted(counter.items(), key=lambda kv: (kv[0] == MISSING, -kv[1], kv[0]))
    if keys is None:
        return {key: int(c) for key, c in ordered}
    out = {key: int(counter.get(key, 0)) for key in keys}
    out.update((key, int(c)) for key, c in ordered if key not in out)
    return out
