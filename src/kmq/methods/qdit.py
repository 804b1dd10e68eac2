"""The QDIT baseline: greedy quality-diversity selection (Bukharin & Zhao, 2023).

QDIT greedily maximises

    F(S) = (1 - alpha) · C(S) / ΔC  +  alpha · Z(S) / ΔZ

- ``C(S) = FL(S) / n`` is the mean coverage, with ``FL(S) = Σ_{v in pool} max_{s in S} sim(v, s)`` the
  facility location, ``sim = max(cos, 0)`` and ``max over the empty set = 0``. Facility location needs
  non-negative similarities to be monotone submodular; clipping at 0 keeps cosine's scale (1 = same
  direction) and says "an opposite row covers nothing", and it is also what a sparse nearest-neighbour
  graph assumes for the pairs it drops, so the exact and sparse modes optimise the same function up to
  that truncation. (The affine ``(1 + cos) / 2`` would keep negative cosines but gives every absent graph
  edge 0.5, which a sparse graph cannot represent.)
- ``Z(S)`` is the mean z-score of the selection (quality standardised over the pool, so the scorer's
  units do not matter; for a fixed budget ``Σ z`` ranks subsets exactly as ``Σ q`` does).
- ``ΔC`` and ``ΔZ`` are the ranges the two terms can span at this budget, between the two endpoint
  selections: the pure facility-location greedy ``D`` (alpha = 0, run first with the same mode) and the
  ``b`` best rows ``T`` (alpha = 1, ``top-quality``): ``ΔC = C(D) - C(T)`` and ``ΔZ = Z(T) - Z(D)``.
  So ``alpha`` weighs fractions of what is achievable: at 0.5, giving up 10% of the coverage range is
  worth it only for more than 10% of the quality range. Without the ranges (the earlier objective,
  ``(1 - alpha) · C + alpha · Z``) a pick's coverage gain is of order ``ΔC / b`` and its quality gain of
  order ``ΔZ / b`` with ``ΔZ / ΔC`` ~ 26 on dolly_3k, so every alpha from ~0.3 up was top-quality under
  another name (BENCHMARKS.md, "QDIT's alpha").
- A range that is not positive means that term cannot be traded: ``ΔZ <= 0`` (constant quality, or the
  diverse picks are already the best ones) gives pure facility location, else ``ΔC <= 0`` gives top
  quality. ``alpha = 0`` is pure facility location and ``alpha = 1`` is exactly ``top-quality`` (same
  rows, same order); neither needs the calibration run. The paper does not state QDIT's alpha (paper.md
  §2.7). The default 0.5 is the alpha at which the two endpoints score the same (``F(D) = F(T)``), so
  what the greedy finds above them is a genuine trade; on dolly_3k at b = 300 it keeps 74% of the
  coverage range and 80% of the quality range and shares 214 picks with top-quality (296 before).

Modes (the gain of a candidate x is ``Σ_v max(0, sim(v, x) - m_v)`` with ``m_v`` the coverage of v):

- ``exact``: lazy greedy (upper bounds, valid because the gains only shrink, kept in an array; the
  largest stale ones are re-evaluated in batches) over exact gains from dense similarities; O(n²·d) for
  the first gains. Up to n = 23,170 the n×n similarities are kept (float32, at most 2 GiB: a fixed size,
  not the machine's free memory, so the selection does not depend on the machine); above, every gain
  evaluation recomputes its rows, O(n·d) each, in batched matrix products (8-10x slower at 12k rows,
  BENCHMARKS.md "QDIT's similarity cache"). The selection equals plain greedy's (ties to the lower row
  index), up to float32 rounding: the cache is one symmetric product ``X @ X.T`` (BLAS syrk) and a
  recomputed row a general product of the candidate batch, whose last bits differ, so the two can break
  a near-tie differently.
- ``sparse``: lazy greedy on a top-``n_neighbors`` cosine graph: each row keeps its most similar rows
  (itself included), found by exact search inside its cell and the ``probes`` nearest cells of a faiss
  two-level k-means partition. FL is computed over the graph, a lower bound of the exact FL.
- ``stochastic``: stochastic greedy (Mirzasoleiman et al., 2015) on the same graph: each step evaluates
  ``(n / b) · ln(1 / epsilon)`` random unselected rows. Cheaper steps, a somewhat lower objective. Its
  calibration run (alpha = 0) draws from a child stream, so the main run's samples do not depend on alpha.
- ``auto``: ``exact`` up to 8,192 rows, else ``sparse`` (exact's cache takes 4·n² bytes; without it,
  exact lazy greedy needs about 25-35 gain evaluations of O(n·d) per pick on clustered data: about 20 s
  at n = 20,000, b = 2,000 on two cores, and it grows as n²·b).
"""

