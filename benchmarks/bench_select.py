"""`kmq select --budget 1000` on the mixed datakit pool (60,885 records) with the hashing embedder.

Runs the real command line in a subprocess with a fresh cache, then again with another budget on the
warm cache, and prints wall time, peak memory (max RSS of the child) and the speed-up.

    .venv/bin/python benchmarks/bench_select.py [--embedder hashing] [--budgets 1000,2000] [--warm-runs 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _datakit import mixed_pool  # noqa: E402


def timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--embedder", default="hashing")
    ap.add_argument("--budgets", default="1000,2000")
    ap.add_argument("--warm-runs", type=int, default=3, help="warm runs after the cold one (median and best shown)")
    args = ap.parse_args()
    b1, b2 = args.budgets.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pool = mixed_pool(tmp)
        env = {**os.environ, "KMQ_CACHE_DIR": str(tmp / "cache"), "HF_HUB_OFFLINE": "1"}
        kmq = str(Path(sys.executable).with_name("kmq"))
        base = [kmq, "select", str(pool), "--embedder", args.embedder, "-q"]
        cold, rss1, out1 = timed([*base, "--budget", b1, "--out", str(tmp / "a.jsonl")], env)
        warm = [timed([*base, "--budget", b2, "--out", str(tmp / f"b{i}.jsonl")], env) for i in range(args.warm_runs)]
    print(out1)
    print(f"embedder {args.embedder}; pool 60,885 records")
    print(f"cold run  --budget {b1}: {cold:7.2f} s, peak RSS {rss1:7.0f} MiB")
    for seconds, rss, _ in warm:
        print(f"warm run  --budget {b2}: {seconds:7.2f} s, peak RSS {rss:7.0f} MiB")
    times = sorted(w[0] for w in warm)
    print(f"speed-up of a warm run: {cold / times[len(times) // 2]:.1f}x (median), {cold / times[0]:.1f}x (best)")


if __name__ == "__main__":
    main()
