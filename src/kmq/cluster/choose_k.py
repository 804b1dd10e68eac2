"""Choose k by silhouette, the paper's guideline (paper.md §4, Table 5).

The silhouette uses cosine distance ``1 - x·y`` on unit vectors. That makes it exact without any
pairwise matrix: the mean distance from x_i to the m_c sample members of cluster c is
``1 - x_i·s_c / m_c`` with ``s_c`` the sum of those members (own cluster: ``(m_c - x_i·s_c) / (m_c - 1)``,
leaving x_i out). So a silhouette over a sample of m points costs O(m·k·d), not O(m²·d), and the
sample can be large.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from kmq.cluster.kmeans import KMeans, _check_random_state
from kmq.errors import InvalidParameterError

logger = logging.getLogger(__name__)


def cosine_silhouette(X: np.ndarray, labels: np.ndarray, *, chunk_size: int = 8192) -> float:
    """Mean silhouette coefficient under cosine distance, exact.

    Parameters
    ----------
    X : ndarray of shape (m, d), float32, unit rows
    labels : ndarray of shape (m,), int

    Returns
    -------
    score : float in [-1, 1]
        Points alone in their cluster count as 0 (sklearn's convention). 0.0 when fewer than 2 clusters.
    """
    labels = np.asarray(labels)
    uniq, lab = np.unique(labels, return_inverse=True)
    if len(uniq) < 2:
        return 0.0
    X = np.asarray(X, dtype=np.float32)
    counts = np.bincount(lab).astype(np.float64)
    sums = np.zeros((len(uniq), X.shape[1]), dtype=np.float64)
    np.add.at(sums, lab, X)
    sums = sums.astype(np.float32)
    total = 0.0
    for lo in range(0, len(X), chunk_size):
        xb, lb = X[lo : lo + chunk_size], lab[lo : lo + chunk_size]
        dots = (xb @ sums.T).astype(np.float64)  # (B, k): x_i · s_c
        self_dot = np.einsum("ij,ij->i", xb, xb).astype(np.float64)
        mean_d = 1.0 - dots / counts  # mean distance to each cluster
        own = counts[lb]
        rows = np.arange(len(xb))
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (own - dots[rows, lb] - (1.0 - self_dot)) / (own - 1.0)  # leave x_i itself out
        mean_d[rows, lb] = np.inf
        b = mean_d.min(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (b - a) / np.maximum(a, b)
        s[own <= 1] = 0.0
        total += float(np.nan_to_num(s, nan=0.0).sum())
    return total / len(X)


def candidate_ks(n: int, budget: int, sample_size: int | None = None) -> list[int]:
    """Default candidates: powers of two from 16 up to the largest k the budget and the data support.

    That bound is ``min(4096, budget // 5, n // 10, sample_size // 10)``: every cluster keeps about five picks
    under equal allocation (the default rule's bound), has ten or more pool points, and ten or more
    silhouette-sample points. When fewer than two powers from 16 fit, the powers from 2 are used; tiny pools
    get ``[min(n - 1, 2)]``, and ``[1]`` when n < 3 (no k >= 2 has a silhouette).
    """
    hi = min(4096, budget // 5, n // 10, (sample_size or n) // 10)
    ks = [k for k in (2**p for p in range(4, 13)) if k <= hi and k < n]
    if len(ks) < 2:
        ks = [k for k in (2**p for p in range(1, 13)) if k <= max(hi, 2) and k < n]
    return ks or ([min(n - 1, 2)] if n >= 3 else [1])


def choose_k(
    X: np.ndarray,
    candidates: Sequence[int],
    *,
    sample_size: int = 20000,
    random_state: int | np.random.Generator | None = 0,
    kmeans_params: dict[str, Any] | None = None,
    show_progress: bool | None = None,
) -> tuple[int, list[dict[str, Any]]]:
    """Fit k-means for each candidate k and keep the k with the highest silhouette on a sample.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32, unit rows
    candidates : sequence of int
        Each in [2, n - 1], or 1: one cluster, whose silhouette is 0 by convention (it wins only when
        every other candidate scores below 0).
    sample_size : int
        Points the silhouette is computed on (all when n is smaller); drawn once, shared by all k.
    show_progress : bool or None
        A progress bar over the candidates on stderr (None: when logging is at INFO or lower).

    Returns
    -------
    best_k : int
    table : list of dict
        One row per k: ``k``, ``silhouette``, ``seconds``, ``empty_clusters``.
    """
    rng = _check_random_state(random_state)
    ks = sorted({int(k) for k in candidates})
    bad = [k for k in ks if k != 1 and not 2 <= k < len(X)]
    if bad or not ks:
        raise InvalidParameterError(
            f"The 'candidates' parameter of choose_k must hold 1 or ints in [2, n_samples - 1 = {len(X) - 1}]. "
            f"Got {list(candidates)!r} instead."
        )
    m = min(len(X), int(sample_size))
    sample = np.sort(rng.choice(len(X), m, replace=False)) if m < len(X) else np.arange(len(X))
    seed = int(rng.integers(2**31 - 1))
    logger.info("choosing k among %s by cosine silhouette on %d points", ks, m)
    table = []
    from tqdm.auto import tqdm

    from kmq.cache import progress_enabled

    bar = tqdm(ks, desc="choosing k", unit="k", disable=not progress_enabled(show_progress), leave=False)
    for k in bar:
        bar.set_postfix(k=k)
        start = time.perf_counter()
        km = KMeans(k, random_state=seed, **(kmeans_params or {})).fit(X)
        score = cosine_silhouette(X[sample], km.labels_[sample])
        table.append(
            {
                "k": k,
                "silhouette": round(score, 6),
                "seconds": round(time.perf_counter() - start, 3),
                "empty_clusters": km.stats_["empty_clusters"],
            }
        )
        logger.info("k=%d silhouette=%.4f", k, score)
    best = max(table, key=lambda r: (r["silhouette"], -r["k"]))
    return int(best["k"]), table
