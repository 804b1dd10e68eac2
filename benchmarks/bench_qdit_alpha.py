"""QDIT's alpha on a real pool: coverage and mean quality of the selection over an alpha grid (issue 12).

dolly_3k (2,996 records) embedded with the hashing embedder, clustered (for the kmq rows) and scored with the
heuristic, through kmq's own stages; budget 300. For each alpha: the coverage (mean cosine of each pool row to
its nearest pick, float64), the mean heuristic quality and mean z of the picks, the picks shared with
top-quality and with the pure facility-location run (alpha = 0), and the time. The same grid is run with the
earlier, unnormalised objective ``(1 - alpha) · C + alpha · Z`` for comparison. The last table is the common
random numbers check: picks shared by kmq in its limits and kmeans-random, same seed.

    .venv/bin/python benchmarks/bench_qdit_alpha.py [--budget 300] [--alphas 0,0.1,...,1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from _datakit import DATAKIT


def load(budget: int):
    from kmq.data import read_pool
    from kmq.pipeline import build_config
    from kmq.stages import Stages

    path = str(DATAKIT / "dolly_3k" / "dolly_3k.jsonl")
    cfg = build_config(None, {"pool": path, "budget": budget, "embed.embedder": "hashing"})
    stages = Stages(cfg, read_pool(path), False)
    X = stages.vectors().value
    labels, _ = stages.clusters(budget).value
    stages.check_responses()
    return X, labels, np.asarray(stages.quality().value, dtype=np.float64)


def coverage(X: np.ndarray, idx: np.ndarray) -> float:
    """Mean cosine of every pool row to its nearest pick (float64)."""
    return float((X.astype(np.float64) @ X[idx].astype(np.float64).T).max(axis=1).mean())


def unnormalised(X: np.ndarray, quality: np.ndarray, budget: int, alpha: float) -> np.ndarray:
    """The earlier objective, (1 - alpha) · FL / n + alpha · Σ z / b, exact lazy greedy."""
    import kmq.methods.qdit as qdit_module
    from kmq.methods._arrays import zscore

    engine = qdit_module._DenseGains(X)
    bonus = alpha * zscore(quality) / budget
    return qdit_module._lazy_greedy_array(engine, bonus, (1 - alpha) / len(X), budget, batch=8)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--alphas", default="0,0.05,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,0.95,1")
    args = ap.parse_args()
    os.environ.setdefault("KMQ_CACHE_DIR", tempfile.mkdtemp(prefix="kmq-bench-qdit-"))
    from kmq.methods import get_method
    from kmq.methods._arrays import zscore
    from kmq.methods.qdit import qdit_greedy

    b = args.budget
    X, labels, quality = load(b)
    z = zscore(quality)
    top = get_method("top-quality").fn(n=len(X), budget=b, random_state=None, quality=quality).indices
    diverse = qdit_greedy(X, quality, b, alpha=0.0)[0]
    print(f"dolly_3k: n = {len(X):,}, d = {X.shape[1]}, b = {b}; pool mean quality {quality.mean():.3f}\n")
    for title, fn in (("range-normalised (now)", None), ("unnormalised (before)", unnormalised)):
        print(f"### {title}\n")
        print("| alpha | coverage | mean quality | mean z | shared with top-quality | shared with alpha = 0 "
              "| time (s) |")  # fmt: skip
        print("|---:|---:|---:|---:|---:|---:|---:|")
        for alpha in (float(a) for a in args.alphas.split(",")):
            start = time.perf_counter()
            idx = qdit_greedy(X, quality, b, alpha=alpha)[0] if fn is None else fn(X, quality, b, alpha)
            t = time.perf_counter() - start
            print(
                f"| {alpha:g} | {coverage(X, idx):.4f} | {quality[idx].mean():.3f} | {z[idx].mean():.3f} "
                f"| {np.intersect1d(idx, top).size} | {np.intersect1d(idx, diverse).size} | {t:.2f} |"
            )
        print()
    print("### Common random numbers: picks shared with kmeans-random (same seed; 3 seeds)\n")
    print("| method | seed 0 | seed 1 | seed 2 |")
    print("|---|---:|---:|---:|")
    constant = np.full(len(X), 1.0)
    rows = {
        "kmq temperature=1e6": ("kmq", quality, {"temperature": 1e6}),
        "kmq temperature=1e3": ("kmq", quality, {"temperature": 1e3}),
        "kmq within=uniform": ("kmq", quality, {"within": "uniform"}),
        "kmq within=proportional, constant quality": ("kmq", constant, {"within": "proportional"}),
        "kmeans-random, seed + 100 (independent)": ("kmeans-random", None, {}),
    }

    def pick(name, q, seed, **params):
        method = get_method(name)
        inputs = {k: v for k, v in (("labels", labels), ("quality", q)) if k in method.needs}
        return method.fn(n=len(X), budget=b, random_state=np.random.default_rng(seed), **inputs, **params).indices

    for title, (name, q, params) in rows.items():
        shared = []
        for seed in range(3):
            ref = pick("kmeans-random", None, seed)
            other = pick(name, q, seed + (100 if name == "kmeans-random" else 0), **params)
            shared.append(f"{np.intersect1d(ref, other).size}{' (same order)' if np.array_equal(ref, other) else ''}")
        print(f"| {title} | {' | '.join(shared)} |")


if __name__ == "__main__":
    main()