from __future__ import annotations

import heapq
import math
from typing import Any, Literal

import numpy as np

from kmq.methods._arrays import child_seed, quality_order, row_chunk, zscore
from kmq.methods.partition import coarse_partition
from kmq.methods.registry import Picked, register
from kmq.methods.validation import check_choice, check_number, check_random_state

__all__ = ["knn_graph", "qdit", "qdit_greedy", "qdit_objective", "term_weights"]

QDIT_MODES = ("auto", "exact", "sparse", "stochastic")
EXACT_MAX_N = 8_192
CACHE_MAX_N = 23_170  # exact mode keeps the n×n similarities up to 23,170² float32 = 2 GiB (fixed, not machine-set)


def qdit_objective(
    X: np.ndarray, z: np.ndarray, indices: np.ndarray, alpha: float, *, ranges: dict[str, Any] | None = None
) -> dict[str, float]:
    """Exact QDIT objective of a selection, in float64 (O(n·b·d), chunked).

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        L2-normalised rows.
    z : ndarray of shape (n,), float64
        Standardised quality (:func:`~kmq.methods._arrays.zscore`).
    indices : ndarray of shape (b,), int
        The selection (b >= 1).
    alpha : float
        Quality weight in [0, 1].
    ranges : dict or None, default=None
        ``coverage_range`` and ``quality_range`` (``[low, high]`` each) of a :func:`qdit_greedy` run's
        stats, to score any selection under that run's objective. None: the unnormalised
        ``(1 - alpha) · C + alpha · Z`` (the objective of alpha = 0 and alpha = 1).

    Returns
    -------
    dict
        ``coverage`` (FL / n), ``quality`` (mean z of the selection) and ``objective``.
    """
    C = np.asarray(X[indices], dtype=np.float64)
    step = row_chunk(max(1, len(indices)), 8)
    fl = 0.0
    for s in range(0, X.shape[0], step):
        fl += np.maximum((X[s : s + step].astype(np.float64) @ C.T).max(axis=1), 0.0).sum()
    coverage, quality = fl / X.shape[0], float(np.mean(z[indices]))
    if ranges is None:
        w_cov, w_q = 1.0 - alpha, alpha
    else:
        w_cov, w_q = term_weights(alpha, ranges["coverage_range"], ranges["quality_range"])
    return {"coverage": coverage, "quality": quality, "objective": w_cov * coverage + w_q * quality}


def term_weights(alpha: float, coverage_range, quality_range) -> tuple[float, float]:
    """Weights of C(S) and Z(S): ``(1 - alpha) / ΔC`` and ``alpha / ΔZ``, or one term when a range is <= 0."""
    d_cov = float(coverage_range[1]) - float(coverage_range[0])
    d_q = float(quality_range[1]) - float(quality_range[0])
    if not d_q > 0:  # quality cannot be traded for coverage: pure facility location
        return 1.0, 0.0
    if not d_cov > 0:  # the best rows cover as well as the diverse ones: top quality
        return 0.0, 1.0
    return (1.0 - alpha) / d_cov, alpha / d_q


