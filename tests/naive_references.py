"""Naive reference implementations of the exact selection baselines, shared by the tests and the benchmarks.

Import it from any test (``from naive_references import naive_qdit``; ``tests/`` is on ``sys.path``) or from
``benchmarks/bench_baselines.py``. They are deliberately plain: dense float64 n×n matrices, loops, no kmq code.
"""

from __future__ import annotations

import numpy as np


def naive_qdit(X: np.ndarray, quality: np.ndarray, budget: int, alpha: float) -> list[int]:
    """Plain QDIT greedy: every step scores every unpicked row with a loop; ties go to the lowest index."""
    n = len(X)
    S = np.maximum(X.astype(np.float64) @ X.astype(np.float64).T, 0.0)
    z = (quality - quality.mean()) / quality.std()
    cover = np.zeros(n)
    picked: list[int] = []
    for _ in range(budget):
        best, best_gain = -1, -np.inf
        chosen = set(picked)
        for x in range(n):
            if x in chosen:
                continue
            gain = (1 - alpha) * np.maximum(S[:, x] - cover, 0.0).sum() / n + alpha * z[x] / budget
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
