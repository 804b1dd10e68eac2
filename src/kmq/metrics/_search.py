"""Nearest-pick search for the diagnostics: each query row's largest inner product with a base row.

Two plans, chosen by the size of the problem (``index="auto"``):

- ``exact``: a faiss ``IndexFlatIP`` of the base rows, queried in chunks (faiss blocks the product
  itself, so no (queries x base) matrix is ever held).
- ``ivf``: for large problems (more than ``EXACT_PAIRS`` query-base pairs). The base rows are split into
  ``nlist ~ sqrt(b)`` cells by a seeded spherical faiss k-means; every query visits its ``NPROBE`` nearest
  cells, and each cell is one BLAS product of the queries that visit it with its members. The result is a
  lower bound of the exact maximum (a maximum over a subset of the base), equal to it for almost every
  row on clustered data. faiss's own ``IndexIVFFlat`` scans the lists one query at a time and was about
  10x slower here on 2 cores (see BENCHMARKS.md), so the cells are searched with numpy products.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Literal

import numpy as np

from kmq._deps import require
from kmq.methods.validation import check_choice

__all__ = ["EXACT_PAIRS", "NPROBE", "Index", "nearest_similarity", "search_plan"]

Index = Literal["auto", "exact", "ivf"]
INDEXES = ("auto", "exact", "ivf")
#: above this many (query, base) pairs ``index="auto"`` uses the cell search (about 2e11 flops at d = 384)
EXACT_PAIRS = 1 << 28
#: cells each query visits in the cell search
NPROBE = 8
_QUERY_CHUNK = 16384


@contextmanager
def _all_threads(faiss: ModuleType) -> Iterator[None]:
    """Run faiss on every core this process may use, then restore its setting."""
    before = faiss.omp_get_max_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    faiss.omp_set_num_threads(cores)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def search_plan(n_queries: int, n_base: int, index: Index = "auto") -> str:
    """The plan ``nearest_similarity`` follows: ``"exact"`` or ``"ivf:nlist=L,nprobe=P"``."""
    check_choice(index, "index", "nearest_similarity", INDEXES)
    small = n_base <= 4 * NPROBE or n_queries * n_base <= EXACT_PAIRS
    if index == "exact" or (index == "auto" and small) or n_base < 2:
        return "exact"
    nlist = _nlist(n_base)
    return f"ivf:nlist={nlist},nprobe={min(NPROBE, nlist)}"


def _nlist(n_base: int) -> int:
    return max(2, min(4096, round(math.sqrt(n_base))))


def nearest_similarity(
    base: np.ndarray,
    queries: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    exclude_self: bool = False,
    index: Index = "auto",
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Largest inner product of each query row with a base row.

    Parameters
    ----------
    base : ndarray of shape (b, d), float32
        The rows searched (the picks), b >= 1.
    queries : ndarray of shape (m, d), float32
        The query rows, or the array they are taken from when ``rows`` is given.
    rows : ndarray of shape (q,), int, or None
        Which rows of ``queries`` to search (gathered one chunk at a time); None means all.
    exclude_self : bool, default=False
        Query ``i`` is base row ``i`` and must not match itself (the nearest *other* row); needs
        ``queries is base`` and ``rows=None``.
    index : {"auto", "exact", "ivf"}, default="auto"
    seed : int, default=0
        Seed of the cell search's k-means.

    Returns
    -------
    similarity : ndarray of shape (q,), float32
        ``-inf`` where no other row exists (``exclude_self`` with b = 1).
    plan : str
        What was run (:func:`search_plan`).
    """
    faiss = require("faiss", purpose="the coverage and near-duplicate diagnostics")
    base = np.ascontiguousarray(base, dtype=np.float32)
    n_q = len(queries) if rows is None else len(rows)
    plan = search_plan(n_q, len(base), index)
    if exclude_self and len(base) < 2:
        return np.full(n_q, -np.inf, dtype=np.float32), plan
    with _all_threads(faiss):
        if plan == "exact":
            return _exact(faiss, base, queries, rows, exclude_self), plan
        return _cells(faiss, base, queries, rows, exclude_self, seed), plan


def _chunks(queries: np.ndarray, rows: np.ndarray | None) -> Iterator[tuple[int, np.ndarray]]:
    n_q = len(queries) if rows is None else len(rows)
    for lo in range(0, n_q, _QUERY_CHUNK):
        part = queries[lo : lo + _QUERY_CHUNK] if rows is None else queries[rows[lo : lo + _QUERY_CHUNK]]
        yield lo, np.ascontiguousarray(part, dtype=np.float32)


def _exact(
    faiss: ModuleType, base: np.ndarray, queries: np.ndarray, rows: np.ndarray | None, exclude_self: bool
) -> np.ndarray:
    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    out = np.empty(len(queries) if rows is None else len(rows), dtype=np.float32)
    for lo, chunk in _chunks(queries, rows):
        D, ids = flat.search(chunk, 2 if exclude_self else 1)
        if exclude_self:  # the best hit is the row itself unless an identical row came first (then it is as good)
            self_first = ids[:, 0] == np.arange(lo, lo + len(chunk))
            out[lo : lo + len(chunk)] = np.where(self_first, D[:, 1], D[:, 0])
        else:
            out[lo : lo + len(chunk)] = D[:, 0]
    return out


def _cells(
    faiss: ModuleType, base: np.ndarray, queries: np.ndarray, rows: np.ndarray | None, exclude_self: bool, seed: int
) -> np.ndarray:
    b, d = base.shape
    nlist = _nlist(b)
    nprobe = min(NPROBE, nlist)
    km = faiss.Kmeans(
        d, nlist, niter=10, seed=int(seed) % (2**31 - 1), spherical=True, max_points_per_centroid=64,
        min_points_per_centroid=1, verbose=False,
    )  # fmt: skip
    km.train(base)
    coarse = faiss.IndexFlatIP(d)
    coarse.add(np.ascontiguousarray(km.centroids, dtype=np.float32))
    cell = coarse.search(base, 1)[1][:, 0]
    members = np.argsort(cell, kind="stable")
    starts = np.searchsorted(cell[members], np.arange(nlist + 1))
    grouped = base[members]

    n_q = len(queries) if rows is None else len(rows)
    probes = np.empty((n_q, nprobe), dtype=np.int64)
    for lo, chunk in _chunks(queries, rows):
        probes[lo : lo + len(chunk)] = coarse.search(chunk, nprobe)[1]
    flat_probes = probes.ravel()
    visitor = np.argsort(flat_probes, kind="stable")
    vstarts = np.searchsorted(flat_probes[visitor], np.arange(nlist + 1))
    visitor //= nprobe  # position in the flattened (query, probe) list -> query

    best = np.full(n_q, -np.inf, dtype=np.float32)
    for c in range(nlist):
        qs, lo, hi = visitor[vstarts[c] : vstarts[c + 1]], starts[c], starts[c + 1]
        if qs.size == 0 or hi == lo:
            continue
        Q = queries[qs] if rows is None else queries[rows[qs]]
        S = np.ascontiguousarray(Q, dtype=np.float32) @ grouped[lo:hi].T
        if exclude_self:
            S[np.equal.outer(qs, members[lo:hi])] = -np.inf
        best[qs] = np.maximum(best[qs], S.max(axis=1))  # a query visits a cell once: qs has no repeats
    return best