class _DenseGains:
    """Exact facility-location gains from dense similarity rows: cached up to ``cache_max_n`` rows, else chunked.

    A gain is ``Σ_v max(S[c, v] - m_v, 0)``, computed as ``max(S[c], m) - m`` (elementwise the same floats:
    numpy's maximum against an array is vectorised, against a scalar it is not) and summed by a float32
    matrix-vector product.
    """

    def __init__(self, X: np.ndarray, cache_max_n: int = CACHE_MAX_N):
        self.X = X
        n = X.shape[0]
        self.m = np.zeros(n, np.float32)  # coverage max(0, max_s cos(v, s)) of every row
        self._ones = np.ones(n, np.float32)
        self._chunk = row_chunk(n)
        self.S = X @ X.T if n <= cache_max_n else None

    def _rows(self, cand: np.ndarray) -> np.ndarray:
        return self.S[cand] if self.S is not None else self.X[cand] @ self.X.T

    def _sum_gains(self, sims: np.ndarray) -> np.ndarray:
        """``Σ_v max(sims[i, v] - m_v, 0)`` per row (float32); ``sims`` is overwritten."""
        np.maximum(sims, self.m, out=sims)
        sims -= self.m
        return sims @ self._ones

    def gains(self, cand: np.ndarray) -> np.ndarray:
        step = self._chunk
        if cand.size <= step:  # the common case, kept lean: it runs once or twice a pick
            return self._sum_gains(self._rows(cand))
        out = np.empty(cand.size)
        for s in range(0, cand.size, step):
            out[s : s + step] = self._sum_gains(self._rows(cand[s : s + step]))
        return out

    def initial(self) -> np.ndarray:
        if self.S is None:
            return self.gains(np.arange(self.X.shape[0]))
        n, step = self.X.shape[0], 256
        out, tmp = np.empty(n), np.empty((min(step, n), n), np.float32)
        for s in range(0, n, step):  # nothing is covered yet (m = 0): the gain is Σ_v max(S[c, v], 0)
            rows = np.maximum(self.S[s : s + step], self.m, out=tmp[: min(step, n - s)])
            out[s : s + step] = rows @ self._ones
        return out

    def add(self, x: int) -> None:
        np.maximum(self.m, self.S[x] if self.S is not None else self.X[x] @ self.X.T, out=self.m)

    def add_many(self, rows: np.ndarray) -> None:
        for s in range(0, rows.size, self._chunk):
            np.maximum(self.m, self._rows(rows[s : s + self._chunk]).max(axis=0), out=self.m)

    def reset(self) -> None:
        self.m[:] = 0.0

    def coverage(self) -> float:
        return float(self.m.sum(dtype=np.float64)) / self.m.size


class _GraphGains:
    """Facility-location gains over a sparse similarity graph, stored by candidate (reverse CSR)."""

    def __init__(self, nbr: np.ndarray, sim: np.ndarray):
        n = nbr.shape[0]
        rows = np.repeat(np.arange(n, dtype=np.int32), nbr.shape[1])
        cols, vals = nbr.ravel(), sim.ravel()
        keep = (cols >= 0) & (vals > 0)
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        order = np.argsort(cols, kind="stable")
        self.v, self.s = rows[order], vals[order].astype(np.float32)
        self.ptr = np.concatenate([[0], np.cumsum(np.bincount(cols, minlength=n))]).astype(np.int64)
        self.m = np.zeros(n, np.float32)
        self.nnz = int(self.v.size)

    def gains(self, cand: np.ndarray) -> np.ndarray:
        start, stop = self.ptr[cand], self.ptr[cand + 1]
        lens = stop - start
        seg = np.concatenate([[0], np.cumsum(lens)[:-1]])
        idx = np.repeat(start - seg, lens) + np.arange(lens.sum())
        vals = np.maximum(self.s[idx] - self.m[self.v[idx]], 0.0).astype(np.float64)
        out = np.zeros(cand.size)
        nonempty = lens > 0
        if vals.size:
            out[nonempty] = np.add.reduceat(vals, seg[nonempty])
        return out

    def initial(self) -> np.ndarray:
        return self.gains(np.arange(self.m.size))

    def add(self, x: int) -> None:
        sl = slice(self.ptr[x], self.ptr[x + 1])
        v = self.v[sl]
        self.m[v] = np.maximum(self.m[v], self.s[sl])

    def add_many(self, rows: np.ndarray) -> None:
        for x in rows.tolist():
            self.add(x)

    def reset(self) -> None:
        self.m[:] = 0.0

    def coverage(self) -> float:
        return float(self.m.sum(dtype=np.float64)) / self.m.size


