"""kmq vs random vs kmeans-random vs qdit vs kcenter on the mixed datakit pool: the diagnostics table (issue 12).

Every run goes through the public API, ``kmq.select(pool, budget=..., method=..., embedder=..., seed=...)``,
with its own cache folder (``--cache``; the vectors, clusters and quality scores are computed by the first run
and read back by the others). The numbers are each run's ``manifest["diagnostics"]["selected"]`` block, mean
and sample standard deviation (ddof 1) over the seeds, with three fill-ins where a method's run did not compute
an input (its manifest has null there), all computed by :func:`kmq.metrics.diagnostics` on the picks:

- ``random`` runs embed nothing and score nothing: its row is the ``random`` reference block of the kmq run with
  the same seed (a seeded uniform subset of the same size from the same deduplicated candidates).
- ``qdit`` and ``kcenter`` do not cluster: their cluster entropy, KL and empty clusters use the kmq run's
  k-means labels (same seed, same k).
- ``kmeans-random`` and ``kcenter`` do not score: their quality is the kmq run's heuristic quality of their picks.

Time per method: the median over seeds of the ``select`` stage (the method itself) and of the whole
``kmq.select`` call on a warm cache (reading the pool, cache look-ups, method, diagnostics, map); each seed
first runs kmq once untimed so its k-means is cached before the timed calls.

    nice -n 10 .venv/bin/python benchmarks/bench_methods_table.py [--embedder hashing] [--slice 0] [--budget 1000]
        [--seeds 0,1,2] [--methods kmq,random,kmeans-random,qdit,kcenter] [--cache /tmp/kmq-methods-table]

``--slice N`` takes a seeded sample (``default_rng(0)``, pool order kept) of N of the 60,885 records instead of
all of them. Prints the markdown tables; ``--json PATH`` also writes every run's diagnostics.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _datakit import mixed_pool  # noqa: E402

METHODS = ("kmq", "random", "kmeans-random", "qdit", "kcenter")
#: (column, key in a diagnostics block, digits)
DIVERSITY = (
    ("Vendi", "vendi", 1),
    ("coverage mean", "coverage_mean", 4),
    ("coverage p95", "coverage_p95", 4),
    ("facility location", "facility_location", 4),
)
BALANCE = (
    ("cluster KL (nats)", "cluster_kl", 3),
    ("cluster entropy", "cluster_entropy", 3),
    ("empty clusters", "empty_clusters", 1),
    ("exact dups", "duplicates_exact", 1),
    ("near dups", "duplicates_near", 1),
    ("quality mean", "quality_mean", 3),
    ("source entropy", "source_entropy", 3),
)
CLUSTER_KEYS = ("cluster_entropy", "cluster_entropy_max", "cluster_kl", "empty_clusters")


def cpu() -> str:
    """``lscpu``'s model name, core count and the AVX2 / AVX-512 flags."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    model = re.search(r"Model name:\s*(.+)", text)
    flags = re.search(r"Flags:\s*(.+)", text)
    simd = sorted({f for f in (flags.group(1).split() if flags else []) if f == "avx2" or f.startswith("avx512")})
    return f"{model.group(1).strip() if model else 'unknown'}, {os.cpu_count()} CPUs, flags: {' '.join(simd) or '-'}"


def pool_file(folder: Path, size: int) -> Path:
    """The mixed pool, or a seeded slice of ``size`` of its records in pool order."""
    full = mixed_pool(folder)
    if not size:
        return full
    out = folder / f"mixed_slice{size}.jsonl"
    if not out.exists():
        lines = full.read_bytes().splitlines()
        rows = np.sort(np.random.default_rng(0).choice(len(lines), size=size, replace=False))
        out.write_bytes(b"\n".join(lines[i] for i in rows) + b"\n")
    return out


def entropy(counts: dict[str, int] | None) -> float | None:
    """Shannon entropy (nats) of a ``{value: count}`` mix."""
    if not counts:
        return None
    c = np.asarray(list(counts.values()), dtype=np.float64)
    p = c[c > 0] / c.sum()
    return float(-(p * np.log(p)).sum())


