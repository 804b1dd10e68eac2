"""Cluster-weight updates of iterative kMQ and the split of the budget over rounds: pure NumPy.

The paper's update (Eq. 6) is ``w_j <- (s_j / sum_c s_c) * w_j``: ill-posed when a signal is negative or the
signals sum to about zero, and never renormalised. The authors' code uses ``w = softmax(s)`` instead,
forgetting the previous weights. Both are offered here in a well-defined form (paper.md §3.5 item 4):

- ``multiplicative`` (default): ``w_j ∝ w_prev_j * exp(s_j / T)``, i.e. ``w ∝ w_prev · softmax(s / T)``;
  the weights keep the memory of earlier rounds, as Eq. 6 intends.
- ``softmax`` (the authors' code, memoryless): ``w_j ∝ exp(s_j / T)``.

``s_j`` is the cluster signal, the mean instance score of the scored members of cluster ``j``. A cluster
with no scored member (nothing of it selected yet, or every judgement failed) has no signal and keeps its
previous weight exactly; the clusters with a signal share the rest of the mass (so the weights still sum
to 1). Nothing here imports the rest of kmq but its errors (bad input raises
:class:`~kmq.errors.InvalidParameterError`, a ``ValueError``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from kmq.errors import InvalidParameterError, invalid_parameter

REWEIGHTS = ("multiplicative", "softmax")
Reweight = Literal["multiplicative", "softmax"]
#: floor of a scored cluster's share, so a weight never underflows to 0 (every cluster stays drawable)
TINY = 1e-300


def split_budget(budget: int, rounds: int) -> np.ndarray:
    """Per-round sizes: ``budget`` split over ``rounds`` exactly, by largest remainder.

    Every round gets ``budget // rounds``; the ``budget % rounds`` leftover units go one each to the first
    rounds (all remainders are equal, ties go to the earliest round), so the first draws are never smaller
    than the later ones.

    Parameters
    ----------
    budget : int
        Total number of examples, >= 0.
    rounds : int
        Number of rounds, >= 1.

    Returns
    -------
    sizes : ndarray of shape (rounds,), int64
        Sums to ``budget``; sizes differ by at most 1.

    Examples
    --------
    >>> split_budget(10, 3).tolist()
    [4, 3, 3]
    """
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 1:
        raise invalid_parameter("rounds", "split_budget", "an int >= 1", rounds)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise invalid_parameter("budget", "split_budget", "an int >= 0", budget)
    sizes = np.full(int(rounds), int(budget) // int(rounds), dtype=np.int64)
    sizes[: int(budget) % int(rounds)] += 1
    return sizes


def update_weights(
    weights: np.ndarray,
    signal: np.ndarray,
    scored: np.ndarray,
    *,
    method: Reweight = "multiplicative",
    temperature: float = 1.0,
) -> np.ndarray:
    """New cluster weights from the previous ones and this round's cluster signals.

    Parameters
    ----------
    weights : ndarray of shape (k,), float
        Previous weights: finite, > 0, summing to 1.
    signal : ndarray of shape (k,), float
        Cluster signal ``s_j`` (mean instance score); ignored where ``scored`` is 0 (may be NaN there).
    scored : ndarray of shape (k,), int or bool
        Number of scored members per cluster (or a mask); clusters with 0 keep their weight.
    method : {"multiplicative", "softmax"}, default "multiplicative"
        See the module docstring.
    temperature : float, default 1.0
        ``T > 0``: small T sharpens the update, large T flattens it.

    Returns
    -------
    weights : ndarray of shape (k,), float64
        Finite, > 0, summing to 1. Unscored clusters keep their weight; equal signals leave the weights
        unchanged (multiplicative); a higher signal never gives a lower weight than a lower signal from the
        same previous weight.

    Examples
    --------
    >>> w = update_weights(np.full(3, 1 / 3), np.log([3.0, 1.0, 2.0]), np.array([2, 2, 1]))
    >>> np.round(w, 6).tolist()
    [0.5, 0.166667, 0.333333]
    """
    w = np.asarray(weights, dtype=np.float64)
    s = np.asarray(signal, dtype=np.float64)
    has = np.asarray(scored) > 0
    if w.ndim != 1 or s.shape != w.shape or has.shape != w.shape:
        raise InvalidParameterError(f"weights, signal and scored of update_weights must have the same shape (k,); "
                                    f"got {w.shape}, {s.shape}, {has.shape}.")  # fmt: skip
    if not np.all(np.isfinite(w)) or np.any(w <= 0):
        bad = np.flatnonzero(~np.isfinite(w) | (w <= 0))
        raise InvalidParameterError(f"The 'weights' parameter of update_weights must be finite and > 0. Got "
                                    f"{w[bad][:5].tolist()} at clusters {bad[:5].tolist()} instead.")  # fmt: skip
    if not np.all(np.isfinite(s[has])):
        bad = np.flatnonzero(has & ~np.isfinite(s))
        raise InvalidParameterError("The 'signal' parameter of update_weights must be finite where a cluster is "
                                    f"scored. Got {s[bad][:5].tolist()} at scored clusters {bad[:5].tolist()} "
                                    "instead.")  # fmt: skip
    if method not in REWEIGHTS:
        raise invalid_parameter("method", "update_weights", f"one of {list(REWEIGHTS)}", method)
    ok = isinstance(temperature, (int, float, np.integer, np.floating)) and not isinstance(temperature, bool)
    if not ok or not np.isfinite(temperature) or temperature <= 0:
        raise invalid_parameter("temperature", "update_weights", "a finite float > 0", temperature)
    w = w / w.sum()
    out = w.copy()
    if not has.any():
        return out
    mass = w[has].sum()  # what the scored clusters share; the unscored keep theirs
    with np.errstate(over="ignore", invalid="ignore"):
        logits = s[has] / float(temperature)
    if not np.all(np.isfinite(logits)):  # signal / T overflows: the weights would be NaN
        top = float(np.abs(s[has]).max())
        raise InvalidParameterError(
            f"The 'temperature' parameter of update_weights is too small for these signals: signal / temperature "
            f"overflows (largest |signal| {top:.3g}, temperature {temperature!r}). Use a temperature >= "
            f"{top * 1e-300:.3g} (--reweight-temperature)."
        )
    if method == "multiplicative":
        logits = logits + np.log(w[has])
    share = np.exp(logits - logits.max())
    share /= share.sum()
    share = np.maximum(share, TINY)
    out[has] = mass * share / share.sum()
    return out