def _lazy_greedy(engine, bonus: np.ndarray, w_fl: float, budget: int, batch: int, first=None):
    """Lazy greedy: pop the best upper bound; take it if fresh, else re-evaluate a batch of stale ones.

    ``first`` holds the gains of every row on an empty selection (``engine.initial()``) when known.
    """
    n = bonus.size
    keys = w_fl * (engine.initial() if first is None else first) + bonus
    heap = list(zip((-keys).tolist(), range(n), strict=True))
    heapq.heapify(heap)
    fresh = np.zeros(n, np.int64)  # step at which a row's key was last computed
    picked, gains = [], []
    evaluations = n
    while len(picked) < budget:
        negkey, i = heap[0]
        if fresh[i] == len(picked):
            heapq.heappop(heap)
            picked.append(i)
            gains.append(-negkey)
            engine.add(i)
            continue
        stale = []
        while heap and len(stale) < batch and fresh[heap[0][1]] != len(picked):
            stale.append(heapq.heappop(heap)[1])
        cand = np.array(stale, dtype=np.int64)
        new = w_fl * engine.gains(cand) + bonus[cand]
        fresh[cand] = len(picked)
        for key, j in zip((-new).tolist(), stale, strict=True):
            heapq.heappush(heap, (key, j))
        evaluations += cand.size
    return np.array(picked, dtype=np.int64), np.array(gains), evaluations


def _lazy_greedy_array(engine, bonus: np.ndarray, w_fl: float, budget: int, batch: int, first=None):
    """Lazy greedy with the upper bounds in an array (for a few thousand rows, where heap pushes cost more).

    Each step takes the argmax of the bounds (the lowest row among equal ones); while it is stale, the
    largest bounds are re-evaluated in one call, ``batch`` of them first and twice as many each time the
    top is still stale in the same step. Same picks as :func:`_lazy_greedy`.
    """
    n = bonus.size
    ub = w_fl * (engine.initial() if first is None else first) + bonus
    stamp = np.zeros(n, np.int64)  # step at which a row's bound was last computed
    picked, gains = np.empty(budget, np.int64), np.empty(budget)
    evaluations = n
    for step in range(budget):
        k, j, first = batch, int(np.argmax(ub)), True
        while stamp[j] != step:
            k = min(k, n - step)
            cand = np.argpartition(ub, n - k)[n - k :] if k < n else np.arange(n)
            if not first:  # skip what is fresh, and stale bounds below the best fresh value (they cannot win)
                stale = stamp[cand] != step
                if not stale.all():
                    stale &= ub[cand] >= ub[cand[~stale]].max()
                cand = cand[stale]
            ub[cand] = w_fl * engine.gains(cand) + bonus[cand]
            stamp[cand] = step
            evaluations += cand.size
            k, j, first = 2 * k, int(np.argmax(ub)), False  # still stale at the top: take bigger batches
        picked[step], gains[step] = j, ub[j]
        ub[j] = -np.inf
        engine.add(j)
    return picked, gains, evaluations


def _stochastic_greedy(engine, bonus: np.ndarray, w_fl: float, budget: int, sample: int, rng):
    """Stochastic greedy: each step takes the best of ``sample`` random unselected rows."""
    n = bonus.size
    remaining = np.arange(n, dtype=np.int64)
    where = np.arange(n, dtype=np.int64)
    picked, gains = np.empty(budget, np.int64), np.empty(budget)
    for step in range(budget):
        left = n - step
        pos = rng.choice(left, size=min(sample, left), replace=False)
        cand = np.sort(remaining[pos])  # ties go to the lower row index
        keys = w_fl * engine.gains(cand) + bonus[cand]
        best = int(np.argmax(keys))
        x = int(cand[best])
        picked[step], gains[step] = x, keys[best]
        engine.add(x)
        last, px = remaining[left - 1], where[x]
        remaining[px], where[last] = last, px
    return picked, gains, budget * sample