def flat(block: dict) -> dict:
    """The table's numbers from a diagnostics block."""
    out = {key: block.get(key) for _, key, _ in DIVERSITY + BALANCE}
    out["cluster_entropy_max"] = block.get("cluster_entropy_max")
    out["quality_mean"] = (block.get("quality") or {}).get("mean")
    out["source_entropy"] = entropy((block.get("mix") or {}).get("source"))
    return out


def fill_in(sel, kmq_sel, seed: int) -> tuple[dict, list[str]]:
    """Cluster balance and quality of ``sel``'s picks under the kmq run's labels and quality (same seed)."""
    from kmq.metrics import diagnostics

    info = kmq_sel.pool_info
    extra = diagnostics(picks=sel.indices, n=len(sel.pool), labels=info.get("labels"), quality=info.get("quality"),
                        seed=seed)["selected"]  # fmt: skip
    return extra, [k for k in (*CLUSTER_KEYS, "quality") if extra.get(k) is not None]


def run(pool: Path, method: str, args, seed: int):
    import kmq

    start = time.perf_counter()
    sel = kmq.select(str(pool), budget=args.budget, method=method, embedder=args.embedder, seed=seed,
                     show_progress=False)  # fmt: skip
    return sel, time.perf_counter() - start


def measure(pool: Path, args) -> dict:
    """Every (seed, method) run: its numbers, where each came from, and its times."""
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",")
    results: dict = {"runs": [], "cold": None}
    for seed in seeds:
        warm, wall = run(pool, "kmq", args, seed)  # untimed: computes and caches this seed's clusters
        if results["cold"] is None:
            results["cold"] = {"seed": seed, "wall_s": wall, "stages": warm.manifest["stages"]}
            results["pool"] = warm.manifest["diagnostics"]["pool"]
            results["k"] = warm.manifest["stages"]["cluster"].get("n_clusters")
        print(f"seed {seed}: warm-up kmq run {wall:.1f} s", file=sys.stderr, flush=True)
        for method in methods:
            sel, wall = run(pool, method, args, seed)
            diag = sel.manifest["diagnostics"]
            row = {"seed": seed, "method": method, "wall_s": wall,
                   "select_s": sel.manifest["stages"]["select"]["seconds"],
                   "diagnostics_s": diag["seconds"], "source": "manifest"}  # fmt: skip
            if method == "random":
                row["own"] = flat(diag["selected"])  # the random run itself: duplicates and mix only
                row["numbers"] = flat(warm.manifest["diagnostics"]["random"])
                row["source"] = "random block of the kmq run, same seed"
            else:
                block = dict(diag["selected"])
                extra, keys = fill_in(sel, warm, seed)
                filled = [k for k in keys if block.get(k) is None]
                for key in filled:
                    block[key] = extra[key]
                row["numbers"] = flat(block)
                if filled:
                    row["source"] = f"manifest; {', '.join(filled)} from the kmq run's labels/quality"
            results["runs"].append(row)
            if args.json:  # after every run, so an interrupted benchmark still leaves its numbers
                Path(args.json).write_text(json.dumps(results, indent=1, default=str))
            print(f"seed {seed} {method}: {wall:.1f} s ({row['source']})", file=sys.stderr, flush=True)
    results["random_reference"] = "kmq runs' diagnostics['random'] blocks"
    return results


