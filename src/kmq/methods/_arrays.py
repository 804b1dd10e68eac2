"""Small array helpers shared by the selection methods: memory-bounded chunks, standardising, ranking."""

from __future__ import annotations

import numpy as np

_CHUNK_BYTES = 64 << 20


def row_chunk(n_cols: int, itemsize: int = 4) -> int:
    """Rows per chunk so that a (rows, n_cols) temporary stays near 64 MiB."""
    return max(1, _CHUNK_BYTES // max(1, n_cols * itemsize))


def zscore(values: np.ndarray) -> np.ndarray:
    """Standardise to mean 0 and standard deviation 1 (float64); constant values give zeros."""
    values = np.asarray(values, dtype=np.float64)
    std = values.std()
    if values.size == 0 or not std > 0:
        return np.zeros_like(values)
    return (values - values.mean()) / std


def quality_order(quality: np.ndarray) -> np.ndarray:
    """Row indices by quality, highest first; equal scores keep the lower row index first (int64)."""
    return np.argsort(-np.asarray(quality, dtype=np.float64), kind="stable").astype(np.int64, copy=False)


def child_seed(rng: np.random.Generator) -> int:
    """An int seed (for faiss) from a new child stream of ``rng``; the draws of ``rng`` itself are unchanged."""
    return int(rng.spawn(1)[0].integers(2**30))
