"""The k-center baseline: greedy farthest-first traversal (Gonzalez, 1985) on cosine distance.

The paper's k-Center takes k = budget and returns the centers; the authors' ``kcentergreedy.py`` is an
empty file (paper.md §7 bug 18), so this is the textbook 2-approximation: start from one point, then
``budget - 1`` times add the point farthest from the chosen ones, keeping every row's distance to its
nearest chosen point in one vector. Distances are ``1 - x·c`` (the rows are L2-normalised); equal
distances go to the lower row index. Nothing n×n is ever built.

**Exact mode: deferred updates.** Updating the distance vector after every pick is a matrix-vector
product, bound by memory bandwidth (about 0.2 s per pick at n = 1M, d = 384 on two cores). Instead,
new centers are queued and applied in batches of up to 256 with one matrix-matrix product (BLAS at full
speed, about 10x the throughput), and the distances kept in between are upper bounds. To pick, the
largest bound is checked against the queued centers; it is the true farthest row as soon as its exact
distance is still the largest bound (every other bound is at least its row's exact distance), and the
lower row index wins ties exactly as in the plain loop. When many checks fail in a row (early on, when
each center moves many distances), the queue is applied at once. The selection is the plain greedy's,
up to float32 rounding. Cost: O(n·b·d) flops: 27 min at n = 1M, b = 100k on two shared cores.

**Approximate mode** (``mode="approx"``, never the default): rows are grouped into compact cells
(:func:`~kmq.methods.partition.coarse_partition`, about 256 rows each) and each new center updates only
the ``probes`` cells whose centers are nearest to it, among the cells that the triangle inequality does
not rule out (after one full pass). Distances elsewhere may be stale, i.e. too large, so the reported
``radius`` is an upper bound of the true covering radius, some picks are wasted on rows that an earlier
center already covers, and the result depends on ``probes``. Measured (BENCHMARKS.md): at n = 1M,
b = 100k, 4.5 min instead of 27 with a radius bound 0.1% above the exact radius; at n = 100k it is no
faster than exact, and ``probes=8`` loses 27% of radius there.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from kmq.methods._arrays import child_seed, row_chunk
from kmq.methods.partition import coarse_partition
from kmq.methods.registry import Picked, register
from kmq.methods.validation import check_choice, check_number, check_random_state

__all__ = ["kcenter", "kcenter_greedy"]

KCENTER_STARTS = ("mean", "random")
KCENTER_MODES = ("exact", "approx")
_QUEUE = 256  # centers applied per matrix-matrix product in exact mode
_MAX_CHECKS = 32  # failed checks in one pick before the queue is applied at once
_MARGIN = 1e-4  # Euclidean slack on the triangle-inequality bound (approx mode), far above float32 rounding


def _start_row(X: np.ndarray, start: str, rng: np.random.Generator) -> int:
    """First center: the row most similar to the mean direction (lowest index on ties) or a random row."""
    if start == "random":
        return int(rng.integers(X.shape[0]))
    mu = X.mean(axis=0, dtype=np.float64).astype(np.float32)
    step = row_chunk(1) // 4
    sims = np.concatenate([X[s : s + step] @ mu for s in range(0, X.shape[0], step)])
    return int(np.argmax(sims))


class _Deferred:
    """Distances to the nearest center, exact up to the queued centers (upper bounds otherwise)."""

    def __init__(self, X: np.ndarray):
        self.X = X
        self.mind = np.full(X.shape[0], np.inf, np.float32)  # -inf marks a center
        self.queue = np.empty((_QUEUE, X.shape[1]), np.float32)
        self.queued = 0
        self.checked = np.zeros(X.shape[0], np.int32)  # queued centers already applied to the row
        self.checks = self.passes = 0

    def add(self, p: int) -> None:
        self.mind[p] = -np.inf
        self.queue[self.queued] = self.X[p]
        self.queued += 1
        if self.queued == _QUEUE or self.passes == 0:
            self.flush()

    def flush(self) -> None:
        """Apply the queued centers to every row with one matrix product per row chunk."""
        if self.queued == 0:
            return
        C = self.queue[: self.queued]
        step = row_chunk(self.queued)
        for s in range(0, self.mind.size, step):
            near = (self.X[s : s + step] @ C.T).max(axis=1)
            np.minimum(self.mind[s : s + step], 1.0 - near, out=self.mind[s : s + step])
        self.queued = 0
        self.checked[:] = 0
        self.passes += 1

    def farthest(self) -> tuple[int, float]:
        """The row farthest from every center (lowest index on ties) and its distance."""
        failed = 0
        while True:
            p = int(np.argmax(self.mind))
            if self.checked[p] == self.queued:
                return p, float(self.mind[p])
            d = 1.0 - self.queue[self.checked[p] : self.queued] @ self.X[p]
            self.mind[p] = min(self.mind[p], d.min())
            self.checked[p] = self.queued
            self.checks += 1
            failed += 1
            if failed == _MAX_CHECKS:
                self.flush()

    def radius(self) -> float:
        self.flush()
        return max(float(self.mind.max()), 0.0)  # -inf when every row is a center


class _Cells:
    """Approximate mode: rows grouped by cell; a new center updates only the nearest cells."""

    def __init__(self, X: np.ndarray, n_cells: int, probes: int, seed: int):
        self.order, self.starts, labels = coarse_partition(X, n_cells, seed=seed)
        self.k, self.probes = self.starts.size - 1, probes
        self.Xs = X[self.order]
        self.pos = np.empty_like(self.order)
        self.pos[self.order] = np.arange(self.order.size)
        self.mind = np.full(X.shape[0], np.inf, np.float32)  # by position in Xs
        self.cellmax = np.full(self.k, np.inf)
        self.anchors = np.stack(
            [self.Xs[a:b].mean(axis=0) for a, b in zip(self.starts[:-1], self.starts[1:], strict=True)]
        )
        self.anorm2 = np.einsum("ij,ij->i", self.anchors, self.anchors, dtype=np.float64)
        self.rho = self._radii(labels[self.order])
        self.evaluated = 0

    def _radii(self, lab_sorted: np.ndarray) -> np.ndarray:
        """Euclidean distance from each cell's center to its farthest member (float64)."""
        d2 = np.empty(self.Xs.shape[0])
        step = row_chunk(self.Xs.shape[1])
        for s in range(0, d2.size, step):
            dots = np.einsum("ij,ij->i", self.Xs[s : s + step], self.anchors[lab_sorted[s : s + step]])
            d2[s : s + step] = 1.0 - 2.0 * dots + self.anorm2[lab_sorted[s : s + step]]
        return np.sqrt(np.maximum(np.maximum.reduceat(d2, self.starts[:-1]), 0.0))

    def add(self, row: int) -> None:
        p = int(self.pos[row])
        self.mind[p] = -np.inf
        c = self.Xs[p]
        dist = np.sqrt(np.maximum(1.0 - 2.0 * (self.anchors @ c) + self.anorm2, 0.0))
        thr = np.where(self.cellmax > -np.inf, np.sqrt(2.0 * np.maximum(self.cellmax, 0.0)) + _MARGIN, -np.inf)
        scan = np.flatnonzero(dist - self.rho <= thr)
        if np.isinf(self.cellmax).any():  # the first center: one full pass
            np.minimum(self.mind, 1.0 - self.Xs @ c, out=self.mind)
            self.cellmax = np.maximum.reduceat(self.mind, self.starts[:-1]).astype(np.float64)
            self.evaluated += self.mind.size
            return
        if scan.size > self.probes:
            scan = scan[np.argpartition(dist[scan], self.probes - 1)[: self.probes]]
        b = int(np.searchsorted(self.starts, p, side="right") - 1)
        for cell in set(scan.tolist()) | {b}:
            lo, hi = self.starts[cell], self.starts[cell + 1]
            seg = self.mind[lo:hi]
            # einsum, not BLAS: many small products, and threaded BLAS stalls on them on a busy machine
            np.minimum(seg, 1.0 - np.einsum("ij,j->i", self.Xs[lo:hi], c), out=seg)
            self.cellmax[cell] = seg.max()
            self.evaluated += seg.size

    def farthest(self) -> tuple[int, float]:
        """Row with the largest (possibly stale) distance, lowest row index on ties, and that distance."""
        gmax = self.cellmax.max()
        best = -1
        for b in np.flatnonzero(self.cellmax == gmax).tolist():
            p = self.starts[b] + int(np.argmax(self.mind[self.starts[b] : self.starts[b + 1]]))
            if best < 0 or self.order[p] < self.order[best]:
                best = p
        return int(self.order[best]), float(gmax)

    def radius(self) -> float:
        return max(float(self.cellmax.max()), 0.0)