def mean_std(values: list) -> tuple[float, float] | None:
    vals = [v for v in values if v is not None]
    if not vals:
        return None
    arr = np.asarray(vals, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def cell(values: list, digits: int) -> str:
    ms = mean_std(values)
    if ms is None:
        return "n/a"
    m, s = ms
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def table(results: dict, columns, methods: list[str], best) -> str:
    head = "| method | " + " | ".join(c for c, _, _ in columns) + " |"
    lines = [head, "|---|" + "---:|" * len(columns)]
    cells = {m: {key: [r["numbers"][key] for r in results["runs"] if r["method"] == m] for _, key, _ in columns}
             for m in methods}  # fmt: skip
    for m in methods:
        row = []
        for _, key, digits in columns:
            text = cell(cells[m][key], digits)
            means = {o: (mean_std(cells[o][key]) or (math.nan,))[0] for o in methods}
            if key in best and not math.isnan(means[m]):
                want = best[key](v for v in means.values() if not math.isnan(v))
                text = f"**{text}**" if means[m] == want else text
            row.append(text)
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def times(results: dict, methods: list[str]) -> str:
    lines = ["| method | select stage (s), median | whole `kmq.select` call, warm (s), median | diagnostics (s) |",
             "|---|---:|---:|---:|"]  # fmt: skip
    for m in methods:
        rs = [r for r in results["runs"] if r["method"] == m]
        med = {k: float(np.median([r[k] for r in rs])) for k in ("select_s", "wall_s", "diagnostics_s")}
        lines.append(f"| {m} | {med['select_s']:.2f} | {med['wall_s']:.1f} | {med['diagnostics_s']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embedder", default="hashing")
    ap.add_argument("--slice", type=int, default=0, help="seeded sample of this many records (0: all 60,885)")
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--cache", default="/tmp/kmq-methods-table", help="folder for the pool file and KMQ_CACHE_DIR")
    ap.add_argument("--json", help="also write every run's numbers here (rewritten after each run)")
    ap.add_argument("--from-json", help="print the tables of a --json file (complete or interrupted); run nothing")
    args = ap.parse_args()
    if args.from_json:
        return report(json.loads(Path(args.from_json).read_text()))
    folder = Path(args.cache)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["KMQ_CACHE_DIR"] = str(folder / f"cache-{args.embedder}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pool = pool_file(folder, args.slice)
    load0 = os.getloadavg()[0]
    results = measure(pool, args)
    results.update(args=vars(args), cpu=cpu(), load=(load0, os.getloadavg()[0]), pool_file=pool.name)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    report(results)
    return None


def report(results: dict) -> None:
    """Print the header lines and the three tables of a (possibly partial) results dict."""
    args = argparse.Namespace(**results["args"]) if "args" in results else None
    done = list(dict.fromkeys(r["method"] for r in results["runs"]))
    methods = [m for m in (args.methods.split(",") if args else METHODS) if m in done]
    seeds = sorted({r["seed"] for r in results["runs"]})
    load0, load1 = results.get("load", (math.nan, math.nan))
    cold = results["cold"]
    n, kept = results["pool"]["n"], results["pool"]["candidates"]
    runs = {m: sum(r["method"] == m for r in results["runs"]) for m in methods}
    print(
        f"pool: {results.get('pool_file', '?')}, {n:,} records ({kept:,} after exact dedup); "
        f"budget {args.budget if args else '?'}; embedder {args.embedder if args else '?'}; k = {results['k']}; "
        f"seeds {seeds}; runs per method {runs}"
    )
    print(f"CPU: {results.get('cpu') or cpu()}; load average {load0:.1f} before, {load1:.1f} after")
    print(
        f"cold first run (embed + cluster + score + select): {cold['wall_s']:.0f} s; stage seconds "
        + ", ".join(f"{k} {v.get('seconds')}" for k, v in cold["stages"].items() if isinstance(v, dict))
    )
    print(
        f"pool source entropy: {entropy(results['pool']['mix'].get('source')):.3f} nats; pool quality mean "
        f"{results['pool']['quality']['mean']:.3f}; cluster entropy max log(k) = {math.log(results['k']):.3f}\n"
    )
    hi, lo = max, min
    print(table(results, DIVERSITY, methods, {"vendi": hi, "coverage_mean": lo, "coverage_p95": lo,
                                               "facility_location": hi}))  # fmt: skip
    print()
    print(table(results, BALANCE, methods, {"cluster_kl": lo, "cluster_entropy": hi, "empty_clusters": lo,
                                             "duplicates_exact": lo, "duplicates_near": lo, "quality_mean": hi,
                                             "source_entropy": hi}))  # fmt: skip
    print()
    print(times(results, methods))
    print("\nwhere the numbers come from:")
    for m in methods:
        print(f"- {m}: {sorted({r['source'] for r in results['runs'] if r['method'] == m})[0]}")
    own = [r["own"] for r in results["runs"] if r["method"] == "random"]
    if own:
        print(
            f"- the random runs themselves: exact dups {[o['duplicates_exact'] for o in own]}, "
            f"source entropy {[round(o['source_entropy'] or 0, 3) for o in own]}"
        )


if __name__ == "__main__":
    main()