def knn_graph(
    X: np.ndarray, n_neighbors: int, *, cells: int | None = None, probes: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Top-``n_neighbors`` cosine neighbours of every row, searched inside its cell and the nearest cells.

    The rows are split into ``cells`` cells (:func:`~kmq.methods.partition.coarse_partition`, default
    about n / 256); each cell's rows are compared exactly, with one matrix product, to the rows of its own
    cell and of the ``probes - 1`` cells whose centers are nearest to its center. With one cell the graph
    is exact. Every row is its own first neighbour (similarity 1).

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        L2-normalised, C-contiguous rows.
    n_neighbors : int
        Neighbours kept per row.
    cells : int or None, default=None
        Number of cells; None means 1 up to 4,096 rows and ``n // 256`` above.
    probes : int, default=8
        Cells searched per cell, its own included.
    seed : int, default=0
        Seed of the partition's k-means.

    Returns
    -------
    nbr : ndarray of shape (n, n_neighbors), int32
        Neighbour rows, most similar not necessarily first; -1 pads rows with fewer candidates.
    sim : ndarray of shape (n, n_neighbors), float32
        Their cosine similarities.
    stats : dict
        ``n_cells`` and ``mean_candidates`` (rows compared per row).
    """
    n = X.shape[0]
    if cells is None:
        cells = 1 if n <= 4096 else n // 256
    order, starts, labels = coarse_partition(X, cells, seed=seed)
    k = starts.size - 1
    probes = min(probes, k)
    centers = np.stack([X[order[starts[c] : starts[c + 1]]].mean(axis=0) for c in range(k)]).astype(np.float32)
    norms = np.einsum("ij,ij->i", centers, centers)
    near = np.argsort(norms[None, :] - 2.0 * (centers @ centers.T), axis=1, kind="stable")[:, :probes]
    nbr = np.full((n, n_neighbors), -1, np.int32)
    sim = np.zeros((n, n_neighbors), np.float32)
    compared = 0
    for c in range(k):
        others = [p for p in near[c].tolist() if p != c][: probes - 1]
        rows = order[starts[c] : starts[c + 1]]
        cand = np.concatenate([rows] + [order[starts[p] : starts[p + 1]] for p in others])
        sims = X[rows] @ X[cand].T
        diag = np.arange(rows.size)
        sims[diag, diag] = 2.0  # a row is always its own neighbour
        kk = min(n_neighbors, cand.size)
        top = np.argpartition(sims, cand.size - kk, axis=1)[:, cand.size - kk :]
        nbr[rows, :kk] = cand[top]
        sim[rows, :kk] = np.minimum(np.take_along_axis(sims, top, axis=1), 1.0)
        compared += rows.size * cand.size
    return nbr, sim, {"n_cells": k, "probes": probes, "mean_candidates": compared / max(1, n)}


def qdit_greedy(
    X: np.ndarray,
    quality: np.ndarray,
    budget: int,
    *,
    alpha: float = 0.5,
    mode: Literal["auto", "exact", "sparse", "stochastic"] = "auto",
    n_neighbors: int = 32,
    probes: int = 8,
    epsilon: float = 0.01,
    random_state: np.random.Generator | int | None = None,
    cache_max_n: int = CACHE_MAX_N,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Greedy maximisation of the QDIT objective (see the module docstring for F and the modes).

    Parameters
    ----------
    X : ndarray of shape (n, d), float32
        L2-normalised, C-contiguous rows.
    quality : ndarray of shape (n,), float64
        Finite scores, higher is better (standardised here).
    budget : int
        Number of rows to select, in ``[0, n]``.
    alpha : float, default=0.5
        Weight of the quality term in [0, 1], on the ranges of both terms (module docstring): 0 = pure
        facility location, 1 = top quality; in between, the facility-location greedy runs first to
        measure the ranges (about twice the time of one greedy).
    mode : {"auto", "exact", "sparse", "stochastic"}, default="auto"
        How gains are computed and searched.
    n_neighbors : int, default=32
        Graph degree of the sparse and stochastic modes.
    probes : int, default=8
        Cells searched per cell when building the graph.
    epsilon : float, default=0.01
        Stochastic greedy's sample size is ``ceil((n / b) · ln(1 / epsilon))``.
    random_state : numpy.random.Generator, int or None
        Seeds the graph's partition (sparse and stochastic modes, from a child stream) and the
        stochastic mode's samples.
    cache_max_n : int, default=CACHE_MAX_N (23,170)
        ``exact`` keeps the n×n float32 similarities when ``n <= cache_max_n`` (about ``4 n²`` bytes), else
        recomputes rows; the selection is the same up to float32 rounding (module docstring).

    Returns
    -------
    indices : ndarray of shape (budget,), int64
        Selected rows in greedy order.
    gains : ndarray of shape (budget,), float64
        Objective gain of each pick.
    stats : dict
        ``objective`` with its ``coverage`` (FL / n) and ``quality`` (mean z) terms and their
        ``weights``, ``mode`` and ``evaluations`` (gain evaluations, the n initial ones included); for
        0 < alpha < 1 also ``coverage_range`` ``[C(T), C(D)]``, ``quality_range`` ``[Z(D), Z(T)]`` and
        ``calibration_evaluations`` (those of the facility-location run).

    Examples
    --------
    >>> angles = np.deg2rad([0, 5, 10, 90, 180])
    >>> X = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    >>> qdit_greedy(X, np.zeros(5), 2, alpha=0.0)[0].tolist()  # the middle of the 0-10 degree group, then 180
    [2, 4]
    """
    n = X.shape[0]
    rng = check_random_state(random_state)
    if mode == "auto":
        mode = "exact" if n <= EXACT_MAX_N else "sparse"
    z = zscore(quality)
    stats: dict[str, Any] = {"mode": mode, "alpha": alpha}
    if budget == 0:
        return np.zeros(0, np.int64), np.zeros(0), {**stats, "objective": None}
    if mode == "exact":
        engine = _DenseGains(X, cache_max_n)
        stats.update(fl_on="dense", similarity_cache=engine.S is not None)
    else:
        nbr, sim, graph = knn_graph(X, n_neighbors, probes=probes, seed=child_seed(rng))
        engine = _GraphGains(nbr, sim)
        del nbr, sim
        stats.update(fl_on="knn graph", n_neighbors=n_neighbors, graph_edges=engine.nnz, **graph)
    sample = max(1, math.ceil(n / budget * math.log(1.0 / epsilon)))
    first = engine.initial() if mode != "stochastic" else None

    def search(w_cov: float, w_q: float, stream: np.random.Generator):
        bonus = w_q * z / budget
        if mode == "exact":
            return _lazy_greedy_array(engine, bonus, w_cov / n, budget, batch=8, first=first)
        if mode == "sparse":
            return _lazy_greedy(engine, bonus, w_cov / n, budget, batch=32, first=first)
        return _stochastic_greedy(engine, bonus, w_cov / n, budget, sample, stream)

    if 0.0 < alpha < 1.0:  # the endpoints' coverage and mean quality give the ranges of both terms
        diverse, _, calibration = search(1.0, 0.0, rng.spawn(1)[0])
        c_diverse = engine.coverage()
        engine.reset()
        top = quality_order(quality)[:budget]
        engine.add_many(top)
        c_top = engine.coverage()
        engine.reset()
        ranges = {
            "coverage_range": [c_top, c_diverse],
            "quality_range": [float(z[diverse].mean()), float(z[top].mean())],
        }
        w_cov, w_q = term_weights(alpha, ranges["coverage_range"], ranges["quality_range"])
        stats.update(ranges, calibration_evaluations=int(calibration))
    else:
        w_cov, w_q = 1.0 - alpha, alpha
    indices, gains, evals = search(w_cov, w_q, rng)
    if mode == "stochastic":
        stats.update(epsilon=epsilon, sample_size=sample)
    coverage, mean_z = engine.coverage(), float(z[indices].mean())
    stats.update(
        weights={"coverage": w_cov, "quality": w_q},
        objective=w_cov * coverage + w_q * mean_z,
        coverage=coverage,
        quality=mean_z,
        evaluations=int(evals),
        evaluations_per_pick=(evals - (n if mode != "stochastic" else 0)) / budget,
    )
    return indices, gains, stats


@register(
    "qdit",
    help="QDIT: greedy (1 - alpha) * coverage + alpha * mean standardised quality, each on its achievable range.",
)
def qdit(
    *,
    n: int,
    budget: int,
    random_state: np.random.Generator | int | None,
    embeddings: np.ndarray,
    quality: np.ndarray,
    alpha: float = 0.5,
    mode: Literal["auto", "exact", "sparse", "stochastic"] = "auto",
    n_neighbors: int = 32,
    probes: int = 8,
    epsilon: float = 0.01,
) -> Picked:
    """Select ``budget`` rows with QDIT's quality-diversity greedy (see :func:`qdit_greedy`).

    Parameters
    ----------
    n : int
        Pool size.
    budget : int
        Number of rows to select, in ``[0, n]``.
    random_state : numpy.random.Generator, int or None
        Seeds the graph's partition and the stochastic mode's samples (unused by ``exact``).
    embeddings : ndarray of shape (n, d), float32
        L2-normalised rows.
    quality : ndarray of shape (n,), float
        Finite scores, higher is better.
    alpha : float, default=0.5
        Quality weight in [0, 1] on the ranges of the two terms: 0 = pure diversity (facility location),
        1 = pure quality (``top-quality``'s rows and order).
    mode : {"auto", "exact", "sparse", "stochastic"}, default="auto"
        ``exact`` lazy greedy on dense similarities (auto up to 8,192 rows), ``sparse`` lazy greedy on a
        nearest-neighbour graph, ``stochastic`` stochastic greedy on that graph.
    n_neighbors : int, default=32
        Neighbours per row in the graph.
    probes : int, default=8
        Partition cells searched per cell when building the graph.
    epsilon : float, default=0.01
        Stochastic greedy's accuracy parameter in (0, 1).

    Returns
    -------
    Picked
        ``indices`` of shape (budget,), int64, in greedy order; each reason gives the pick's gain; stats
        with the ``objective``, its ``coverage`` and ``quality`` terms, the mode and the evaluation count;
        ``explain`` (float64 each): ``score``, the pick's marginal gain in F when it was picked, split into
        ``coverage_gain`` (weighted increase of C(S)) and ``quality_gain`` (weighted z / budget).
    """
    owner = "qdit"
    alpha = check_number(alpha, "alpha", owner, low=0.0, high=1.0, closed="[]")
    mode = check_choice(mode, "mode", owner, QDIT_MODES)
    n_neighbors = check_number(n_neighbors, "n_neighbors", owner, low=1, kind=int)
    probes = check_number(probes, "probes", owner, low=1, kind=int)
    epsilon = check_number(epsilon, "epsilon", owner, low=0.0, high=1.0, closed="()")
    indices, gains, stats = qdit_greedy(
        embeddings,
        quality,
        budget,
        alpha=alpha,
        mode=mode,
        n_neighbors=n_neighbors,
        probes=probes,
        epsilon=epsilon,
        random_state=random_state,
    )
    reason = [f"qdit: greedy gain {g:.4g}" for g in gains.tolist()]
    quality_gain = stats["weights"]["quality"] * zscore(quality)[indices] / budget if budget else np.zeros(0)
    explain = {"score": gains, "coverage_gain": gains - quality_gain, "quality_gain": quality_gain}
    return Picked(indices=indices, reason=reason, stats=stats, explain=explain)
