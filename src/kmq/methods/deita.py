"""The Deita baseline: quality-ordered scan with a cosine redundancy filter (Liu et al., 2023).

Rows are visited by quality, highest first (equal scores: lower row index first). A row is admitted
when its cosine similarity to its nearest already-admitted row is below ``tau`` (0.9, as in Deita);
the scan stops at the budget. The authors' code instead tested squared L2 < 0.9 (cos > 0.55 for unit
vectors, paper.md §7 bug 21), which is a far stricter filter; this module follows Deita.

The scan is batched but gives exactly the sequential rule: a block of candidates is compared with every
admitted row (exact brute force, like a faiss ``IndexFlatIP``: one BLAS product per block against a
growing array of admitted rows), then conflicts inside the block are resolved in order with the block's
own similarity matrix. Cost: O(scanned · admitted · d). (A faiss flat index computes the same thing; on
two cores its OpenMP threads stalled 4-20x on the small per-block searches, so plain BLAS is used.)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kmq.errors import SelectionShortfallError
from kmq.methods._arrays import quality_order, row_chunk
from kmq.methods.registry import Picked, register
from kmq.methods.validation import check_bool, check_number

__all__ = ["deita", "deita_filter"]

_BLOCK = 1024


def _resolve_block(prev: np.ndarray, gram: np.ndarray, tau: float, room: int) -> tuple[list[int], list[float]]:
    """Admit block rows in order: similarity to earlier admitted ones (``prev``, then this block) < tau.

    Returns the admitted positions (at most ``room``) and each admitted row's similarity to its nearest
    earlier-admitted row (``-inf`` for none).
    """
    ok = prev < tau
    admitted: list[int] = []
    nearest: list[float] = []
    for i in range(prev.shape[0]):
        if ok[i]:
            nearest.append(max(prev[i], gram[i, admitted].max()) if admitted else prev[i])
            admitted.append(i)
            ok[i + 1 :] &= gram[i, i + 1 :] < tau
            if len(admitted) == room:
                break
    return admitted, nearest


def _nearest_admitted(xc: np.ndarray, admitted: np.ndarray) -> np.ndarray:
    """Largest cosine of each candidate row with the admitted rows (-inf when there are none), float64."""
    out = np.full(xc.shape[0], -np.inf, np.float32)
    step = row_chunk(xc.shape[0])
    for s in range(0, admitted.shape[0], step):
        np.maximum(out, (xc @ admitted[s : s + step].T).max(axis=1), out=out)
    return out.astype(np.float64)


def deita_filter(
    X: np.ndarray, quality: np.ndarray, budget: int, *, tau: float = 0.9, block: int = _BLOCK
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Scan rows by quality and keep those less than ``tau``-similar to every row kept before.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        L2-normalised, C-contiguous rows.
    quality : ndarray of shape (n,), float
        Finite scores, higher first.
    budget : int
        Stop after this many admitted rows.
    tau : float, default=0.9
        Cosine similarity threshold: a row is admitted iff ``max cos(row, admitted) < tau``.
    block : int, default=1024
        Candidates searched per batch (speed only; the result is that of the one-by-one scan).

    Returns
    -------
    admitted : ndarray of shape (m,), int64
        Admitted rows in scan order, ``m <= budget`` (``m < budget`` only when the pool ran out).
    nearest : ndarray of shape (m,), float64
        Each admitted row's similarity to its nearest earlier-admitted row (``-inf`` for the first).
    rejected : ndarray of shape (r,), int64
        Rows scanned and rejected, in scan (quality) order.
    scanned : int
        Rows visited.

    Examples
    --------
    >>> X = np.array([[1, 0], [0.99, 0.141], [0, 1], [-1, 0]], dtype=np.float32)
    >>> X /= np.linalg.norm(X, axis=1, keepdims=True)
    >>> deita_filter(X, np.array([4.0, 3.0, 2.0, 1.0]), 3)[0].tolist()
    [0, 2, 3]
    """
    order = quality_order(quality)
    kept = np.empty((budget, X.shape[1]), np.float32)  # admitted rows, in admission order
    admitted: list[np.ndarray] = []
    nearest: list[np.ndarray] = []
    rejected: list[np.ndarray] = []
    count = scanned = 0
    for start in range(0, order.size, block):
        if count == budget:
            break
        cand = order[start : start + block]
        xc = np.ascontiguousarray(X[cand])
        prev = _nearest_admitted(xc, kept[:count])
        keep, near = _resolve_block(prev, (xc @ xc.T).astype(np.float64), tau, budget - count)
        visited = cand.size if len(keep) < budget - count else keep[-1] + 1
        mask = np.zeros(visited, bool)
        mask[keep] = True
        admitted.append(cand[keep])
        nearest.append(np.asarray(near, dtype=np.float64))
        rejected.append(cand[:visited][~mask])
        kept[count : count + len(keep)] = xc[keep]
        count += len(keep)
        scanned += visited
    return _concat(admitted, np.int64), _concat(nearest, np.float64), _concat(rejected, np.int64), scanned


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """Concatenate 1-D pieces (an empty list gives an empty array)."""
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype)