def kcenter_greedy(
    X: np.ndarray,
    budget: int,
    *,
    start: Literal["mean", "random"] = "mean",
    random_state: np.random.Generator | int | None = None,
    mode: Literal["exact", "approx"] = "exact",
    cells: int | None = None,
    probes: int = 32,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Greedy farthest-first traversal with ``budget`` centers on cosine distance.

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        L2-normalised, C-contiguous rows.
    budget : int
        Number of centers, in ``[0, n]``.
    start : {"mean", "random"}, default="mean"
        First center: the row nearest the mean direction (deterministic) or a uniformly random row.
    random_state : numpy.random.Generator, int or None
        Draws the first center when ``start="random"``, and seeds the approximate mode's k-means
        partition from a child stream (so the random start is the same in both modes).
    mode : {"exact", "approx"}, default="exact"
        ``approx`` updates only the ``probes`` nearest cells per pick (see the module docstring).
    cells : int or None, default=None
        Cells of the approximate mode; None means about n / 256.
    probes : int, default=32
        Cells updated per pick in approximate mode.

    Returns
    -------
    indices : ndarray of shape (budget,), int64
        Centers in the order picked.
    gaps : ndarray of shape (budget,), float64
        Cosine distance of each center to the earlier ones when it was picked (inf for the first);
        non-increasing in exact mode.
    stats : dict
        ``radius`` (final covering radius, cosine distance: max over rows of the distance to the nearest
        center; an upper bound in approx mode) and work counters.

    Examples
    --------
    >>> angles = np.deg2rad([0, 10, 90, 180, 270])
    >>> X = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    >>> kcenter_greedy(X, 3)[0].tolist()
    [1, 3, 4]
    """
    n = X.shape[0]
    rng = check_random_state(random_state)
    stats: dict[str, Any] = {"mode": mode, "start": start, "radius_is_upper_bound": mode == "approx"}
    if budget == 0:
        return np.zeros(0, np.int64), np.zeros(0), {**stats, "radius": None}
    if mode == "exact":
        state = _Deferred(X)
    else:
        state = _Cells(X, max(1, n // 256) if cells is None else min(cells, n), probes, child_seed(rng))
    indices = np.empty(budget, np.int64)
    gaps = np.empty(budget)
    p, gap = _start_row(X, start, rng), math.inf
    for i in range(budget):
        indices[i], gaps[i] = p, gap
        state.add(p)
        if i < budget - 1:
            p, gap = state.farthest()
    stats["radius"] = state.radius()
    if mode == "exact":
        stats.update(full_passes=state.passes, checks_per_pick=state.checks / budget)
    else:
        stats.update(n_cells=state.k, probes=probes, scan_fraction=state.evaluated / (n * budget))
    return indices, gaps, stats


@register(
    "kcenter",
    help="k-center greedy (farthest-first traversal) on cosine distance with k = budget.",
)
def kcenter(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    embeddings: np.ndarray,
    start: Literal["mean", "random"] = "mean",
    mode: Literal["exact", "approx"] = "exact",
    cells: int | Literal["auto"] = "auto",
    probes: int = 32,
) -> Picked:
    """Select ``budget`` rows as the centers of greedy k-center (see :func:`kcenter_greedy`).

    Parameters
    ----------
    n : int
        Pool size.
    budget : int
        Number of rows to select, in ``[0, n]``.
    random_state : numpy.random.Generator, int or None
        Draws the first center when ``start="random"`` and seeds the ``approx`` mode's partition.
    embeddings : ndarray of shape (n, d), float32
        L2-normalised rows.
    start : {"mean", "random"}, default="mean"
        First center: the row nearest the pool's mean direction (deterministic), or random from the seed.
    mode : {"exact", "approx"}, default="exact"
        ``approx`` trades exactness for speed at large n; its ``radius`` is an upper bound.
    cells : int or "auto", default="auto"
        Cells of the approximate mode (auto: about n / 256).
    probes : int, default=32
        Cells updated per pick in ``approx`` mode.

    Returns
    -------
    Picked
        ``indices`` of shape (budget,), int64, in pick order; a reason with each center's distance; stats
        with the final covering ``radius`` (cosine distance); ``explain["score"]`` (float64): each pick's
        cosine distance to the centers chosen before it (inf for the first), non-increasing in exact mode.
    """
    owner = "kcenter"
    start = check_choice(start, "start", owner, KCENTER_STARTS)
    mode = check_choice(mode, "mode", owner, KCENTER_MODES)
    if cells != "auto":
        cells = check_number(cells, "cells", owner, low=1, closed="[)", kind=int)
    probes = check_number(probes, "probes", owner, low=1, closed="[)", kind=int)
    indices, gaps, stats = kcenter_greedy(
        embeddings,
        budget,
        start=start,
        random_state=random_state,
        mode=mode,
        cells=None if cells == "auto" else cells,
        probes=probes,
    )
    first = f"kcenter: start ({'nearest the mean' if start == 'mean' else 'random'})"
    reason = [first] + [f"kcenter: farthest, cos distance {g:.3f}" for g in gaps[1:].tolist()]
    return Picked(indices=indices, reason=reason[:budget], stats=stats, explain={"score": gaps})
