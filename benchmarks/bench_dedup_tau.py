"""The default TAU of ``--dedup near``: what each threshold removes on datakit pools, and what it costs.

Part 1, real pools. Each pool's conversations (the clustering view, ``embed_on: conversation``) are embedded
with the bundled MiniLM (``minilm``; vectors are cached in ``$KMQ_CACHE_DIR``), exact duplicates are removed
first as ``--dedup near`` does, then :func:`kmq.shape.dedup.near_duplicates` runs with every row in one
cluster: all pairs are compared, which is what the pipeline's within-cluster search approximates (it can
only miss pairs that k-means splits). For each TAU it prints the records removed and a seeded sample of the
pairs that TAU removes and the next stricter TAU keeps (the band ``(TAU, next]``), so a reader can judge
whether that band holds duplicates. The mixed pool of ``benchmarks/_datakit.py`` (60,885 records) is
sampled (``--mixed-sample``, seeded) to keep MiniLM's time on 2 CPUs in minutes; 0 takes it all.

Part 2, cost. ``near_duplicates`` on synthetic unit vectors (384-d, ``--k`` Gaussian blobs as the clusters,
5% of rows planted as noisy copies of another row) at 100k and 1M rows.

    .venv/bin/python benchmarks/bench_dedup_tau.py [--mixed-sample 10000] [--samples 4] [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _datakit import DATAKIT, mixed_pool  # noqa: E402

TAUS = (0.85, 0.9, 0.93, 0.95, 0.97, 0.99)
POOLS = ("fastchat_dummy", "alpaca_gpt4_demo", "dolly_3k", "mixed")


def pool_texts(name: str, sample: int, folder: Path) -> tuple[list[str], list[str]]:
    from kmq.data import read_pool

    path = mixed_pool(folder) if name == "mixed" else DATAKIT / name / f"{name}.jsonl"
    pool = read_pool(path)
    ids, texts = pool.ids, pool.texts("conversation")
    if name == "mixed" and 0 < sample < len(ids):
        rows = np.sort(np.random.default_rng(0).choice(len(ids), sample, replace=False))
        ids, texts = [ids[i] for i in rows], [texts[i] for i in rows]
    return ids, texts


def short(text: str, width: int = 110) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def real_pools(args: argparse.Namespace) -> None:
    from kmq.embed import get_embedder
    from kmq.shape.dedup import exact_duplicates, near_duplicates

    emb = get_embedder("minilm")
    rng = np.random.default_rng(0)
    rows_out, samples = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in POOLS:
            ids, texts = pool_texts(name, args.mixed_sample, Path(tmp))
            t0 = time.perf_counter()
            X = emb.encode(texts, show_progress=False)
            t_embed = time.perf_counter() - t0
            exact = exact_duplicates(texts)
            labels = np.zeros(len(texts), dtype=np.int64)
            dups = {}
            for tau in TAUS:
                t0 = time.perf_counter()
                dups[tau] = near_duplicates(X, labels, tau, dup_of=exact)
                dups[tau, "s"] = time.perf_counter() - t0
            n_exact = int((exact >= 0).sum())
            removed = [int((dups[tau] >= 0).sum()) - n_exact for tau in TAUS]
            rows_out.append((name, len(texts), n_exact, removed, t_embed, dups[0.95, "s"]))
            for i, tau in enumerate(TAUS):
                stricter = dups[TAUS[i + 1]] if i + 1 < len(TAUS) else np.full(len(texts), -1)
                band = np.flatnonzero((dups[tau] >= 0) & (exact < 0) & (stricter < 0))
                for r in rng.permutation(band)[: args.samples]:
                    j = int(dups[tau][r])
                    samples.append((name, tau, float(X[r] @ X[j]), ids[j], texts[j], ids[r], texts[r], len(band)))
    head = " | ".join(f"near, TAU {t}" for t in TAUS)
    print(f"| pool | records | exact dups | {head} | embed (s) | near at 0.95 (s) |")
    print("|---|---:|---:|" + "---:|" * len(TAUS) + "---:|---:|")
    for name, n, n_exact, removed, t_embed, t_near in rows_out:
        cells = " | ".join(f"{r:,} ({100 * r / n:.1f}%)" for r in removed)
        print(f"| {name} | {n:,} | {n_exact:,} | {cells} | {t_embed:.0f} | {t_near:.2f} |")
    print("\nSeeded sample of the pairs each TAU removes and the next stricter TAU keeps (kept row first):")
    for name, tau, cos, kid, ktext, did, dtext, size in samples:
        print(f"\n[{name}, band ({tau}, next], {size} rows in band] cos {cos:.3f}")
        print(f"  kept    {kid}: {short(ktext)}")
        print(f"  removed {did}: {short(dtext)}")


def synthetic(n: int, k: int, dim: int = 384, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in k Gaussian blobs (two rows of a blob: cosine ~0.67); 5% of rows are noisy copies (cosine
    ~0.98) of the first row of their blob."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, dim), dtype=np.float32)
    labels = rng.integers(0, k, n)
    X = centers[labels] + rng.standard_normal((n, dim), dtype=np.float32) * np.float32(0.7)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    copies = rng.choice(n, n // 20, replace=False)
    order = np.argsort(labels, kind="stable")
    first_of = np.searchsorted(labels[order], labels[copies])  # the first row of each copy's blob
    X[copies] = X[order[first_of]] + rng.standard_normal((len(copies), dim), dtype=np.float32) * np.float32(0.01)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X, labels


def cost(args: argparse.Namespace) -> None:
    from kmq.shape.dedup import near_duplicates

    print("\n| rows | clusters | rows per cluster | near_duplicates at 0.95 (s) | rows/s | removed |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        for k in args.k:
            X, labels = synthetic(n, k)
            t0 = time.perf_counter()
            dup = near_duplicates(X, labels, 0.95)
            dt = time.perf_counter() - t0
            print(f"| {n:,} | {k:,} | {n // k:,} | {dt:.1f} | {n / dt:,.0f} | {int((dup >= 0).sum()):,} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mixed-sample", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--k", type=int, nargs="+", default=[1000])
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()
    if not args.skip_real:
        real_pools(args)
    if args.sizes:
        cost(args)


if __name__ == "__main__":
    main()
