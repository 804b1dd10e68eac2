"""`kmq select` at 1M and 10M rows on one machine: wall time and peak RSS against the embedding matrix (issue 15).

Synthetic clustered pools, generated once (seeded) under a scratch folder and reused: ``pool.jsonl`` holds
short alpaca records with a numeric ``score`` field, ``vectors.npy`` their (n, 384) vectors (float32 at 1M,
float16 at 10M by default), drawn around 200 random directions. Each ``kmq select`` (``npy:`` vectors,
``column:score``, k = 1,000, budget 100k) runs in a subprocess: first with an empty cache (cold), then again
with the cache it left (warm). The child's peak RSS is its ``VmHWM`` (read by a small wrapper at exit; also
``ru_maxrss`` from ``wait4``), and the ratios divide it by the size of the embedding matrix kmq holds (n x d in
the file's dtype: a float16 file's rows stay float16, ``resident_dtype`` in the manifest), by the float32
matrix (what kmq held before) and by the ``.npy`` file's size.

    .venv/bin/python benchmarks/scale.py --n 1000000                 # generate if missing, cold + warm
    .venv/bin/python benchmarks/scale.py --n 10000000 --dtype float16
    .venv/bin/python benchmarks/scale.py --n 1000000 --generate-only
    .venv/bin/python benchmarks/scale.py --n 1000000 --delete        # remove that pool's scratch files

The scratch folder defaults to ``/work/kmq-scale`` (``--scratch``), on the big disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

D, CENTERS, SEED = 384, 200, 0
_WORDS = [f"w{i}" for i in range(4096)]
_WRAPPER = r"""
import atexit, sys
def _hwm():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmHWM", "VmRSS")):
                sys.stderr.write("SCALE " + line)
atexit.register(_hwm)
import os, threading, time, traceback
_highs, _main = [], threading.get_ident()
def _trace():  # KMQ_SCALE_TRACE=1: sample VmRSS every 10 ms, keep the main thread's kmq frames at each new high
    best, t0 = 0, time.perf_counter()
    while True:
        with open("/proc/self/status") as fh:
            rss = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS")) / 1024
        if rss > best + 32:
            best, frame = rss, sys._current_frames().get(_main)
            stack = [f"{f.filename.rpartition('/kmq/')[2]}:{f.lineno} {f.name}"
                     for f in traceback.extract_stack(frame) if "/kmq/" in f.filename][-3:]
            _highs.append(f"SCALE HIGH {time.perf_counter() - t0:7.1f} s {rss:7.0f} MiB  " + " < ".join(stack[::-1]))
        time.sleep(0.01)
if os.environ.get("KMQ_SCALE_TRACE"):
    threading.Thread(target=_trace, daemon=True).start()
    atexit.register(lambda: sys.stderr.write("".join(h + "\n" for h in _highs[-12:])))
from kmq.cli.main import main
sys.argv = ["kmq", *sys.argv[1:]]
try:
    rc = main()
except SystemExit as e:
    rc = e.code
