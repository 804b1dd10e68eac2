"""Within-cluster draws without replacement, vectorised over the whole pool.

Every candidate row gets a random key and each cluster keeps its ``counts[c]`` largest keys (one sort by
(cluster, -key), then a cut at the group offsets): O(n log n) numpy and no Python loop over clusters.
With ``key = log p + Gumbel`` this is exactly successive sampling without replacement proportional to
``p`` (Gumbel-top-k, equivalent to Efraimidis-Spirakis ``u ** (1 / p)`` keys), so for a count of 1 a
row is picked with probability ``p``. The ``within`` modes:

- ``softmax``: ``p ∝ exp(z / T)`` with ``z`` the quality standardised (z-score) over the cluster's
  selectable rows. Scale-free, works with negative scores and never overflows (no ``exp`` is taken).
  A cluster whose scores are all equal is drawn uniformly.
- ``proportional``: ``p ∝ q``; needs ``q >= 0``. Rows with ``q = 0`` come after every ``q > 0`` row of
  their cluster, in uniform random order (an all-zero cluster is drawn uniformly).
- ``uniform``: every selectable row equally likely (kM-Random).
- ``top``: the ``count`` highest quality; equal scores go to the lowest row index first. No randomness.
- ``closest``: the ``count`` smallest ``distances`` (to the own centroid; kM-Closest); ties by row index.

Common random numbers: the three random modes draw one Gumbel variate per candidate row, in row order,
from the same stream, and only add their deterministic term to it. So modes that coincide in a limit
give the same picks in the same order for the same seed: ``softmax`` with a huge temperature or a
cluster of equal scores, ``proportional`` with equal positive scores (or all zero) and ``uniform``
(kM-Random) rank the rows by the same noise. (Independent draws of a 10% sample share about 10% of
their picks; before this, ``uniform`` ranked by ``random()`` while the Gumbel keys of the other modes
decrease in it, and the two shared nothing.)
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from kmq.errors import InvalidParameterError, invalid_parameter
from kmq.methods.validation import check_labels, check_random_state, check_scores, check_temperature

WITHIN = ("softmax", "proportional", "uniform", "top", "closest")
Within = Literal["softmax", "proportional", "uniform", "top", "closest"]


def draw_per_cluster(
    labels: np.ndarray,
    counts: np.ndarray,
    *,
    quality: np.ndarray | None = None,
    within: Within = "softmax",
    temperature: float = 1.0,
    random_state: np.random.Generator | int | None,
    available: np.ndarray | None = None,
    distances: np.ndarray | None = None,
    return_probability: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``counts[c]`` distinct rows from every cluster ``c``.

    Parameters
    ----------
    labels : ndarray of shape (n,), int
        Cluster id of every row, in ``[0, k)``.
    counts : ndarray of shape (k,), int
        How many rows to draw from each cluster; at most the cluster's selectable rows.
    quality : ndarray of shape (n,), float or None
        Finite scores, higher is better. Needed by ``softmax``, ``proportional`` and ``top``.
    within : {"softmax", "proportional", "uniform", "top", "closest"}, default="softmax"
        How rows are drawn inside a cluster (see the module docstring).
    temperature : float, default=1.0
        Softmax temperature ``T > 0`` (``softmax`` only): small T tends to ``top``, large T to ``uniform``.
    random_state : numpy.random.Generator, int or None
        Source of randomness; the same Generator state gives the same draw.
    available : ndarray of shape (n,), bool or None
        Rows that may still be drawn (e.g. not selected in an earlier round). None means all. Softmax
        standardises quality over the selectable rows of each cluster.
    distances : ndarray of shape (n,), float or None
        Distance of each row to its own centroid. Needed by ``closest``.
    return_probability : bool, default=False
        Also return each drawn row's first-draw probability (see Returns). It uses no randomness: the
        draw is the same with or without it.

    Returns
    -------
    indices : ndarray of shape (counts.sum(),), int64
        Distinct row indices, grouped by cluster in increasing id, in draw order inside a cluster.
    cluster_of_each : ndarray of shape (counts.sum(),), int64
        ``labels[indices]``.
    probability : ndarray of shape (counts.sum(),), float64
        Only with ``return_probability``: the probability that the row is the *first* draw of its cluster,
        i.e. ``p`` of the module docstring normalised over the cluster's selectable rows: ``softmax``
        ``exp(z / T) / Σ exp(z / T)``, ``proportional`` ``q / Σ q`` (``1 / size`` in an all-zero
        cluster), ``uniform`` ``1 / size``; NaN for ``top`` and ``closest`` (no randomness). The values
        of one cluster sum to at most 1. This is not the row's inclusion probability in a draw of
        ``count > 1`` rows without replacement (that is larger, and has no closed form).

    Examples
    --------
    >>> labels = np.array([0, 0, 0, 1, 1, 1])
    >>> quality = np.array([1.0, 3.0, 2.0, 0.5, 0.1, 0.9])
    >>> idx, cl = draw_per_cluster(labels, np.array([2, 1]), quality=quality, within="top", random_state=0)
    >>> idx.tolist(), cl.tolist()
    ([1, 2, 5], [0, 0, 1])
    """
    owner = "draw_per_cluster"
    if within not in WITHIN:
        raise invalid_parameter("within", owner, f"one of {list(WITHIN)}", within)
    if within == "softmax":
        temperature = check_temperature(temperature, owner)
    rng = check_random_state(random_state, owner)
    counts = _check_counts(counts, owner)
    labels = check_labels(labels, k=counts.shape[0], owner=owner)
    n = labels.shape[0]
    values = _values_for(within, quality, distances, n, owner)
    mask = None if available is None else _check_mask(available, n, owner)
    sizes = np.bincount(labels if mask is None else labels[mask], minlength=counts.shape[0])
    _check_room(counts, sizes, n_rows=n, restricted=mask is not None)
    keep = counts[labels] > 0  # rows of clusters with nothing to draw play no part
    cand = np.flatnonzero(keep if mask is None else keep & mask)
    lab = labels[cand]
    sizes = np.where(counts > 0, sizes, 0)
    vals = None if values is None else values[cand]
    key, logit = _keys(within, vals, lab, sizes, temperature, rng)
    order = _group_order(lab, key, stable=within in ("top", "closest"))
    sorted_lab = lab[order]
    rank = np.arange(order.size) - (np.cumsum(sizes) - sizes)[sorted_lab]
    take = order[rank < counts[sorted_lab]]
    if not return_probability:
        return cand[take], lab[take]
    return cand[take], lab[take], _first_draw_probability(within, take, lab, sizes, vals, logit, order)


