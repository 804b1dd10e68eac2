"""Nearest-pick search for the diagnostics: each query row's largest inner product with a base row.

Two plans, chosen by the size of the problem (``index="auto"``):

- ``exact``: a faiss ``IndexFlatIP`` of the base rows, queried in chunks (faiss blocks the product
  itself, so no (queries x base) matrix is ever held).
- ``ivf``: for large problems (more than ``EXACT_PAIRS`` query-base pairs). The base rows are split into
  ``nlist ~ sqrt(b)`` cells by a seeded spherical faiss k-means (10 iterations on at most 64 rows per
  cell); every query visits its nearest cells (as many as the exact search's budget pays for, at least
  ``NPROBE``: :func:`search_plan`), and each cell is one BLAS product of the
  queries that visit it with its members. The result is a lower bound of the exact maximum (a maximum
  over a subset of the base), equal to it for almost every row on clustered data (BENCHMARKS.md gives
  the shortfall). faiss's own ``IndexIVFFlat`` scans the lists one query at a time and was about 5x
  slower here on 2 cores (BENCHMARKS.md), so the cells are searched with numpy products.

:class:`PickIndex` builds the exact index or the cells once and answers several searches (the coverage
of the pool and the near duplicates among the picks use the same one).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, Literal

import numpy as np

from kmq._deps import require
from kmq.methods.validation import check_choice

__all__ = ["EXACT_PAIRS", "NPROBE", "Index", "PickIndex", "nearest_similarity", "search_plan"]

Index = Literal["auto", "exact", "ivf"]
INDEXES = ("auto", "exact", "ivf")
#: above this many (query, base) pairs ``index="auto"`` uses the cell search (about 1e11 flops at d = 384)
EXACT_PAIRS = 1 << 27
#: fewest cells each query visits in the cell search
NPROBE = 8
_QUERY_CHUNK = 65536


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
    """The plan ``nearest_similarity`` follows: ``"exact"`` or ``"ivf:nlist=L,nprobe=P"``.

    ``"auto"`` searches exactly up to ``EXACT_PAIRS`` (query, base) pairs; above, its cell search visits
    ``P = max(NPROBE, EXACT_PAIRS / 2 * L / (queries * base))`` of the ``L`` cells: it costs about what
    an exact search at the limit would (a pair costs it about twice as much: the rows are gathered per
    cell), and never visits fewer than ``NPROBE`` cells. ``"ivf"`` forces the cell search with ``NPROBE``
    cells whatever the size.
    """
    check_choice(index, "index", "nearest_similarity", INDEXES)
    small = n_base <= 4 * NPROBE or n_queries * n_base <= EXACT_PAIRS
    if index == "exact" or (index == "auto" and small) or n_base < 2:
        return "exact"
    nlist = _nlist(n_base)
    budget = EXACT_PAIRS // 2  # a pair costs the cell search about twice what it costs faiss (the query gathers)
    nprobe = min(nlist, NPROBE if index == "ivf" else max(NPROBE, budget * nlist // (n_queries * n_base)))
    return f"ivf:nlist={nlist},nprobe={nprobe}"


def _nlist(n_base: int) -> int:
    return max(2, min(4096, round(math.sqrt(n_base))))


class PickIndex:
    """Search structure over the base rows (the picks), built on first use and reused across searches.

    Parameters
    ----------
    base : ndarray of shape (b, d), float32
        The rows searched, b >= 1.
    seed : int, default=0
        Seed of the cell search's k-means.
    """

    def __init__(self, base: np.ndarray, *, seed: int = 0) -> None:
        self.base = np.ascontiguousarray(base, dtype=np.float32)
        self.seed = int(seed)
        self._flat = None
        self._cells: tuple[Any, np.ndarray, np.ndarray] | None = None

    def release_exact(self) -> None:
        """Free the exact search's faiss index (its own copy of the base); a later exact search builds it again."""
        self._flat = None

    def search(
        self,
        queries: np.ndarray,
        *,
        rows: np.ndarray | None = None,
        exclude_self: bool = False,
        index: Index = "auto",
    ) -> tuple[np.ndarray, str]:
        """Largest inner product of each query row with a base row.

        Parameters
        ----------
        queries : ndarray of shape (m, d), float32
            The query rows, or the array they are taken from when ``rows`` is given.
        rows : ndarray of shape (q,), int, or None
            Which rows of ``queries`` to search (gathered one chunk at a time); None means all.
        exclude_self : bool, default=False
            Query ``i`` is base row ``i`` and must not match itself (the nearest *other* row): pass the
            base itself as ``queries`` and ``rows=None``.
        index : {"auto", "exact", "ivf"}, default="auto"

        Returns
        -------
        similarity : ndarray of shape (q,), float32
            ``-inf`` where no other row exists (``exclude_self`` with b = 1).
        plan : str
            What was run (:func:`search_plan`).
        """
        faiss = require("faiss", purpose="the coverage and near-duplicate diagnostics")
        n_q = len(queries) if rows is None else len(rows)
        plan = search_plan(n_q, len(self.base), index)
        if exclude_self and len(self.base) < 2:
            return np.full(n_q, -np.inf, dtype=np.float32), plan
        with _all_threads(faiss):
            if plan == "exact":
                return self._exact(faiss, queries, rows, exclude_self), plan
            nprobe = int(plan.rpartition("=")[2])
            return self._search_cells(faiss, queries, rows, exclude_self, nprobe), plan

    def _exact(
        self, faiss: ModuleType, queries: np.ndarray, rows: np.ndarray | None, exclude_self: bool
    ) -> np.ndarray:
        if self._flat is None:
            self._flat = faiss.IndexFlatIP(self.base.shape[1])
            self._flat.add(self.base)
        out = np.empty(len(queries) if rows is None else len(rows), dtype=np.float32)
        for lo, chunk in _chunks(queries, rows):
            D, ids = self._flat.search(chunk, 2 if exclude_self else 1)
            if exclude_self:  # the best hit is the row itself unless an identical row came first (as good)
                self_first = ids[:, 0] == np.arange(lo, lo + len(chunk))
                out[lo : lo + len(chunk)] = np.where(self_first, D[:, 1], D[:, 0])
            else:
                out[lo : lo + len(chunk)] = D[:, 0]
        return out

    def _build_cells(self, faiss: ModuleType) -> tuple[Any, np.ndarray, np.ndarray]:
        """(coarse index of the centroids, members grouped by cell, cell starts); a cell's rows are gathered when
        searched (no grouped copy of the base beside it)."""
        if self._cells is None:
            b, d = self.base.shape
            nlist = _nlist(b)
            km = faiss.Kmeans(
                d, nlist, niter=10, seed=self.seed % (2**31 - 1), spherical=True, max_points_per_centroid=64,
                min_points_per_centroid=1, verbose=False,
            )  # fmt: skip
            km.train(self.base)
            coarse = faiss.IndexFlatIP(d)
            coarse.add(np.ascontiguousarray(km.centroids, dtype=np.float32))
            cell = np.empty(b, dtype=np.int64)
            for lo, chunk in _chunks(self.base, None):
                cell[lo : lo + len(chunk)] = coarse.search(chunk, 1)[1][:, 0]
            members = np.argsort(cell, kind="stable")
            starts = np.searchsorted(cell[members], np.arange(nlist + 1))
            self._cells = (coarse, members, starts)
        return self._cells

    def _search_cells(
        self, faiss: ModuleType, queries: np.ndarray, rows: np.ndarray | None, exclude_self: bool, nprobe: int
    ) -> np.ndarray:
        coarse, members, starts = self._build_cells(faiss)
        nlist = len(starts) - 1
        best = np.full(len(queries) if rows is None else len(rows), -np.inf, dtype=np.float32)
        for lo, chunk in _chunks(queries, rows):
            probes = coarse.search(chunk, nprobe)[1].ravel()
            visitor = np.argsort(probes, kind="stable")
            vstarts = np.searchsorted(probes[visitor], np.arange(nlist + 1))
            visitor //= nprobe  # position in the flattened (query, probe) list -> query in the chunk
            part = best[lo : lo + len(chunk)]
            for c in range(nlist):
                qs, a, z = visitor[vstarts[c] : vstarts[c + 1]], starts[c], starts[c + 1]
                if qs.size == 0 or z == a:
                    continue
                S = chunk[qs] @ self.base[members[a:z]].T
                if exclude_self:
                    S[np.equal.outer(qs + lo, members[a:z])] = -np.inf
                part[qs] = np.maximum(part[qs], S.max(axis=1))  # a query visits a cell once: no repeats in qs
        return best


def nearest_similarity(
    base: np.ndarray,
    queries: np.ndarray,
    *,
    rows: np.ndarray | None = None,
    exclude_self: bool = False,
    index: Index = "auto",
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Largest inner product of each query row with a base row: ``PickIndex(base).search(queries, ...)``."""
    return PickIndex(base, seed=seed).search(queries, rows=rows, exclude_self=exclude_self, index=index)


def _chunks(queries: np.ndarray, rows: np.ndarray | None) -> Iterator[tuple[int, np.ndarray]]:
    n_q = len(queries) if rows is None else len(rows)
    for lo in range(0, n_q, _QUERY_CHUNK):
        part = queries[lo : lo + _QUERY_CHUNK] if rows is None else queries[rows[lo : lo + _QUERY_CHUNK]]
        yield lo, np.ascontiguousarray(part, dtype=np.float32)