sys.exit(rc or 0)
"""


def pool_dir(scratch: Path, n: int, dtype: str) -> Path:
    return scratch / f"n{n}-{dtype}"


def generate(folder: Path, n: int, dtype: str, *, chunk: int = 200_000) -> None:
    """Write ``pool.jsonl`` and ``vectors.npy`` (seeded) unless both are there; ``done`` marks a complete pair."""
    if (folder / "done").is_file():
        return
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    centers = rng.standard_normal((CENTERS, D)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vecs = np.lib.format.open_memmap(folder / "vectors.npy.tmp", mode="w+", dtype=np.dtype(dtype), shape=(n, D))
    words = np.array(_WORDS)
    start = time.perf_counter()
    with open(folder / "pool.jsonl.tmp", "w", encoding="utf-8") as fh:
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            label = rng.integers(0, CENTERS, m)
            block = centers[label] + 0.35 * rng.standard_normal((m, D), dtype=np.float32) / np.sqrt(D) * 4
            vecs[lo : lo + m] = block.astype(dtype)
            score = np.round(rng.random(m) * 10, 3)
            # short texts: 6 prompt words and 8 response words, the first two tied to the cluster
            toks = words[(label[:, None] * 16 + rng.integers(0, 64, (m, 14))) % len(words)]
            lines = []
            for j in range(m):
                t = toks[j]
                lines.append(json.dumps({
                    "id": f"r{lo + j}", "instruction": " ".join(t[:6]) + f" {lo + j}?",
                    "output": " ".join(t[6:]), "score": float(score[j]),
                }))  # fmt: skip
            fh.write("\n".join(lines) + "\n")
            print(f"  generated {lo + m:,} / {n:,} rows ({time.perf_counter() - start:.0f} s)", flush=True)
    vecs.flush()
    del vecs
    os.replace(folder / "vectors.npy.tmp", folder / "vectors.npy")
    os.replace(folder / "pool.jsonl.tmp", folder / "pool.jsonl")
    (folder / "done").write_text(json.dumps({"n": n, "d": D, "dtype": dtype, "seed": SEED}))


def run_select(
    folder: Path, cache: Path, out: Path, *, budget: int, k: int, extra: list[str], trace: bool = False
) -> dict:
    """One ``kmq select`` in a subprocess: wall seconds, VmHWM and ru_maxrss (MiB); with ``trace`` the last
    12 new highs of its RSS (sampled every 10 ms) and where the main thread was in kmq at each."""
    cmd = [
        sys.executable, "-c", _WRAPPER, "select", str(folder / "pool.jsonl"),
        "--embedder", f"npy:{folder / 'vectors.npy'}", "--scorer", "column:score", "--clusters", str(k),
        "--budget", str(budget), "--out", str(out), "--overwrite", "-q", *extra,
    ]  # fmt: skip
    env = {**os.environ, "KMQ_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    if trace:
        env["KMQ_SCALE_TRACE"] = "1"
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"kmq select failed ({os.waitstatus_to_exitcode(status)}):\n{err[-4000:]}")
    hwm = [int(line.split()[2]) / 1024 for line in err.splitlines() if line.startswith("SCALE VmHWM")]
    return {"seconds": round(wall, 1), "vmhwm_mib": round(hwm[0]) if hwm else None,
            "maxrss_mib": round(usage.ru_maxrss / 1024), "load_before": load,
            "load_after": os.getloadavg()[0],
            "highs": [line[11:] for line in err.splitlines() if line.startswith("SCALE HIGH ")]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dtype", choices=["float32", "float16"], default=None, help="default: float16 from 10M")
    ap.add_argument("--scratch", type=Path, default=Path("/work/kmq-scale"))
    ap.add_argument("--budget", type=int, default=100_000)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--warm-runs", type=int, default=1)
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--delete", action="store_true", help="remove this pool's scratch files and stop")
    ap.add_argument("--extra", default="", help="more kmq select flags, space-separated")
    ap.add_argument("--trace", action="store_true", help="print where each run's RSS reached its last new highs")
    args = ap.parse_args()
    dtype = args.dtype or ("float16" if args.n >= 10_000_000 else "float32")
    folder = pool_dir(args.scratch, args.n, dtype)
    if args.delete:
        shutil.rmtree(folder, ignore_errors=True)
        print(f"removed {folder}")
        return
    generate(folder, args.n, dtype)
    if args.generate_only:
        return
    f32_mib = args.n * D * 4 / 2**20
    matrix_mib = args.n * D * np.dtype(dtype).itemsize / 2**20  # what kmq holds: the file's float16 or float32
    file_mib = (folder / "vectors.npy").stat().st_size / 2**20
    load = os.getloadavg()
    print(f"n={args.n:,} d={D} file {dtype} {file_mib:,.0f} MiB; resident {dtype} matrix {matrix_mib:,.0f} MiB, "
          f"float32 {f32_mib:,.0f} MiB; load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        tmp = Path(tmp)
        extra = args.extra.split()
        runs = [("cold", run_select(folder, tmp / "cache", tmp / "a.jsonl", budget=args.budget, k=args.clusters,
                                    extra=extra, trace=args.trace))]  # fmt: skip
        for i in range(args.warm_runs):
            runs.append(("warm", run_select(folder, tmp / "cache", tmp / f"b{i}.jsonl", budget=args.budget,
                                            k=args.clusters, extra=extra, trace=args.trace)))  # fmt: skip
    for name, r in runs:
        peak = r["vmhwm_mib"] or r["maxrss_mib"]
        print(f"{name}: {r['seconds']:8.1f} s  peak RSS {peak:8,.0f} MiB  = {peak / matrix_mib:.2f}x the {dtype} "
              f"matrix, {peak / f32_mib:.2f}x the float32 one, {peak / file_mib:.2f}x the .npy file  (ru_maxrss "
              f"{r['maxrss_mib']:,} MiB; 1-min load {r['load_before']:.1f} -> {r['load_after']:.1f})")  # fmt: skip
        for line in r.pop("highs"):
            print(f"    {line}")
    print(json.dumps({"n": args.n, "dtype": dtype, "load": load, "runs": runs}))


if __name__ == "__main__":
    main()
