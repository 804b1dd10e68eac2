"""What checking cache digests costs a warm run: `VectorStore` load + lookup + gather of 1M cached vectors.

Writes n random unit vectors (384-d float32: 1.5 GB at n = 1M) into a vector store in blocks of 1024, as
an embedder does, then times, alternately in this one process, the warm path of ``Embedder.encode``
(open the store, find which keys are cached, gather their rows in pool order) with ``verify=False`` and
with ``verify=True`` (every shard's XXH3-128 digests checked before its first read; the per-process memo
of checked shards is cleared before each run, so each timed run pays the full check). The shards stay in
the page cache (the machine has the memory), so this is the warm-cache case the check must not slow.
Also times one bare hashing pass over all vector bytes with XXH3-128 and with BLAKE2b, for the hash choice.

    .venv/bin/python benchmarks/bench_cache.py [--n 1000000] [--dim 384] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import xxhash

from kmq import cache
from kmq.cache import KEY_DTYPE, VectorStore


def build(folder: Path, n: int, dim: int, block: int) -> np.ndarray:
    """A store of n random unit vectors in shards of ``block``; returns the keys in a shuffled "pool" order."""
    rng = np.random.default_rng(0)
    keys = np.frombuffer(rng.bytes(16 * n), dtype=KEY_DTYPE).copy()
    store = VectorStore(folder, dim)
    for lo in range(0, n, block):
        x = rng.standard_normal((min(block, n - lo), dim), dtype=np.float32)
        store.add(keys[lo : lo + block], x / np.linalg.norm(x, axis=1, keepdims=True))
    return keys[rng.permutation(n)]


def warm_run(folder: Path, keys: np.ndarray, dim: int, *, verify: bool) -> tuple[list[float], np.ndarray]:
    """Wall seconds of (open the store, find the cached keys, gather the rows, all three) and CPU seconds of all
    three (user + system of this process: less disturbed by other processes than wall time), and the rows."""
    cache._VERIFIED.clear()  # each timed run checks every shard again (a process checks a shard once)
    c0 = time.process_time()
    t0 = time.perf_counter()
    store = VectorStore(folder, dim, verify=verify)
    t1 = time.perf_counter()
    found = store.contains(keys)  # the shards are checked here, at their first read
    t2 = time.perf_counter()
    _, out = store.gather(keys)
    t3 = time.perf_counter()
    c3 = time.process_time()
    if not found.all():
        raise SystemExit(f"only {found.sum()} of {len(keys)} keys found (verify={verify})")
    return [t1 - t0, t2 - t1, t3 - t2, t3 - t0, c3 - c0], out


def hash_pass(folder: Path, fn) -> float:
    start = time.perf_counter()
    for shard in sorted(folder.glob("shard-*")):
        fn(memoryview(np.load(shard / "vectors.npy", mmap_mode="r").reshape(-1).view(np.uint8)))
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--block", type=int, default=1024, help="vectors per shard (the embedders' block size)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of each arm, alternated")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = Path(tmp) / "vectors" / "bench"
        start = time.perf_counter()
        keys = build(folder, args.n, args.dim, args.block)
        shards = len(list(folder.glob("shard-*")))
        gb = args.n * args.dim * 4 / 1e9
        built = time.perf_counter() - start
        print(f"wrote {args.n:,} x {args.dim} float32 ({gb:.2f} GB) in {shards} shards: {built:.1f} s")
        warm_run(folder, keys, args.dim, verify=True)  # first touch: page cache, imports, allocator
        times: dict[bool, list[list[float]]] = {False: [], True: []}
        reference = None
        for r in range(args.repeats):
            for verify in (False, True) if r % 2 == 0 else (True, False):
                seconds, out = warm_run(folder, keys, args.dim, verify=verify)
                times[verify].append(seconds)
                if reference is None:
                    reference = out
                elif not np.array_equal(out, reference):
                    raise SystemExit("the two arms returned different vectors")
                del out
        xxh = hash_pass(folder, lambda m: xxhash.xxh3_128(m).digest())
        b2 = hash_pass(folder, lambda m: hashlib.blake2b(m, digest_size=16).digest())
    med = {v: [statistics.median(run[i] for run in times[v]) for i in range(5)] for v in times}
    print(f"{'median seconds':24} {'open':>7} {'lookup':>7} {'gather':>7} {'total':>7} {'CPU':>7}   total of each run")
    for verify in (False, True):
        runs = ", ".join(f"{run[3]:.2f}" for run in times[verify])
        print(f"{f'verify={verify}':24} " + " ".join(f"{t:7.3f}" for t in med[verify]) + f"   {runs}")
    off, on = med[False][3], med[True][3]
    cpu_off, cpu_on, check = med[False][4], med[True][4], med[True][1] - med[False][1]
    print(f"ratio verify/no-verify: wall {on / off:.3f} ({on - off:+.3f} s), CPU {cpu_on / cpu_off:.3f} "
          f"({cpu_on - cpu_off:+.3f} s); lookup (where the check runs) {check:+.3f} s")  # fmt: skip
    print(f"one hashing pass over {gb:.2f} GB: xxh3_128 {xxh:.3f} s ({gb / xxh:.1f} GB/s), "
          f"blake2b {b2:.3f} s ({gb / b2:.2f} GB/s)")  # fmt: skip


if __name__ == "__main__":
    main()