def draw_in_cluster(
    quality: np.ndarray | None,
    count: int,
    *,
    within: Within = "softmax",
    temperature: float = 1.0,
    random_state: np.random.Generator | int | None,
    distances: np.ndarray | None = None,
) -> np.ndarray:
    """Draw ``count`` distinct rows of one cluster; see :func:`draw_per_cluster`.

    Parameters
    ----------
    quality : ndarray of shape (m,), float or None
        Scores of the cluster's members (None only with ``uniform`` or ``closest`` and ``distances``).
    count : int
        How many to draw, in ``[0, m]``.

    Returns
    -------
    local : ndarray of shape (count,), int64
        Positions in ``quality`` (``0 .. m-1``), in draw order.
    """
    ref = quality if quality is not None else distances
    if ref is None:
        raise InvalidParameterError("draw_in_cluster needs 'quality' or 'distances' to know the cluster's size.")
    if np.ndim(ref) != 1:
        raise invalid_parameter("quality", "draw_in_cluster", "a 1-D array", f"shape {np.shape(ref)}")
    m = np.shape(ref)[0]
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 0 <= count <= m:
        raise invalid_parameter("count", "draw_in_cluster", f"an int in the range [0, {m}]", count)
    idx, _ = draw_per_cluster(
        np.zeros(m, dtype=np.int64),
        np.array([count]),
        quality=quality,
        within=within,
        temperature=temperature,
        random_state=random_state,
        distances=distances,
    )
    return idx


