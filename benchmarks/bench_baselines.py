"""Speed and quality of the baseline selectors (k-center, Deita, QDIT) against naive references.

Three parts, each printing a markdown table with ratios against a baseline run in the same process:

1. ``small`` (n = 2,000, b = 200): exact QDIT and k-center against the naive references of the tests
   (plain numpy on a dense n×n matrix, straightforward loops) and, for QDIT, against the authors'
   approach (F(S ∪ {x}) recomputed from scratch for every candidate; one step timed, times b).
2. ``medium``: QDIT sparse and stochastic against exact lazy greedy at n = 20,000, b = 2,000 (objective
   ratio, both scored with the exact objective, and speed ratio); k-center approx against exact at
   n = 100,000, b = 5,000 (radius ratio and speed ratio).
3. ``--large``: n = 1,000,000 synthetic clustered embeddings (d = 384, float32), b = 100,000. Every method
   runs in its own subprocess; the table gives wall time (loading excluded) and peak RSS (``ru_maxrss``,
   which counts faiss and BLAS buffers, unlike tracemalloc).

The synthetic pool: 1,000 clusters with Zipf-like sizes; a row is its cluster's unit center plus a
16-dimensional within-cluster component and isotropic noise, L2-normalised (same-cluster cosine about
0.59, other-cluster about 0); quality is a per-cluster offset plus noise.

Run from the repository root (results in BENCHMARKS.md)::

    .venv/bin/python benchmarks/bench_baselines.py                      # small + medium, ~10 min on 2 cores
    .venv/bin/python benchmarks/bench_baselines.py --large --skip-small --skip-medium
    .venv/bin/python benchmarks/bench_baselines.py --large --methods kcenter-approx,qdit  # some of them
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kmq.methods._arrays import zscore
from kmq.methods.kcenter import kcenter_greedy
from kmq.methods.qdit import qdit_greedy, qdit_objective

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # naive_references: shared with the tests

LARGE_METHODS = {  # name -> (registered method, params[, budget instead of --budget])
    "kcenter-approx": ("kcenter", {"mode": "approx"}),
    "kcenter-exact": ("kcenter", {"mode": "exact"}),
    "kcenter-exact-5k": ("kcenter", {"mode": "exact"}, 5_000),  # to project the exact cost: ~linear in b
    "deita": ("deita", {"fill": True}),
    "qdit": ("qdit", {}),
    "qdit-stochastic": ("qdit", {"mode": "stochastic"}),
    "kmq": ("kmq", {}),
    "top-quality": ("top-quality", {}),
}


def clustered_pool(
    n: int, d: int = 384, n_clusters: int = 1000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic clustered unit vectors (n, d) float32, their cluster labels (n,) and a quality score (n,)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, n_clusters + 1) ** 0.7
    labels = rng.choice(n_clusters, size=n, p=weights / weights.sum())
    X = np.empty((n, d), np.float32)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=n_clusters))])
    for j in range(n_clusters):
        rows = order[starts[j] : starts[j + 1]]
        basis = rng.standard_normal((16, d)).astype(np.float32) / np.sqrt(16 * d)
        x = centers[j] + 0.8 * (rng.standard_normal((rows.size, 16)).astype(np.float32) @ basis)
        x += 0.3 * rng.standard_normal((rows.size, d)).astype(np.float32) / np.sqrt(d)
        X[rows] = x / np.linalg.norm(x, axis=1, keepdims=True)
    quality = rng.normal(size=n_clusters)[labels] * 0.5 + rng.normal(size=n)
    return X, labels.astype(np.int64), quality


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


# ----------------------------------------------------------------------------- references
def scratch_qdit_step(X: np.ndarray, quality: np.ndarray, picked: list[int], alpha: float, budget: int) -> int:
    """One step of the authors' approach: F(S ∪ {x}) from scratch for every candidate x."""
    S = np.maximum(X.astype(np.float64) @ X.astype(np.float64).T, 0.0)
    z = zscore(quality)
    best, best_val = -1, -np.inf
    for x in range(len(X)):
        if x in picked:
            continue
        cand = picked + [x]
        val = (1 - alpha) * S[:, cand].max(axis=1).sum() / len(X) + alpha * z[cand].sum() / budget
        if val > best_val:
            best, best_val = x, val
    return best


