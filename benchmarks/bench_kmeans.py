"""kmq's k-means backends, numpy (BLAS matrix product + argmax, seeded Lloyd loop) against faiss (issue 15).

Alternated in one process on the same data and centroids:

- ``assign``: assigning every row to its nearest centroid, faiss ``IndexFlatIP.search(k=1)`` against
  numpy's fixed-block ``X @ C.T`` + argmax (:func:`kmq.cluster._lloyd.assign_blocks`): seconds, GFLOP/s,
  labels that differ (and how many of those are ties to float32 rounding);
- ``fit``: ``KMeans(backend=...)`` on a seeded sample of ``256 * k`` rows then every row: training and
  assignment seconds, the mean cosine of every row to its centroid;
- ``seeds``: the mean cosine of both backends over several seeds on a real pool (the 12 datakit training
  pools, 60,885 records, hashing embedder at d = 384).

Synthetic pools: ``n`` unit rows around ``4 * k`` random centres (d = 384).

    .venv/bin/python benchmarks/bench_kmeans.py [--sizes 100000:256,1000000:1000] [--reps 2] [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _datakit import TRAINING_POOLS, mixed_pool


def synthetic(n: int, k: int, d: int = 384, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4 * k, d), dtype=np.float32)
    X = np.empty((n, d), np.float32)
    for lo in range(0, n, 65536):
        m = min(65536, n - lo)
        X[lo : lo + m] = centres[rng.integers(4 * k, size=m)] + 1.5 * rng.standard_normal((m, d), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def bench_assign(X: np.ndarray, C: np.ndarray, reps: int) -> None:
    from kmq.cluster import assign_chunk

    gflop = 2 * X.shape[0] * C.shape[0] * X.shape[1] / 1e9
    times: dict[str, list[float]] = {"faiss": [], "numpy": []}
    out = {}
    for _ in range(reps):
        for backend in ("faiss", "numpy"):
            t = time.perf_counter()
            out[backend] = [
                assign_chunk(X[lo : lo + 65536], C, backend=backend) for lo in range(0, len(X), 65536)
            ]  # the chunks KMeans uses
            times[backend].append(time.perf_counter() - t)
    lf = np.concatenate([p[0] for p in out["faiss"]])
    ln, sn = (np.concatenate([p[i] for p in out["numpy"]]) for i in (0, 1))
    differ = np.flatnonzero(lf != ln)
    S = X[differ] @ C.T  # float32 similarity to both candidates: a tie to rounding differs by ~1e-7
    gap = np.abs(S[np.arange(differ.size), lf[differ]] - S[np.arange(differ.size), ln[differ]])
    tf, tn = min(times["faiss"]), min(times["numpy"])
    print(
        f"  assign n={len(X)} k={len(C)}: faiss {tf:.2f} s ({gflop / tf:.0f} GFLOP/s), numpy {tn:.2f} s "
        f"({gflop / tn:.0f} GFLOP/s), faiss/numpy {tf / tn:.2f}x; labels differ {differ.size} "
        f"(max similarity gap {gap.max() if gap.size else 0:.1e}); mean similarity {float(sn.mean()):.6f}",
        flush=True,
    )


def bench_fit(X: np.ndarray, k: int, reps: int) -> np.ndarray:
    from kmq.cluster import KMeans

    rows = {"faiss": [], "numpy": []}
    for _ in range(reps):
        for backend in ("faiss", "numpy"):
            t, cpu = time.perf_counter(), time.process_time()
            km = KMeans(k, random_state=0, backend=backend).fit(X)
            wall, cpu = time.perf_counter() - t, time.process_time() - cpu
            rows[backend].append((wall, km.stats_["fit_seconds"], km.stats_["assign_seconds"], km, cpu))
            print(f"    {backend:5s} {wall:.2f} s wall, {cpu:.2f} s CPU, load {os.getloadavg()[0]:.1f}", flush=True)
    for backend, runs in rows.items():
        wall, fit_s, assign_s, km, cpu = min(runs, key=lambda r: r[0])
        print(
            f"  fit {backend:5s} n={len(X)} k={k} (train {km.stats_['n_train']}): {wall:.2f} s ({cpu:.2f} s CPU) "
            f"(train {fit_s:.2f} + assign {assign_s:.2f}), mean cosine {km.stats_['objective_mean_cosine']:.5f}, "
            f"empty splits {km.stats_['empty_splits']}",
            flush=True,
        )
    ratio = min(r[0] for r in rows["faiss"]) / min(r[0] for r in rows["numpy"])
    print(f"  fit faiss/numpy {ratio:.2f}x", flush=True)
    return rows["numpy"][0][3].centroids_


def real_pool(d: int = 384) -> np.ndarray:
    from kmq.embed.hashing import HashingEmbedder

    """The mixed datakit pool's messages (user and assistant text joined), hashed to d dimensions (float32)."""
    with open(mixed_pool(Path(tempfile.mkdtemp(prefix="kmq-bench-kmeans-")))) as f:
        texts = [" ".join(str(m.get("content", "")) for m in json.loads(line)["messages"]) for line in f]
    return np.ascontiguousarray(HashingEmbedder(d).embed_batch(texts), dtype=np.float32)


def bench_seeds(seeds: int, k: int) -> None:
    from kmq.cluster import KMeans

    X = real_pool()
    X /= np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    print(f"  real pool: {len(TRAINING_POOLS)} datakit pools, n={len(X)}, d={X.shape[1]}, k={k}", flush=True)
    res: dict[str, list[float]] = {"faiss": [], "numpy": []}
    for seed in range(seeds):
        for backend in ("faiss", "numpy"):
            t = time.perf_counter()
            km = KMeans(k, random_state=seed, backend=backend).fit(X)
            res[backend].append(km.stats_["objective_mean_cosine"])
            took = time.perf_counter() - t
            print(f"    seed {seed} {backend:5s}: mean cosine {res[backend][-1]:.5f} ({took:.2f} s)", flush=True)
    for backend, vals in res.items():
        print(f"  {backend:5s}: mean cosine {np.mean(vals):.5f} +- {np.std(vals):.5f} over {seeds} seeds", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000:256,1000000:1000", help="n:k pairs")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=5, help="seeds on the real pool (0: skip)")
    ap.add_argument("--real-k", type=int, default=174, help="k on the real pool (kmq's default for 60,885 rows)")
    args = ap.parse_args()
    from threadpoolctl import threadpool_info

    print("BLAS:", [(i["internal_api"], i.get("version"), i.get("architecture"), i["num_threads"]) for i in
                    threadpool_info() if i["user_api"] == "blas"])  # fmt: skip
    for pair in args.sizes.split(","):
        n, k = (int(v) for v in pair.split(":"))
        X = synthetic(n, k)
        print(f"n={n} k={k} d={X.shape[1]}", flush=True)
        C = bench_fit(X, k, args.reps)
        bench_assign(X, C, args.reps)
        del X
    if args.seeds:
        bench_seeds(args.seeds, args.real_k)


if __name__ == "__main__":
    main()
