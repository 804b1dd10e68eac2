"""Instance scores and per-cluster signals of iterative kMQ (paper Eqs. 4, 5 and 7): pure NumPy.

Eq. 4: ``S_i = score(x_i ⊕ y_gold) − score(x_i ⊕ y_gen)``; a high S means the gold answer is rated well
above what the current model writes, so the cluster has something to teach (or its gold is good).

Eq. 7 (perplexity) as printed: ``S = −log(PPL(x⊕y_gen) / PPL(x⊕y_gold)) = meanNLL(gold) − meanNLL(gen)``.
Note the sign: with the ``perplexity:`` *quality* scorer (quality = −meanNLL), Eq. 4 would give
``meanNLL(gen) − meanNLL(gold)``, the opposite. We follow Eq. 7 literally (``direction = -1`` below): S is
high when the gold answer is harder for the model than its own greedy answer, i.e. "challenging" clusters
gain weight.

Eq. 5 averages S over the cluster; S exists only for the scored members (selected so far, judged, finite),
so the signal is the mean over those, and a cluster without any has no signal (``count == 0``).
"""

from __future__ import annotations

import numpy as np

from kmq.errors import InvalidParameterError


def instance_scores(gold: np.ndarray, generated: np.ndarray, *, direction: float = 1.0) -> np.ndarray:
    """``S = direction * (gold − generated)`` per instance; NaN where either score is missing.

    Parameters
    ----------
    gold, generated : ndarray of shape (m,), float
        The judge's score of the prompt with the gold answer and with the model's answer (NaN: unscored).
    direction : {1.0, -1.0}, default 1.0
        ``-1`` for judges whose value is a loss (see the module docstring on Eq. 7).

    Returns
    -------
    S : ndarray of shape (m,), float64

    Examples
    --------
    >>> instance_scores(np.array([3.0, 1.0]), np.array([1.0, 2.0])).tolist()
    [2.0, -1.0]
    """
    gold = np.asarray(gold, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    if gold.shape != generated.shape or gold.ndim != 1:
        raise InvalidParameterError(f"gold and generated of instance_scores must have the same shape (m,); got "
                                    f"{gold.shape} and {generated.shape}.")  # fmt: skip
    with np.errstate(invalid="ignore"):
        s = direction * (gold - generated)
    s[~np.isfinite(s)] = np.nan
    return s


def cluster_signal(labels: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean instance score per cluster over its scored members (Eq. 5).

    Parameters
    ----------
    labels : ndarray of shape (m,), int
        Cluster of each judged instance, in ``[0, k)``.
    scores : ndarray of shape (m,), float
        Instance scores S; NaN marks an unscored instance (left out of the mean).
    k : int
        Number of clusters.

    Returns
    -------
    signal : ndarray of shape (k,), float64
        Mean S of the scored members; NaN for a cluster with none.
    count : ndarray of shape (k,), int64
        Number of scored members.

    Examples
    --------
    >>> sig, cnt = cluster_signal(np.array([0, 0, 2]), np.array([1.0, 3.0, np.nan]), 3)
    >>> sig.tolist(), cnt.tolist()
    ([2.0, nan, nan], [2, 0, 0])
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise InvalidParameterError(f"labels and scores of cluster_signal must have the same shape (m,); got "
                                    f"{labels.shape} and {scores.shape}.")  # fmt: skip
    if labels.size and (labels.min() < 0 or labels.max() >= k):
        raise InvalidParameterError(f"The 'labels' parameter of cluster_signal must be in [0, k={k}). Got values in "
                                    f"[{labels.min()}, {labels.max()}] instead.")  # fmt: skip
    ok = np.isfinite(scores)
    count = np.bincount(labels[ok], minlength=k).astype(np.int64)
    total = np.bincount(labels[ok], weights=scores[ok], minlength=k)
    signal = np.full(k, np.nan)
    np.divide(total, count, out=signal, where=count > 0)
    return signal, count
