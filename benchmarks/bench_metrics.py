"""Cost of the selection diagnostics (kmq.metrics.diagnostics) at 100k and 1M pool rows (issue 12).

Synthetic clustered vectors generated in-process: 1,000 centres on the unit sphere with Zipf-like
cluster sizes, each row a centre plus Gaussian noise (cosine to its centre about 0.7), L2-normalised,
float32, with 1% of the rows near copies of another row (cosine about 0.99). The "selected" picks take
the same number of rows from every cluster (equal allocation, as kmq does), so they differ from the
random reference the diagnostics draw. Quality is uniform, the prompt keys repeat (about 5% of rows
share a key), and a 12-valued ``source`` field is counted.

For every size: the wall time of one ``diagnostics(...)`` call with every input given, its peak RSS
(sampled every 10 ms, and above the RSS before the call), its CPU time (all threads) and the 1-minute
load average when it started (other processes on the machine slow the wall time), the search plans it
chose, and the wall times of its two searches for the selected block alone. ``--exact-check`` also
runs the exact search on the same rows and prints how far the cell search is from it; ``--ivfflat``
times faiss's ``IndexIVFFlat`` with the same cells for the near-duplicate search, for comparison.

    .venv/bin/python benchmarks/bench_metrics.py [--sizes 100000:10000,1000000:100000] [--d 384]
        [--exact-check] [--ivfflat]
"""

from __future__ import annotations

import argparse
import os
import platform
import threading
import time

import numpy as np


def synthetic(n: int, d: int, seed: int = 0, centres: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d) float32 unit rows, labels (n,) int64), generated in 65,536-row chunks."""
    rng = np.random.default_rng(seed)
    C = rng.standard_normal((centres, d), dtype=np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, centres + 1) ** 0.7
    labels = rng.choice(centres, size=n, p=weights / weights.sum()).astype(np.int64)
    X = np.empty((n, d), dtype=np.float32)
    for lo in range(0, n, 65536):
        part = C[labels[lo : lo + 65536]] + rng.standard_normal((len(labels[lo : lo + 65536]), d), np.float32) / d**0.5
        X[lo : lo + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    copies = rng.choice(n, size=n // 100, replace=False)
    noise = 0.1 * rng.standard_normal((len(copies), d), np.float32) / d**0.5
    X[copies] = X[rng.choice(n, size=len(copies))] + noise  # near copies of other rows
    X[copies] /= np.linalg.norm(X[copies], axis=1, keepdims=True)
    return X, labels


def equal_picks(labels: np.ndarray, b: int, seed: int = 1) -> np.ndarray:
    """About b rows, the same number from every cluster (fewer from clusters that are too small)."""
    rng = np.random.default_rng(seed)
    k = int(labels.max()) + 1
    order = rng.permutation(len(labels))
    ranked = order[np.argsort(labels[order], kind="stable")]
    starts = np.searchsorted(labels[ranked], np.arange(k))
    rank = np.arange(len(labels)) - np.repeat(starts, np.diff(np.append(starts, len(labels))))
    per = b // k
    picks = ranked[rank < per]
    rest = np.setdiff1d(np.arange(len(labels)), picks)
    return np.concatenate([picks, rng.choice(rest, size=b - len(picks), replace=False)])


class PeakRSS:
    """Samples this process's resident set size every 10 ms while active (bytes)."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu() -> str:
    model, flags = platform.processor() or "?", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = sorted(f for f in flags if f == "avx2" or f.startswith("avx512"))
    cores = len(os.sched_getaffinity(0))
    return f"{model}, {cores} cores, {' '.join(simd) or 'no avx2/avx512'}"