def _keys(
    within: str,
    values: np.ndarray | None,
    lab: np.ndarray,
    sizes: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-row sort key (float64, larger is drawn first) for the candidate rows, and softmax's ``z / T``
    (None for the other modes)."""
    if within == "top":
        return values, None
    if within == "closest":
        return -values, None
    gumbel = rng.gumbel(size=lab.shape[0])  # the one noise of every random mode (common random numbers)
    if within == "uniform":
        return gumbel, None
    if within == "softmax":
        logit = _standardise(values, lab, sizes) / temperature
        return logit + gumbel, logit
    pos = values > 0  # proportional: Gumbel-top-k on log q; q = 0 rows after all q > 0 rows, in Gumbel order
    key = gumbel
    key[pos] += np.log(values[pos])
    if not pos.all():
        floor = key[pos].min() if pos.any() else 0.0
        key[~pos] -= key[~pos].max() - floor + 1.0  # a shift: the zero rows keep their Gumbel order
    return key, None


def _first_draw_probability(
    within: str,
    take: np.ndarray,
    lab: np.ndarray,
    sizes: np.ndarray,
    values: np.ndarray | None,
    logit: np.ndarray | None,
    order: np.ndarray,
) -> np.ndarray:
    """First-draw probability inside its cluster of the candidates ``take`` (positions in ``lab``), float64."""
    k = sizes.shape[0]
    picked = lab[take]
    if within in ("top", "closest"):
        return np.full(take.shape[0], np.nan)
    uniform = 1.0 / np.maximum(sizes[picked], 1)
    if within == "uniform":
        return uniform
    if within == "proportional":
        total = np.bincount(lab, weights=values, minlength=k)[picked]
        return np.divide(values[take], total, out=uniform, where=total > 0)
    nonempty = np.flatnonzero(sizes > 0)  # softmax: exp(l - max) / Σ exp(l - max), max per cluster (no overflow)
    top = np.zeros(k)
    if nonempty.size:
        top[nonempty] = np.maximum.reduceat(logit[order], (np.cumsum(sizes) - sizes)[nonempty])
    weight = np.exp(logit - top[lab])
    return weight[take] / np.bincount(lab, weights=weight, minlength=k)[picked]


def _group_order(lab: np.ndarray, key: np.ndarray, *, stable: bool) -> np.ndarray:
    """Order of the rows by cluster id, then key descending (ties by position when ``stable``).

    A float sort of the keys, then an LSD radix sort of the ids by 16-bit digits (numpy's stable sort of
    uint16 is a radix sort): about 4x faster than ``np.lexsort((-key, lab))`` on 10M rows.
    """
    order = np.argsort(-key, kind="stable" if stable else None)
    top = int(lab.max()) if lab.size else 0
    shift = 0
    while True:
        digit = ((lab[order] >> shift) & 0xFFFF).astype(np.uint16)
        order = order[np.argsort(digit, kind="stable")]
        shift += 16
        if top >> shift == 0:
            return order


def _standardise(q: np.ndarray, lab: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Z-score of ``q`` within each cluster (population std); 0 where a cluster's std is 0."""
    if q.size == 0:
        return q
    scale = np.abs(q).max()
    if scale == 0:
        return np.zeros_like(q)
    q = q / scale  # in [-1, 1]: sums cannot overflow whatever the score range; z is scale-invariant
    denom = np.maximum(sizes, 1)
    dev = q - (np.bincount(lab, weights=q, minlength=sizes.shape[0]) / denom)[lab]
    std = np.sqrt(np.bincount(lab, weights=dev * dev, minlength=sizes.shape[0]) / denom)[lab]
    return np.divide(dev, std, out=np.zeros_like(dev), where=std > 0)


def _values_for(
    within: str, quality: np.ndarray | None, distances: np.ndarray | None, n: int, owner: str
) -> np.ndarray | None:
    """The checked per-row array the ``within`` mode ranks by (None for ``uniform``)."""
    if within == "uniform":
        return None
    if within == "closest":
        if distances is None:
            raise InvalidParameterError(f"within='closest' in {owner} needs 'distances' (n,) to the own centroid.")
        return check_scores(distances, n, name="distances", owner=owner)
    if quality is None:
        raise InvalidParameterError(
            f"within={within!r} in {owner} needs 'quality' (n,). Pass scores, or use within='uniform'."
        )
    values = check_scores(quality, n, name="quality", owner=owner)
    if within == "proportional":
        neg = np.flatnonzero(values < 0)
        if neg.size:
            raise InvalidParameterError(
                f"within='proportional' needs quality >= 0. Got {neg.size} negative value(s), first at row "
                f"{neg[0]} ({values[neg[0]]}). Use within='softmax', which works with any real scores."
            )
    return values


def _check_counts(counts: np.ndarray, owner: str) -> np.ndarray:
    """Validate (k,) non-negative int counts and return them as int64."""
    arr = np.asarray(counts)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InvalidParameterError(
            f"The 'counts' parameter of {owner} must be a 1-D int array, one count per cluster. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    arr = arr.astype(np.int64, copy=False)
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise InvalidParameterError(
            f"The 'counts' parameter of {owner} must be >= 0. Got counts[{bad[0]}]={arr[bad[0]]} "
            f"({bad.size} negative in all)."
        )
    return arr


def _check_mask(available: np.ndarray, n: int, owner: str) -> np.ndarray:
    """Validate a (n,) bool mask."""
    arr = np.asarray(available)
    if arr.shape != (n,) or arr.dtype != np.bool_:
        raise InvalidParameterError(
            f"The 'available' parameter of {owner} must be a bool array of shape ({n},). "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    return arr


def _check_room(counts: np.ndarray, sizes: np.ndarray, *, n_rows: int, restricted: bool) -> None:
    """Every cluster must have at least ``counts[c]`` selectable rows (no silent shortfall)."""
    short = np.flatnonzero(counts > sizes)
    if short.size:
        c = short[0]
        what = "selectable (available) rows" if restricted else "rows"
        raise InvalidParameterError(
            f"counts[{c}]={counts[c]} exceeds the {sizes[c]} {what} of cluster {c} ({short.size} cluster(s) short "
            f"in all). Cap the counts with allocate_budget(capacity=<selectable rows per cluster>, ...)."
        )
