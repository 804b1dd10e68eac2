"""Peak memory of ``Embedder.encode_conversations`` (the default pooled conversation vectors) on a warm cache.

Synthetic prompts (8 words) and responses (12 words) from a 5,000-word vocabulary, the hashing encoder, a fresh
``KMQ_CACHE_DIR``; both views are encoded first (a warm cache), then the peak RSS is reset
(``/proc/self/clear_refs``) and ``encode_conversations`` runs: the printed HWM is the peak of that step, with what
the process already holds (the texts). Run it once per tree to compare (``PYTHONPATH=<other tree>/src``); the
checksums must be equal.

    .venv/bin/python benchmarks/bench_pooled_memory.py --n 300000 --store-dtype float32
    .venv/bin/python benchmarks/bench_pooled_memory.py --n 300000 --store-dtype float16
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

import numpy as np


def status(field: str) -> int:
    """A ``/proc/self/status`` field in KiB."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--store-dtype", choices=["float32", "float16"], default="float32")
    args = ap.parse_args()
    os.environ["KMQ_CACHE_DIR"] = tempfile.mkdtemp(prefix="kmq-pooled-memory-")
    from kmq.embed import HashingEmbedder

    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(5000)])
    prompts = [" ".join(row) for row in rng.choice(words, (args.n, 8)).tolist()]
    responses = [" ".join(row) for row in rng.choice(words, (args.n, 12)).tolist()]
    emb = HashingEmbedder()
    emb.store_dtype = args.store_dtype
    emb.encode(prompts)
    emb.encode(responses)  # the cache is warm: the step below gathers and pools
    gc.collect()
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    t = time.perf_counter()
    X = emb.encode_conversations(prompts, responses)
    seconds = time.perf_counter() - t
    matrix = args.n * emb.dim * 4 / 2**20
    print(f"n={args.n} dim={emb.dim} store={args.store_dtype} float32 matrix {matrix:.0f} MiB; RSS before "
          f"{before / 1024:.0f} MiB, peak {status('VmHWM') / 1024:.0f} MiB (+{(status('VmHWM') - before) / 1024:.0f}"
          f" MiB = {(status('VmHWM') - before) / 1024 / matrix:.2f} matrices); {seconds:.1f} s; "
          f"checksum {float(X.astype(np.float64).sum()):.9f}")  # fmt: skip


if __name__ == "__main__":
    main()
