"""Naive reference implementations of the exact selection baselines, shared by the tests and the benchmarks.

Import it from any test (``from naive_references import naive_qdit``; ``tests/`` is on ``sys.path``) or from
``benchmarks/bench_baselines.py``. They are deliberately plain: dense float64 n×n matrices, loops, no kmq code.
"""

from __future__ import annotations

import numpy as np


def naive_qdit_weights(X: np.ndarray, quality: np.ndarray, budget: int, alpha: float) -> tuple[float, float]:
    """Weights of mean coverage and mean z: ``(1 - alpha) / ΔC`` and ``alpha / ΔZ`` between the two endpoints.

    The endpoints are the plain facility-location greedy (alpha = 0) and the ``budget`` best rows (stable
    order); a range that is not positive drops a term (ΔZ first: pure facility location).
    """
    if alpha in (0.0, 1.0):
        return 1.0 - alpha, alpha
    S = np.maximum(X.astype(np.float64) @ X.astype(np.float64).T, 0.0)
    z = _z(quality)
    diverse = _greedy(S, z, budget, 1.0, 0.0)
    top = np.argsort(-np.asarray(quality, dtype=np.float64), kind="stable")[:budget]
    d_cov = S[:, diverse].max(axis=1).mean() - S[:, top].max(axis=1).mean()
    d_q = z[top].mean() - z[diverse].mean()
    if not d_q > 0:
        return 1.0, 0.0
    if not d_cov > 0:
        return 0.0, 1.0
    return (1 - alpha) / d_cov, alpha / d_q


def naive_qdit(X: np.ndarray, quality: np.ndarray, budget: int, alpha: float) -> list[int]:
    """Plain QDIT greedy on the range-normalised objective; ties go to the lowest index."""
    w_cov, w_q = naive_qdit_weights(X, quality, budget, alpha)
    S = np.maximum(X.astype(np.float64) @ X.astype(np.float64).T, 0.0)
    return _greedy(S, _z(quality), budget, w_cov, w_q)


def _z(quality: np.ndarray) -> np.ndarray:
    quality = np.asarray(quality, dtype=np.float64)
    std = quality.std()
    return (quality - quality.mean()) / std if std > 0 else np.zeros_like(quality)


def _greedy(S: np.ndarray, z: np.ndarray, budget: int, w_cov: float, w_q: float) -> list[int]:
    """Every step scores every unpicked row with a loop: w_cov * coverage gain / n + w_q * z / budget."""
    n = len(S)
    cover = np.zeros(n)
    picked: list[int] = []
    for _ in range(budget):
        best, best_gain = -1, -np.inf
        chosen = set(picked)
        for x in range(n):
            if x in chosen:
                continue
            gain = w_cov * np.maximum(S[:, x] - cover, 0.0).sum() / n + w_q * z[x] / budget
            if gain > best_gain:
                best, best_gain = x, gain
        picked.append(best)
        cover = np.maximum(cover, S[:, best])
    return picked


def naive_kcenter(X: np.ndarray, budget: int, first: int) -> tuple[list[int], float]:
    """Textbook farthest-first traversal on a dense float64 cosine-distance matrix: (centers, radius)."""
    D = 1.0 - X.astype(np.float64) @ X.astype(np.float64).T
    picked = [first]
    mind = D[first].copy()
    mind[picked] = -np.inf
    while len(picked) < budget:
        j = int(np.argmax(mind))  # first maximum = lowest index on ties
        picked.append(j)
        mind = np.minimum(mind, D[j])
        mind[picked] = -np.inf
    return picked, float(np.max(D[:, picked].min(axis=1)))
