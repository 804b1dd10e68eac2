"""k-means' row assignment on Ray tasks against the local loop (``--engine ray``'s distributed assignment).

Synthetic unit rows (``--n`` x ``--dim``, float32 or float16) and ``--k`` unit centroids; the local engine's loop
and Ray tasks with 1 and 2 actors (0.5 CPU each) assign the same ``--chunk``-row chunks with the same kernel
(:func:`kmq.cluster.assign_chunk`), alternated round by round; a Ray time includes putting every chunk into the
object store and the tasks' start. Starting Ray itself happens once per process and is reported apart. The
labels and similarities are checked equal to the local ones, to the bit.

Ray binds the host's interface address, so the benchmark re-runs itself inside a private network namespace
whose only interface is loopback (``unshare --net``, as root) unless it already is in one.

    .venv/bin/python benchmarks/bench_engine_assign.py                      # 200k x 384, k = 1,000, 2 rounds
    .venv/bin/python benchmarks/bench_engine_assign.py --n 1000000 --dtype float16 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_engine import only_loopback  # noqa: E402


def unit_rows(n: int, d: int, dtype: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = np.empty((n, d), dtype=dtype)
    for lo in range(0, n, 65_536):
        part = rng.standard_normal((min(65_536, n - lo), d), dtype=np.float32)
        X[lo : lo + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return X


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--k", type=int, default=1_000)
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    ap.add_argument("--chunk", type=int, default=65_536)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    if not only_loopback():
        cmd = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable, *sys.argv]
        sys.exit(subprocess.run(cmd, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}).returncode)

    from kmq.engine import LocalEngine
    from kmq.engine.arrays import assign_rows
    from kmq.engine.ray import RayEngine

    X = unit_rows(args.n, args.dim, args.dtype, 0)
    C = unit_rows(args.k, args.dim, "float32", 1)
    t0 = time.perf_counter()
    RayEngine().start()
    print(f"ray start {time.perf_counter() - t0:.1f} s; n={args.n} d={args.dim} k={args.k} {args.dtype} "
          f"chunk={args.chunk}; load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    engines = {"local": LocalEngine(), "ray-1": RayEngine(actors=1), "ray-2": RayEngine(actors=2)}
    times: dict[str, list[float]] = {name: [] for name in engines}
    ref = None
    for r in range(args.rounds):
        order = list(engines) if r % 2 == 0 else list(engines)[::-1]
        for name in order:
            t = time.perf_counter()
            labels, sims = assign_rows(engines[name], X, C, args.chunk)
            times[name].append(time.perf_counter() - t)
            if ref is None and name == "local":
                ref = (labels, sims)
            same = ref is None or (np.array_equal(ref[0], labels) and np.array_equal(ref[1], sims))
            print(f"round {r + 1} {name:6s} {times[name][-1]:7.2f} s  same as local: {same}  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            if not same:
                sys.exit(f"{name} differs from the local assignment")
    base = float(np.median(times["local"]))
    results = {name: {"median_s": round(float(np.median(t)), 3), "vs_local": round(float(np.median(t)) / base, 2)}
               for name, t in times.items()}  # fmt: skip
    print(json.dumps(results))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