@register(
    "deita",
    help="Deita: by quality, admit a row only if its cosine to every admitted row is below tau.",
)
def deita(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    embeddings: np.ndarray,
    quality: np.ndarray,
    tau: float = 0.9,
    fill: bool = False,
) -> Picked:
    """Select ``budget`` rows with Deita's score-first, diversity-aware filter (see :func:`deita_filter`).

    Parameters
    ----------
    n : int
        Pool size.
    budget : int
        Number of rows to select, in ``[0, n]``.
    random_state : numpy.random.Generator, int or None
        Unused (the method is deterministic); accepted for the common signature.
    embeddings : ndarray of shape (n, d), float32
        L2-normalised rows.
    quality : ndarray of shape (n,), float
        Finite scores, higher is better.
    tau : float, default=0.9
        Cosine similarity threshold in (0, 1]; lower admits fewer, more diverse rows.
    fill : bool, default=False
        If the filter admits fewer than ``budget`` rows, fill the rest with the best rejected rows
        (reason ``"deita fill"``) instead of raising :class:`~kmq.errors.SelectionShortfallError`.

    Returns
    -------
    Picked
        ``indices`` of shape (budget,), int64, in scan order (then the fill); stats with ``tau`` and the
        ``admitted``, ``rejected``, ``scanned`` and ``filled`` counts; ``explain`` (float64 each):
        ``score``, the quality the scan ranks by, and ``nearest_cos``, the cosine to the nearest row
        admitted before (NaN for the first and for the fill).

    Raises
    ------
    SelectionShortfallError
        When fewer than ``budget`` rows pass the filter and ``fill`` is False.
    """
    tau = check_number(tau, "tau", "deita", low=0.0, high=1.0, closed="(]")
    fill = check_bool(fill, "fill", "deita")
    admitted, nearest, rejected, scanned = deita_filter(embeddings, quality, budget, tau=tau)
    short = budget - admitted.size
    if short and not fill:
        raise SelectionShortfallError(
            f"deita admitted only {admitted.size} of the budget {budget} rows with tau={tau}: the other "
            f"{rejected.size} rows are at least {tau}-similar to an admitted one. Use a higher tau (a looser "
            f"filter), fill=True to top up with the best rejected rows, or a smaller budget."
        )
    indices = np.concatenate([admitted, rejected[:short]])
    reason = [f"deita: admitted, nearest cos {s:.3f}" if np.isfinite(s) else "deita: admitted, first" for s in nearest]
    reason += ["deita fill"] * short
    nearest_cos = np.concatenate([np.where(np.isfinite(nearest), nearest, np.nan), np.full(short, np.nan)])
    explain = {"score": quality[indices], "nearest_cos": nearest_cos}
    stats: dict[str, Any] = {
        "tau": tau,
        "admitted": int(admitted.size),
        "rejected": int(rejected.size),
        "scanned": int(scanned),
        "filled": int(short),
        "max_nearest_cos": float(nearest[1:].max()) if nearest.size > 1 else None,
    }
    return Picked(indices=indices.astype(np.int64), reason=reason, stats=stats, explain=explain)
