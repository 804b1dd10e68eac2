"""Reading JSON Lines pools: the ``json.loads`` reader against the ``pyarrow.json`` one (kmq.data._jsonl_arrow).

For each pool, each round reads it once with each reader, alternating which goes first, each read in a fresh
subprocess (so peak memory is that read's own): wall time of ``read_pool``, the process's peak RSS (VmHWM) and
the resident pool (RSS after the read and a ``gc.collect()``, less the RSS before it). Then the text views the
pooled path asks for (``texts("prompt")`` and ``texts("response")`` three times: the key, the vectors, the
heuristic scorer): decoded once and kept (now), or decoded on every call (before; emulated with
``release_texts`` after each call), and the bytes the kept strings hold. Prints medians over rounds and new/old ratios,
and checks the two readers gave the same pool (ids, turns, fingerprint).

    .venv/bin/python benchmarks/bench_read.py [--pools dolly_3k,mixed,scale] [--rounds 3]
        [--scale /work/kmq-scale/n1000000-float32/pool.jsonl]

``mixed`` is the datakit's 12 training pools concatenated (60,885 records, written to a temporary folder);
``scale`` the 1M-row synthetic pool of benchmarks/scale.py (read only).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _datakit import DATAKIT, mixed_pool  # noqa: E402

SCALE = "/work/kmq-scale/n1000000-float32/pool.jsonl"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


def child(path: str, reader: str) -> dict:
    """One read in this process: timings, memory, and a digest of what was read."""
    import kmq.data._jsonl_arrow as fast
    from kmq.data import read_pool

    fast.ENABLED = reader == "arrow"
    gc.collect()
    before = rss_mib()
    start = time.perf_counter()
    pool = read_pool(path)
    seconds = time.perf_counter() - start
    gc.collect()
    resident = rss_mib() - before
    out = {"read_s": seconds, "peak_mib": peak_mib(), "resident_mib": resident, "n": len(pool)}
    h = hashlib.sha256(pool.fingerprint.encode())
    h.update("\0".join(pool.ids).encode())
    h.update(pool.messages.offsets.tobytes() + pool.messages.roles.tobytes())
    h.update(pool.messages.contents.buffers()[2].to_pybytes() if len(pool.messages.contents) else b"")
    out["digest"] = h.hexdigest()[:16]
    for kept in (False, True):  # the pooled path's three asks for the prompt and response views
        start = time.perf_counter()
        for _ in range(3):
            prompts, responses = pool.texts("prompt"), pool.texts("response")
            held = sum(map(sys.getsizeof, prompts)) + sum(map(sys.getsizeof, responses)) + 2 * sys.getsizeof(prompts)
            if not kept:
                pool.release_texts()
            del prompts, responses
        out[f"views_{'kept' if kept else 'every_call'}_s"] = time.perf_counter() - start
        out[f"views_{'kept' if kept else 'every_call'}_mib"] = held / 2**20 if kept else 0.0
        pool.release_texts()
    return out


def run(path: str, reader: str) -> dict:
    cmd = [sys.executable, __file__, "--child", path, "--reader", reader]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pools", default="dolly_3k,mixed,scale")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--scale", default=SCALE)
    ap.add_argument("--child")
    ap.add_argument("--reader", choices=["python", "arrow"])
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.reader)))
        return
    print(f"load {os.getloadavg()[0]:.1f}, rounds {args.rounds}, medians; ratio = arrow / python")
    tmp = tempfile.TemporaryDirectory()
    for name in args.pools.split(","):
        if name == "mixed":
            path = mixed_pool(Path(tmp.name))
        else:
            path = Path(args.scale) if name == "scale" else DATAKIT / name / f"{name}.jsonl"
        results: dict[str, list[dict]] = {"python": [], "arrow": []}
        for r in range(args.rounds):
            for reader in ("python", "arrow") if r % 2 == 0 else ("arrow", "python"):
                results[reader].append(run(str(path), reader))
        digests = {res["digest"] for rs in results.values() for res in rs}
        assert len(digests) == 1, f"{name}: the readers disagree ({digests})"
        n = results["python"][0]["n"]
        print(f"\n{name}: {n:,} records, {path.stat().st_size / 2**20:.1f} MiB, same pool from both readers")
        for key in ("read_s", "peak_mib", "resident_mib"):
            old = statistics.median(res[key] for res in results["python"])
            new = statistics.median(res[key] for res in results["arrow"])
            print(f"  {key:14s} json.loads {old:9.3f}   pyarrow.json {new:9.3f}   {new / old:.2f}x")
        views = [res for rs in results.values() for res in rs]
        old = statistics.median(res["views_every_call_s"] for res in views)  # the same pool from either reader
        new = statistics.median(res["views_kept_s"] for res in views)
        print(f"  views_s        every call {old:9.3f}   kept         {new:9.3f}   {new / old:.2f}x")
        held = statistics.median(res["views_kept_mib"] for res in views)
        print(f"  the kept prompt and response strings hold {held:.1f} MiB (lists and str objects)")
        print(f"  load now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
