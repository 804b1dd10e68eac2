"""The vector cache at scale: open + lookup + gather of n cached vectors, n = 100k, 1M, 10M (d = 384).

For each n, writes n random unit vectors into a vector store in shards of ``--block`` rows (what an embedder
writes: one shard per block of 1,024 texts), then times, alternately in this one process:

``reopen``   what an ``Embedder.encode`` after the first pays now: the process's index is kept and only
             caught up with the folder (one listing, a stat per shard);
``cold``     a first open in a process (every shard opened, the index sorted once), as every ``encode``
             paid before;
``old``      the store before this change (``--baseline`` commit, read with ``git show``): a fresh sort
             and a fresh open per store; at n <= ``--old-max`` only.

Each arm runs open, ``contains`` (which keys are cached) and a gather of all n rows in a shuffled pool
order: ``gather`` into one (n, d) float32 matrix where it fits in memory (n <= ``--full-max``), and
``iter_gather`` in blocks of 65,536 rows in pool order, and ``iter_found`` (the same blocks in storage
order, with their positions: what a consumer that needs no order, such as a faiss assignment, takes) at
every n. Then compacts the store and times the same arms again. Digest checks are on (each shard is
checked once per process; the timed runs after the first do not repeat them). Prints seconds per arm
(medians) and ns per vector, so linearity reads off the last column.

    .venv/bin/python benchmarks/bench_cache.py [--sizes 100000,1000000,10000000] [--store-dtype float16]
        [--block 1024] [--repeats 3] [--dir /work/tmp]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from kmq import cache
from kmq.cache import KEY_DTYPE, VectorStore

DIM = 384


def build(folder: Path, n: int, block: int, store_dtype: str) -> np.ndarray:
    """A store of n random unit vectors in shards of ``block``; returns the keys in a shuffled "pool" order."""
    rng = np.random.default_rng(0)
    keys = np.frombuffer(rng.bytes(16 * n), dtype=KEY_DTYPE).copy()
    store = VectorStore(folder, DIM, store_dtype=store_dtype)
    for lo in range(0, n, block):
        x = rng.standard_normal((min(block, n - lo), DIM), dtype=np.float32)
        store.add(keys[lo : lo + block], x / np.linalg.norm(x, axis=1, keepdims=True))
    return keys[rng.permutation(n)]


def old_module(commit: str) -> types.ModuleType:
    """kmq.cache as of ``commit`` (its VectorStore reads the same shards): the one module, or the package.

    A package (``src/kmq/cache/``, after the split) imports its siblings as ``kmq.cache._...``: the commit's
    ``src/kmq`` is extracted to a temporary folder and imported with ``sys.modules`` swapped, so the old
    modules bind to each other while this process's kmq stays what it was.
    """
    here = Path(__file__).parent
    single = subprocess.run(["git", "cat-file", "-e", f"{commit}:src/kmq/cache.py"], cwd=here,
                            stderr=subprocess.DEVNULL).returncode == 0  # fmt: skip
    if single:
        src = subprocess.run(["git", "show", f"{commit}:src/kmq/cache.py"], capture_output=True, text=True,
                             check=True, cwd=here).stdout  # fmt: skip
        mod = types.ModuleType("kmq_cache_old")
        exec(compile(src, f"{commit}:src/kmq/cache.py", "exec"), mod.__dict__)
        return mod
    root = Path(tempfile.mkdtemp(prefix="kmq-bench-old-"))
    archive = subprocess.run(["git", "archive", commit, "src/kmq"], capture_output=True, check=True,
                             cwd=here.parent).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    ours = {name: m for name, m in sys.modules.items() if name == "kmq" or name.startswith("kmq.")}
    for name in ours:
        del sys.modules[name]
    sys.path.insert(0, str(root / "src"))
    try:
        mod = importlib.import_module("kmq.cache")
    finally:
        sys.path.remove(str(root / "src"))
        for name in [n for n in sys.modules if n == "kmq" or n.startswith("kmq.")]:
            del sys.modules[name]
        sys.modules.update(ours)
        shutil.rmtree(root, ignore_errors=True)  # every old module is loaded by now
    return mod


def _old_store(old: types.ModuleType, folder: Path, store_dtype: str):
    """``old.VectorStore`` opened with the store-dtype keyword of its commit (``dtype`` before ``store_dtype``)."""
    params = inspect.signature(old.VectorStore).parameters
    return old.VectorStore(folder, DIM, **{("store_dtype" if "store_dtype" in params else "dtype"): store_dtype})


def run(arm: str, folder: Path, keys: np.ndarray, store_dtype: str, full: bool, old) -> dict[str, float]:
    """Seconds of open, contains, gather (full), iter_gather, for one arm."""
    if arm != "reopen":
        cache._OPEN.clear()
        if old is not None and hasattr(old, "_OPEN"):
            old._OPEN.clear()
    t0 = time.perf_counter()
    if arm == "old":
        store = _old_store(old, folder, store_dtype)
    else:
        store = VectorStore(folder, DIM, store_dtype=store_dtype)
    t1 = time.perf_counter()
    found = store.contains(keys)
    t2 = time.perf_counter()
    if not found.all():
        raise SystemExit(f"{arm}: only {found.sum()} of {len(keys)} keys found")
    out = {"open": t1 - t0, "contains": t2 - t1}
    if full:
        t3 = time.perf_counter()
        x = store.gather(keys)[1]
        out["gather"] = time.perf_counter() - t3
        del x
    if arm != "old":
        t4 = time.perf_counter()
        rows = 0
        for _, f, _v in store.iter_gather(keys):
            rows += int(f.sum())
        out["iter_gather"] = time.perf_counter() - t4
        if rows != len(keys):
            raise SystemExit(f"{arm}: iter_gather found {rows} of {len(keys)}")
        t5 = time.perf_counter()
        rows = sum(len(p) for p, _v in store.iter_found(keys))
        out["iter_found"] = time.perf_counter() - t5
        if rows != len(keys):
            raise SystemExit(f"{arm}: iter_found found {rows} of {len(keys)}")
    return out


def bench(folder: Path, keys: np.ndarray, args, old, label: str) -> None:
    n = len(keys)
    full = n <= args.full_max
    arms = ["reopen", "cold"] + (["old"] if old is not None and n <= args.old_max else [])
    VectorStore(folder, DIM, store_dtype=args.store_dtype).contains(keys)  # first touch: digests, page cache
    times: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
    for r in range(args.repeats):
        for arm in arms if r % 2 == 0 else arms[::-1]:
            times[arm].append(run(arm, folder, keys, args.store_dtype, full, old))
    shards = len(list(folder.glob("shard-*")))
    for arm in arms:
        med = {k: statistics.median(t[k] for t in times[arm]) for k in times[arm][0]}
        total = med["open"] + med["contains"] + med.get("gather", med.get("iter_gather", 0))
        cells = "  ".join(f"{k} {v:7.3f}" for k, v in med.items())
        print(f"n={n:>10,} {label:>9} ({shards:>5} shards) {arm:>6}: {cells}  | open+contains+gather "
              f"{total:7.3f} s = {total / n * 1e9:6.0f} ns/vector", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,1000000,10000000")
    ap.add_argument("--store-dtype", default="float16", choices=["float32", "float16"])
    ap.add_argument("--block", type=int, default=1024, help="vectors per shard (the embedders' block size)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each arm, alternated")
    ap.add_argument("--full-max", type=int, default=2_000_000, help="largest n gathered into one matrix")
    ap.add_argument("--old-max", type=int, default=1_000_000, help="largest n the old store is timed at")
    ap.add_argument("--baseline", default="f202dd2", help="commit of the old store ('' to skip it)")
    ap.add_argument("--dir", default=None, help="scratch folder (the 10M float16 store takes 7.9 GB)")
    args = ap.parse_args()
    old = old_module(args.baseline) if args.baseline else None
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            folder = Path(tmp) / "vectors" / "bench"
            t0 = time.perf_counter()
            keys = build(folder, n, args.block, args.store_dtype)
            gb = sum(p.stat().st_size for p in folder.rglob("*.npy")) / 1e9
            print(f"n={n:,}: wrote {gb:.2f} GB ({args.store_dtype}) in {len(list(folder.glob('shard-*')))} shards "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
            cache._OPEN.clear()
            bench(folder, keys, args, old, "as written")
            t0 = time.perf_counter()
            stats = VectorStore(folder, DIM, store_dtype=args.store_dtype).compact()
            print(f"n={n:,}: compacted {stats['merged']} shards into {stats['written']} in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)  # fmt: skip
            bench(folder, keys, args, old, "compacted")
            cache._OPEN.clear()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
