"""QDIT exact mode with and without its n×n similarity cache, alternated in one process (issue 15).

Pools of ``n`` rows drawn (seeded) from the 12 datakit training pools (60,885 records, hashing embedder at
d = 384), standard-normal quality (seeded), ``qdit_greedy(mode="exact")`` at the default alpha = 0.5 (so
the facility-location calibration runs too). ``cache_max_n`` forces each path: cached (n×n float32 kept,
4·n² bytes) or uncached (every gain evaluation recomputes its rows). Prints seconds, the ratio, the picks
both share and the objectives.

    .venv/bin/python benchmarks/bench_qdit_cache.py [--sizes 12000,20000] [--budget 100] [--reps 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench_kmeans import real_pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="12000,20000")
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    from kmq.methods.qdit import CACHE_MAX_N, qdit_greedy

    pool = real_pool()
    pool /= np.maximum(np.linalg.norm(pool, axis=1, keepdims=True), 1e-12)
    print(f"real pool n={len(pool)} d={pool.shape[1]}; CACHE_MAX_N={CACHE_MAX_N}", flush=True)
    for n in (int(v) for v in args.sizes.split(",")):
        rng = np.random.default_rng(n)
        X = np.ascontiguousarray(pool[np.sort(rng.choice(len(pool), n, replace=False))])
        quality = rng.standard_normal(n)
        times: dict[str, list[float]] = {"cached": [], "uncached": []}
        out = {}
        for _ in range(args.reps):
            for name, limit in (("cached", n), ("uncached", n - 1)):
                t = time.perf_counter()
                out[name] = qdit_greedy(X, quality, args.budget, mode="exact", cache_max_n=limit)
                times[name].append(time.perf_counter() - t)
                print(f"  n={n} {name:8s}: {times[name][-1]:.1f} s", flush=True)
        (ic, _, sc), (iu, _, su) = out["cached"], out["uncached"]
        tc, tu = min(times["cached"]), min(times["uncached"])
        print(
            f"n={n} b={args.budget}: cached {tc:.1f} s, uncached {tu:.1f} s, uncached/cached {tu / tc:.1f}x; "
            f"picks shared {np.intersect1d(ic, iu).size}/{args.budget} (same order: {ic.tolist() == iu.tolist()}); "
            f"objective {sc['objective']:.6f} vs {su['objective']:.6f}; evaluations/pick "
            f"{sc['evaluations_per_pick']:.1f} vs {su['evaluations_per_pick']:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
