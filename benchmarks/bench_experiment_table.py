"""A small real ``kmq experiment`` table on the datakit: budget 1000 from the mixed pool (60,885 records), kMQ vs
random vs kmeans-random, 3 seeds, a tiny random-init Llama fine-tuned here (TRL, LoRA, a few steps) and
evaluated on kmq's local tasks with a limit.

THE NUMBERS SAY NOTHING ABOUT THE METHODS: the model is a random-init Llama of a few million parameters trained
for a handful of steps and scored on a few examples per task, so every difference is noise. The table is kept to
show the machinery (9 cells of select -> train -> eval, resumable, mean ± std over seeds, the paired interval
against random, the training tokens per cell) and what it costs per step on this machine.

Run from the repository root (the experiment folder is kept: rerunning resumes it and recomputes nothing)::

    .venv/bin/python benchmarks/bench_experiment_table.py                       # into a temporary folder
    .venv/bin/python benchmarks/bench_experiment_table.py --out /tmp/exp --limit 50 --max-steps 8
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models: shared with the tests
sys.path.insert(0, str(ROOT / "benchmarks"))

WARNING = ("NOTE: a tiny random-init model trained for a few steps and evaluated on a few examples: these numbers "
           "say nothing about the methods; the table only shows the machinery.")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, help="the experiment folder (default: a temporary one)")
    p.add_argument("--budget", type=int, default=1000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--tasks", default="arc_easy,truthfulqa_mc1,gsm8k")
    p.add_argument("--limit", type=int, default=20, help="examples per task")
    p.add_argument("--max-steps", type=int, default=4, help="TRL optimizer steps per cell")
    p.add_argument("--embedder", default="hashing", help="kmq select --embedder (hashing: no model download)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import kmq
    from _datakit import DATAKIT, mixed_pool
    from kmq.evaluate.experiment import ExperimentConfig, run_experiment
    from tiny_models import build_causal_lm

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    work = Path(args.out or tempfile.mkdtemp(prefix="kmq-bench-experiment-"))
    work.mkdir(parents=True, exist_ok=True)
    pool = mixed_pool(work)
    model = work / "tiny-llama"
    if not model.exists():
        build_causal_lm(model, arch="llama", max_positions=2048)
    cfg = ExperimentConfig.from_dict({
        "name": f"mixed pool, budget {args.budget}: kmq vs random vs kmeans-random (tiny model: numbers mean nothing)",
        "pool": str(pool), "methods": ["kmq", "random", "kmeans-random"], "budgets": [args.budget],
        "seeds": [int(s) for s in args.seeds.split(",")], "embedder": args.embedder, "model": str(model),
        "device": "cpu",
        "trainer": {"name": "trl", "finetune": "lora", "max_steps": args.max_steps, "batch_size": 4, "grad_accum": 1,
                    "max_seq_length": 256},
        "eval": {"tasks": args.tasks.split(","), "limit": args.limit, "num_fewshot": 0, "max_new_tokens": 32,
                 "data_dir": str(DATAKIT), "batch_size": 8},
    }, source="bench")  # fmt: skip
    load = os.getloadavg()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model_name = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?")
    start = time.perf_counter()
    res = run_experiment(cfg, work / "experiment", show_progress=False)
    wall = time.perf_counter() - start
    steps: dict[str, list[float]] = {"select": [], "train": [], "eval": []}
    for cell in res.cells:
        for step in steps:
            marker = work / "experiment" / "cells" / cell["cell"] / f"DONE-{step}"
            if marker.is_file():
                steps[step].append(json.loads(marker.read_text())["seconds"])
    print(WARNING)
    print(f"kmq {kmq.__version__}; CPU {model_name}; load average before {load[0]:.1f}; pool {pool} "
          f"(60,885 records); folder {work / 'experiment'}")  # fmt: skip
    print(f"wall time {wall:.1f}s for {len(res.cells)} cells ({res.ok} ok, {len(res.failed)} failed)")
    for step, secs in steps.items():
        if secs:
            print(f"  {step:<6} {len(secs)} computed, {sum(secs):.1f}s in all, median {statistics.median(secs):.1f}s")
    print()
    print((work / "experiment" / "results.md").read_text())
    print(WARNING)
    return 0 if not res.failed else 1


if __name__ == "__main__":
    sys.exit(main())