# ----------------------------------------------------------------------------- parts
def paired_medians(repeats: int, fast, slow):
    """Outputs and median wall seconds of two zero-argument functions, timed alternately ``repeats`` times.

    One untimed warm-up call of each first (BLAS threads, first-touch pages). Alternating puts both under
    the same drifts of a shared machine's speed.
    """
    out_fast, out_slow = fast(), slow()
    t_fast, t_slow = [], []
    for _ in range(repeats):
        out_fast, t = timed(fast)
        t_fast.append(t)
        out_slow, t = timed(slow)
        t_slow.append(t)
    return out_fast, float(np.median(t_fast)), out_slow, float(np.median(t_slow))


def bench_small(repeats: int) -> None:
    from naive_references import naive_kcenter, naive_qdit

    n, b = 2000, 200
    X, _, quality = clustered_pool(n, n_clusters=20)
    print(f"\n### Exact methods against naive references (n = {n:,}, b = {b}, d = 384)\n")
    print(f"Median of {repeats} timed runs of each, ours and the reference alternating, after one warm-up run.\n")
    print("| method | ours (s) | reference | reference (s) | speed-up | same selection |")
    print("|---|---:|---|---:|---:|---|")
    (ours, _, _), t_ours, ref, t_ref = paired_medians(
        repeats, lambda: qdit_greedy(X, quality, b, mode="exact"), lambda: naive_qdit(X, quality, b, 0.5)
    )
    print(
        f"| qdit exact | {t_ours:.3f} | naive greedy loop | {t_ref:.2f} | {t_ref / t_ours:.0f}x "
        f"| {ours.tolist() == ref} |"
    )
    _, t_step = timed(scratch_qdit_step, X, quality, ref[: b // 2], 0.5, b)  # a mid-run step
    t_scratch = t_step * b
    print(
        f"| qdit exact | {t_ours:.3f} | from scratch per candidate (1 step timed x {b}) | {t_scratch:.0f} "
        f"| {t_scratch / t_ours:.0f}x | n/a |"
    )
    first = int(kcenter_greedy(X, b)[0][0])
    (ours, _, _), t_ours, ref, t_ref = paired_medians(
        repeats, lambda: kcenter_greedy(X, b), lambda: naive_kcenter(X, b, first)[0]
    )
    print(
        f"| kcenter exact | {t_ours:.3f} | dense n×n matrix + loop | {t_ref:.3f} | {t_ref / t_ours:.1f}x "
        f"| {ours.tolist() == ref} |"
    )


def bench_medium() -> None:
    n, b = 20_000, 2_000
    X, _, quality = clustered_pool(n, n_clusters=20)
    z = zscore(quality)
    print(f"\n### QDIT approximate modes against exact lazy greedy (n = {n:,}, b = {b:,})\n")
    print("| mode | time (s) | speed-up | exact objective | objective ratio | coverage | mean z | evals/pick |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base, ranges = None, None
    for mode in ("exact", "sparse", "stochastic"):
        (idx, _, stats), t = timed(qdit_greedy, X, quality, b, mode=mode, random_state=0)
        ranges = ranges or stats  # every mode is scored under the exact run's objective (its term ranges)
        obj = qdit_objective(X, z, idx, 0.5, ranges=ranges)
        base = base or (t, obj["objective"])
        print(
            f"| {mode} | {t:.1f} | {base[0] / t:.1f}x | {obj['objective']:.4f} | {obj['objective'] / base[1]:.4f} "
            f"| {obj['coverage']:.4f} | {obj['quality']:.3f} | {stats['evaluations_per_pick']:.1f} |"
        )
    n, b = 100_000, 5_000
    X, _, _ = clustered_pool(n)
    print(f"\n### k-center approximate mode against exact (n = {n:,}, b = {b:,})\n")
    print("| mode | time (s) | speed-up | true radius | radius ratio | mean distance to nearest center |")
    print("|---|---:|---:|---:|---:|---:|")
    base = None
    for mode, probes in (("exact", 32), ("approx", 32), ("approx", 8)):
        (idx, _, _), t = timed(kcenter_greedy, X, b, mode=mode, probes=probes)
        dist = np.concatenate([1 - (X[s : s + 10_000] @ X[idx].T).max(axis=1) for s in range(0, n, 10_000)])
        base = base or (t, float(dist.max()))
        label = mode if mode == "exact" else f"approx, probes={probes}"
        print(
            f"| {label} | {t:.1f} | {base[0] / t:.1f}x | {dist.max():.4f} | {dist.max() / base[1]:.3f} "
            f"| {dist.mean():.4f} |"
        )


def bench_large(args) -> None:
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    paths = {k: data / f"pool_1m_{k}.npy" for k in ("X", "labels", "quality")}
    if not all(p.exists() for p in paths.values()):
        (X, labels, quality), t = timed(clustered_pool, 1_000_000)
        for key, arr in zip(("X", "labels", "quality"), (X, labels, quality), strict=True):
            np.save(paths[key], arr)
        print(f"(generated the 1M pool in {t:.0f} s)", file=sys.stderr)
        del X
    print("\n### n = 1,000,000, d = 384, b = 100,000 (one subprocess per method)\n")
    print("| method | budget | params | wall (s) | CPU (s) | peak RSS (GiB) | stats |")
    print("|---|---:|---|---:|---:|---:|---|")
    for name in args.methods.split(","):
        cmd = [sys.executable, __file__, "--worker", name, "--data-dir", str(data), "--budget", str(args.budget)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"| {name} | | | failed | | | {proc.stderr.strip().splitlines()[-1:]} |")
            continue
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"| {name} | {res['budget']:,} | {res['params']} | {res['wall_s']:.0f} | {res['cpu_s']:.0f} "
            f"| {res['maxrss_gib']:.2f} | {res['stats']} |",
            flush=True,
        )


def worker(args) -> None:
    """Run one method on the saved pool and print one JSON line (wall time excludes loading)."""
    from kmq.methods.registry import get_method

    data = Path(args.data_dir)
    X = np.load(data / "pool_1m_X.npy")
    labels = np.load(data / "pool_1m_labels.npy")
    quality = np.load(data / "pool_1m_quality.npy")
    name, params, *budget = LARGE_METHODS[args.worker]
    budget = budget[0] if budget else args.budget
    method = get_method(name)
    inputs = {"embeddings": X, "labels": labels, "quality": quality}
    kwargs = {key: inputs[key] for key in method.needs}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    picked, wall = timed(method.fn, n=len(X), budget=budget, random_state=np.random.default_rng(0), **kwargs, **params)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    assert picked.indices.size == budget and np.unique(picked.indices).size == budget
    keep = (
        "radius",
        "admitted",
        "rejected",
        "filled",
        "objective",
        "coverage",
        "quality",
        "evaluations_per_pick",
        "mean_candidates",
        "scan_fraction",
        "checks_per_pick",
    )
    stats = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in picked.stats.items() if k in keep}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    out = {"budget": budget, "params": params, "wall_s": wall, "cpu_s": cpu, "maxrss_gib": rss, "stats": stats}
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also run n = 1M, b = 100k (long)")
    parser.add_argument("--skip-small", action="store_true")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per function in the small part (median)")
    parser.add_argument("--skip-medium", action="store_true")
    parser.add_argument(
        "--methods",
        default="top-quality,kmq,deita,qdit,qdit-stochastic,kcenter-approx,kcenter-exact-5k",
        help=f"comma-separated, from {sorted(LARGE_METHODS)} (kcenter-exact takes hours)",
    )
    parser.add_argument("--budget", type=int, default=100_000)
    parser.add_argument("--data-dir", default="/tmp/kmq-baselines")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    print(f"(load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    if not args.skip_small:
        bench_small(args.repeats)
    if not args.skip_medium:
        bench_medium()
    if args.large:
        bench_large(args)
    print(f"\n(load average after: {os.getloadavg()[0]:.1f})")
    return None


if __name__ == "__main__":
    main()