def run(n: int, b: int, d: int, exact_check: bool, ivfflat: bool) -> None:
    from kmq.metrics import coverage_rows, diagnostics
    from kmq.metrics._search import nearest_similarity

    t0 = time.perf_counter()
    X, labels = synthetic(n, d)
    rng = np.random.default_rng(2)
    quality = rng.random(n)
    keys = rng.integers(0, int(n * 0.95), n).astype(np.uint64)
    source = [f"src{i}" for i in rng.integers(0, 12, n)]
    picks = equal_picks(labels, b)
    gen_s = time.perf_counter() - t0
    inputs = {"picks": picks, "n": n, "embeddings": X, "labels": labels, "quality": quality, "prompt_keys": keys,
              "fields": {"source": source}}  # fmt: skip
    with PeakRSS() as mem:
        start, cpu_start, load = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        out = diagnostics(**inputs)
        wall, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    sel, ran = out["selected"], out["random"]
    rows = coverage_rows(n, b)  # the rows the diagnostics searched
    P = np.ascontiguousarray(X[np.sort(picks)])
    t = time.perf_counter()
    cov, plan = nearest_similarity(P, X, rows=rows, index="exact")
    cov_s = time.perf_counter() - t
    t = time.perf_counter()
    near, near_plan = nearest_similarity(P, P, exclude_self=True)
    near_s = time.perf_counter() - t
    print(
        f"| {n:,} | {d} | {b:,} | {out['settings']['coverage_rows']:,} | {wall:.1f} | {cpu_s:.1f} | {load:.1f} "
        f"| {cov_s:.1f} | {near_s:.1f} "
        f"| {mem.peak / 2**30:.2f} | {(mem.peak - mem.start) / 2**30:.2f} | `{plan}` / `{near_plan}` "
        f"| {sel['vendi']:.0f} vs {ran['vendi']:.0f} | {sel['coverage_mean']:.4f} vs {ran['coverage_mean']:.4f} "
        f"| {sel['cluster_kl']:.4f} vs {ran['cluster_kl']:.4f} "
        f"| {sel['duplicates_near']:,} vs {ran['duplicates_near']:,} |"
    )  # fmt: skip
    print(f"  (inputs generated in {gen_s:.1f} s; diagnostics' own 'seconds': {out['seconds']})")
    if exact_check:  # the cell search against the exact one: coverage on 50,000 rows, near duplicates
        big = coverage_rows(n, 1, coverage_sample=50_000)
        R = np.ascontiguousarray(X[np.sort(np.random.default_rng([0, 7]).choice(n, size=b, replace=False))])
        for label, base in (("selected", P), ("random", R)):
            t = time.perf_counter()
            cells, cov_plan = nearest_similarity(base, X, rows=big, index="auto")
            cells_s, t = time.perf_counter() - t, time.perf_counter()
            exact, _ = nearest_similarity(base, X, rows=big, index="exact")
            exact_s = time.perf_counter() - t
            miss = exact - cells
            print(
                f"  {label}: coverage mean on {len(big):,} rows: exact {np.mean(1 - exact.astype(np.float64)):.5f} "
                f"({exact_s:.1f} s), cells `{cov_plan}` {np.mean(1 - cells.astype(np.float64)):.5f} ({cells_s:.1f} s; "
                f"{(miss > 1e-5).mean():.2%} of rows lower, max shortfall {miss.max():.3f})"
            )
        t = time.perf_counter()
        exact, _ = nearest_similarity(P, P, exclude_self=True, index="exact")
        print(
            f"  near duplicates, selected: exact search {time.perf_counter() - t:.1f} s; `{near_plan}` found a lower "
            f"maximum for {(exact - near > 1e-5).mean():.2%} of picks; flags above 0.95 changed: "
            f"{int(((exact > 0.95) != (near > 0.95)).sum())} of {int((exact > 0.95).sum())}"
        )
    if ivfflat:
        import faiss

        nlist = int(near_plan.split("nlist=")[1].split(",")[0]) if near_plan.startswith("ivf") else 316
        t = time.perf_counter()
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.max_points_per_centroid, ivf.cp.niter, ivf.nprobe = 64, 10, 8
        ivf.train(P)
        ivf.add(P)
        build = time.perf_counter() - t
        t = time.perf_counter()
        ivf.search(P, 2)
        print(f"  faiss IndexIVFFlat nlist={nlist}, nprobe=8, same near search: build {build:.1f} s, "
              f"search {time.perf_counter() - t:.1f} s (cell search above: {near_s:.1f} s)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="100000:10000,1000000:100000", help="comma-separated n:b pairs")
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--exact-check", action="store_true")
    ap.add_argument("--ivfflat", action="store_true")
    args = ap.parse_args()
    print(f"CPU: {cpu()}\n")
    print(
        "| n | d | picks | coverage rows | diagnostics wall (s) | CPU (s) | load avg | coverage search, selected (s) "
        "| near search, selected (s) | peak RSS (GiB) | above inputs (GiB) | plans (coverage / near) "
        "| Vendi sel vs random | coverage sel vs random | cluster KL sel vs random | near dups sel vs random |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|---|")  # fmt: skip
    for size in args.sizes.split(","):
        n, b = (int(x) for x in size.split(":"))
        run(n, b, args.d, args.exact_check, args.ivfflat)


if __name__ == "__main__":
    main()
