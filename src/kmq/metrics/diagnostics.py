"""The one entry point: every diagnostic of a selection and of a seeded random subset of the same size.

The result is the ``"diagnostics"`` object of manifest.json (plain ints, floats, strings and None).
Random numbers come from their own streams, ``numpy.random.default_rng([seed, STREAM_DIAGNOSTICS, ...])``
(the pipeline's streams are 1-6), so the diagnostics never change a selection and the same seed gives
the same numbers:

- ``[seed, 7]``: the random reference, ``len(picks)`` candidates drawn uniformly without replacement;
- ``[seed, 7, 1]``: the pool rows of the coverage sample (:func:`coverage_rows`);
- ``[seed, 7, 2]``: the picks of the Vendi sample (when a block has more than ``vendi_sample`` rows).

Both blocks use the same coverage rows, so "selected vs random" is a paired comparison. Coverage and
facility location are computed exactly (faiss ``IndexFlatIP``) on at most ``COVERAGE_PAIRS / len(picks)``
pool rows (at least ``MIN_COVERAGE_ROWS``): an approximate search biases the two blocks differently (a
random subset leaves sparser regions, where the cells miss more), which can flip "kmq vs random"; a
smaller exact sample only adds noise, the same for both blocks. Near duplicates among the picks use the
cell search above ``EXACT_PAIRS`` pairs (:mod:`kmq.metrics._search`); it missed no pair above 0.95 in the
benchmarks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError
from kmq.methods.validation import check_number
from kmq.metrics._search import PickIndex
from kmq.metrics.balance import cluster_balance
from kmq.metrics.diversity import coverage_from_similarity, vendi_score
from kmq.metrics.duplicates import exact_duplicates
from kmq.metrics.mix import mix_counts, quantiles

__all__ = ["COVERAGE_PAIRS", "MIN_COVERAGE_ROWS", "STREAM_DIAGNOSTICS", "coverage_rows", "diagnostics"]

#: random stream of the diagnostics (the pipeline's are 1-5, the report map's is 6)
STREAM_DIAGNOSTICS = 7
#: the exact coverage search of a block compares at most this many (pool row, pick) pairs (2e11 flops at d = 384)
COVERAGE_PAIRS = 1 << 28
#: ... but always uses at least this many pool rows (or all of them)
MIN_COVERAGE_ROWS = 2000
_COVERAGE, _VENDI = 1, 2
_OWNER = "kmq.metrics.diagnostics"


def diagnostics(
    *,
    picks: np.ndarray,
    n: int,
    embeddings: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    quality: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
    prompt_keys: np.ndarray | None = None,
    fields: dict[str, Sequence | np.ndarray] | None = None,
    seed: int = 0,
    vendi_sample: int = 2000,
    coverage_sample: int = 50000,
    near_tau: float = 0.95,
) -> dict[str, Any]:
    """Diagnostics of a selection next to a seeded random subset of the same size from the same candidates.

    Parameters
    ----------
    picks : ndarray of shape (b,), int
        The picked pool rows, distinct, in pick order.
    n : int
        Pool size.
    embeddings : ndarray of shape (n, d), float32, or None
        L2-normalised rows; None leaves Vendi, coverage, facility location and near duplicates null.
    labels : ndarray of shape (n,), int, or None
        Cluster ids (negative: no cluster); None leaves the cluster fields null.
    quality : ndarray of shape (n,), float, or None
        Quality scores (non-finite ones are left out of the quantiles); None leaves quality null.
    candidates : ndarray of int, or None
        The rows the method could pick (after dedup and decontamination); the random reference draws
        from them. None means all n rows.
    prompt_keys : ndarray of shape (n,), uint64, or None
        :func:`kmq.metrics.prompt_key` of each row's first prompt; None leaves exact duplicates null.
    fields : dict of str to sequence of shape (n,), or None
        Categorical fields to count (``{"source": [...], "category": [...]}``).
    seed : int, default=0
    vendi_sample : int, default=2000
        At most this many picks (a seeded sample) enter the Vendi score.
    coverage_sample : int, default=50000
        At most this many pool rows (a seeded sample) enter coverage and facility location; fewer for
        large selections (:func:`coverage_rows`). The number used is ``settings.coverage_rows``.
    near_tau : float, default=0.95
        Cosine above which two picks are near duplicates.

    Returns
    -------
    diagnostics : dict
        ``settings``, ``selected`` and ``random`` blocks, ``pool`` and ``seconds``, as in the manifest
        schema; each block also says which search ran (``coverage_search``, ``near_search``).
    """
    start = time.perf_counter()
    n = int(check_number(n, "n", _OWNER, low=0, kind=int))
    seed = int(check_number(seed, "seed", _OWNER, low=0, kind=int))
    vendi_sample = int(check_number(vendi_sample, "vendi_sample", _OWNER, low=1, kind=int))
    coverage_sample = int(check_number(coverage_sample, "coverage_sample", _OWNER, low=1, kind=int))
    near_tau = float(check_number(near_tau, "near_tau", _OWNER, low=-1.0, high=1.0, closed="[]"))
    picks = _check_rows(picks, n, "picks")
    candidates = np.arange(n, dtype=np.int64) if candidates is None else _check_rows(candidates, n, "candidates")
    X = None if embeddings is None else _check_array(embeddings, n, "embeddings", 2)
    labels = None if labels is None else _check_array(labels, n, "labels", 1, np.integer).astype(np.int64, copy=False)
    quality = None if quality is None else _check_array(quality, n, "quality", 1).astype(np.float64, copy=False)
    keys = None if prompt_keys is None else _check_array(prompt_keys, n, "prompt_keys", 1, np.integer)
    fields = {name: _check_field(values, n, name) for name, values in (fields or {}).items()}

    k = int(labels.max()) + 1 if labels is not None and labels.size and labels.max() >= 0 else None
    pool_mix = {name: mix_counts(values) for name, values in fields.items()}
    cov_rows = None if X is None else coverage_rows(n, len(picks), coverage_sample=coverage_sample, seed=seed)
    random_rows = np.random.default_rng([seed, STREAM_DIAGNOSTICS]).choice(
        candidates, size=min(len(picks), len(candidates)), replace=False
    )
    context = {
        "X": X, "labels": labels, "k": k, "quality": quality, "keys": keys, "fields": fields, "pool_mix": pool_mix,
        "cov_rows": cov_rows, "seed": seed, "vendi_sample": vendi_sample, "near_tau": near_tau,
    }  # fmt: skip
    return {
        "settings": {
            "seed": seed,
            "vendi_sample": vendi_sample,
            "coverage_sample": coverage_sample,
            "near_tau": near_tau,
            "metric": "cosine",
            "coverage_rows": 0 if cov_rows is None else len(cov_rows),
            "random_stream": f"numpy default_rng([{seed}, {STREAM_DIAGNOSTICS}])",
        },
        "selected": _block(picks, **context),
        "random": _block(random_rows, **context),
        "pool": {
            "n": n,
            "candidates": len(candidates),
            "quality": None if quality is None else quantiles(quality),
            "clusters": k,
            "mix": pool_mix,
        },
        "seconds": round(time.perf_counter() - start, 3),
    }


def coverage_rows(n: int, b: int, *, coverage_sample: int = 50000, seed: int = 0) -> np.ndarray:
    """The pool rows of the coverage sample, sorted: all rows, or a seeded sample (stream ``[seed, 7, 1]``).

    Its size is ``min(n, coverage_sample, max(MIN_COVERAGE_ROWS, COVERAGE_PAIRS // b))``, so the exact
    search of ``b`` picks stays within ``COVERAGE_PAIRS`` pairs (at 100,000 picks: 2,684 rows).

    Returns
    -------
    rows : ndarray of shape (m,), int64
    """
    size = min(n, coverage_sample, max(MIN_COVERAGE_ROWS, COVERAGE_PAIRS // max(1, b)))
    if size >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, STREAM_DIAGNOSTICS, _COVERAGE])
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def _block(
    rows: np.ndarray,
    *,
    X: np.ndarray | None,
    labels: np.ndarray | None,
    k: int | None,
    quality: np.ndarray | None,
    keys: np.ndarray | None,
    fields: dict[str, Sequence | np.ndarray],
    pool_mix: dict[str, dict[str, int]],
    cov_rows: np.ndarray | None,
    seed: int,
    vendi_sample: int,
    near_tau: float,
) -> dict[str, Any]:
    """One BLOCK of the schema for the pool rows ``rows``."""
    diversity = _diversity(rows, X, cov_rows, seed, vendi_sample, near_tau)
    balance = dict.fromkeys(("cluster_entropy", "cluster_entropy_max", "cluster_kl", "empty_clusters"))
    if labels is not None and k is not None:
        balance = cluster_balance(labels, rows, k)
    return {
        "n": len(rows),
        **{key: diversity[key] for key in ("vendi", "vendi_sample", "coverage_mean", "coverage_p95")},
        "facility_location": diversity["facility_location"],
        **balance,
        "quality": None if quality is None or not len(rows) else quantiles(quality[rows]),
        "duplicates_exact": None if keys is None else exact_duplicates(keys, rows),
        "duplicates_near": diversity["duplicates_near"],
        "mix": {name: mix_counts(values, rows, keys=list(pool_mix[name])) for name, values in fields.items()},
        "coverage_search": diversity["coverage_search"],  # beyond the schema: which search ran
        "near_search": diversity["near_search"],
    }


def _diversity(
    rows: np.ndarray, X: np.ndarray | None, cov_rows: np.ndarray | None, seed: int, vendi_sample: int, tau: float
) -> dict[str, Any]:
    """Vendi, coverage, facility location and near duplicates of ``rows`` (None without embeddings or rows)."""
    out: dict[str, Any] = {
        "vendi": None, "vendi_sample": 0, "coverage_mean": None, "coverage_p95": None, "facility_location": None,
        "duplicates_near": None, "coverage_search": None, "near_search": None,
    }  # fmt: skip
    if X is None or not len(rows):
        return out
    picked = np.ascontiguousarray(X[np.sort(rows)], dtype=np.float32)  # sorted: a gather in memory order
    sample = np.arange(len(picked))
    if len(picked) > vendi_sample:
        rng = np.random.default_rng([seed, STREAM_DIAGNOSTICS, _VENDI])
        sample = np.sort(rng.choice(len(picked), size=vendi_sample, replace=False))
    out["vendi"] = _finite(vendi_score(picked[sample]))
    out["vendi_sample"] = len(sample)
    index = PickIndex(picked, seed=seed)  # one structure for both searches
    similarity, out["coverage_search"] = index.search(X, rows=cov_rows, index="exact")
    out["coverage_mean"], out["coverage_p95"] = coverage_from_similarity(similarity)
    out["facility_location"] = float(np.mean(similarity, dtype=np.float64))
    index.release_exact()  # faiss's copy of the picks goes before the cell search groups its own
    nearest_other, out["near_search"] = index.search(picked, exclude_self=True)
    out["duplicates_near"] = int((nearest_other > tau).sum())
    return out


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _check_rows(rows: np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.asarray(rows)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise InvalidParameterError(
            f"The {name!r} parameter of {_OWNER} must be a 1-D int array of pool rows. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        bad = int(arr[(arr < 0) | (arr >= n)][0])
        raise InvalidParameterError(
            f"The {name!r} parameter of {_OWNER} must hold pool rows in [0, {n}). Got {bad} instead. "
            f"Pass row numbers of the pool (not ids)."
        )
    distinct = np.unique(arr)
    if distinct.size != arr.size:
        raise InvalidParameterError(
            f"The {name!r} parameter of {_OWNER} must not repeat a row. Got {arr.size - distinct.size} repeat(s)."
        )
    return arr


def _check_array(values: np.ndarray, n: int, name: str, ndim: int, kind: type = np.number) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != ndim or arr.shape[0] != n or not (np.issubdtype(arr.dtype, kind) or arr.size == 0):
        shape = f"({n}, d)" if ndim == 2 else f"({n},)"
        what = "an int" if kind is np.integer else "a numeric"
        raise InvalidParameterError(
            f"The {name!r} parameter of {_OWNER} must be {what} array of shape {shape}, one row per pool row. "
            f"Got shape {arr.shape} and dtype {arr.dtype} instead."
        )
    if ndim == 2:  # float16 rows stay float16 (searched in float32 chunks); else no copy when float32 and contiguous
        return arr if arr.dtype == np.float16 else np.ascontiguousarray(arr, dtype=np.float32)
    return arr


def _check_field(values: Sequence | np.ndarray, n: int, name: str) -> Sequence | np.ndarray:
    if len(values) != n:
        raise InvalidParameterError(
            f"The field {name!r} given to {_OWNER} has {len(values)} values but the pool has n={n}. "
            f"Pass one value per pool row (None where a row has none)."
        )
    return values
