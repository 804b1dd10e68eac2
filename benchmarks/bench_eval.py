"""The overhead of ``kmq eval`` (``kmq.evaluate.evaluate_model``) over calling ``lm_eval.simple_evaluate`` directly.

Both evaluate the same local model on the same tasks with the same settings in this process: kmq loads the
model through ``kmq.hf`` and wraps it in lm-eval's ``HFLM`` (plus its checks, the folder fingerprint, the task
descriptions and the results dict); lm-eval direct gets ``model="hf"`` and the folder path. Both get the same
(cached) ``TaskManager`` of kmq's local tasks, so the comparison is of what each does per run. One warm-up run
of each is not counted (imports, the task index, the datakit reads); then the two alternate, the order
swapped every round, and the table gives each round's seconds and the ratio kmq / lm-eval. The metrics of
every run are compared too (they must be equal).

Without ``--model`` a random Llama (hidden 256, 4 layers) is built in a temporary folder; the numbers it
scores mean nothing, only the timings count.

Run from the repository root (results in BENCHMARKS.md)::

    .venv/bin/python benchmarks/bench_eval.py                                  # arc_easy 40 + gsm8k 8, 3 rounds
    .venv/bin/python benchmarks/bench_eval.py --model ./my-model --tasks arc_easy --limit 200 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models: shared with the tests


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="a local model folder (default: a random Llama built here)")
    p.add_argument("--tasks", default="arc_easy,gsm8k")
    p.add_argument("--limit", default="arc_easy=40,gsm8k=8",
                   help="examples per task: N for all, or task=N,... (one simple_evaluate call per distinct N)")
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--data-dir", default=None, help="the datakit (default: ../shared/datakit)")
    return p.parse_args(argv)


def limits(spec: str, tasks: list[str]) -> dict[int, list[str]]:
    """``{limit: tasks}`` from ``N`` or ``task=N,...``."""
    if "=" not in spec:
        return {int(spec): tasks}
    per = {k: int(v) for k, v in (item.split("=") for item in spec.split(","))}
    out: dict[int, list[str]] = {}
    for t in tasks:
        out.setdefault(per[t], []).append(t)
    return out


def run_kmq(model: str, groups: dict[int, list[str]], data_dir: Path, a: argparse.Namespace) -> dict:
    from kmq.evaluate import evaluate_model

    metrics = {}
    for limit, tasks in groups.items():
        res = evaluate_model(model, tasks=tasks, limit=limit, data_dir=data_dir, device="cpu", precision="fp32",
                             batch_size=a.batch_size, num_fewshot=a.num_fewshot, max_new_tokens=a.max_new_tokens,
                             seed=0, show_progress=False)  # fmt: skip
        metrics.update({t: e["metrics"] for t, e in res["tasks"].items()})
    return metrics


def run_direct(model: str, groups: dict[int, list[str]], data_dir: Path, a: argparse.Namespace) -> dict:
    import lm_eval

    from kmq.evaluate.results import split_metrics
    from kmq.evaluate.tasks import task_manager

    metrics = {}
    for limit, tasks in groups.items():
        res = lm_eval.simple_evaluate(
            model="hf", model_args={"pretrained": model, "dtype": "float32", "device": "cpu"}, tasks=tasks,
            task_manager=task_manager(data_dir, tasks=tasks), limit=limit, num_fewshot=a.num_fewshot,
            batch_size=a.batch_size, gen_kwargs={"max_gen_toks": a.max_new_tokens}, log_samples=False,
            random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0,
        )  # fmt: skip
        metrics.update({t: split_metrics(res["results"][t])[0] for t in tasks})
    return metrics


def machine() -> str:
    load = os.getloadavg()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=False).stdout.splitlines()
            if line.startswith("Model name"))  # fmt: skip
    except StopIteration:
        cpu = "unknown CPU"
    return f"{cpu}, {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def main(argv: list[str] | None = None) -> int:
    import logging

    a = parse_args(argv)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # the same quiet for both
    from kmq.evaluate.tasks import resolve_data_dir

    data_dir = resolve_data_dir(a.data_dir)
    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    groups = limits(a.limit, tasks)
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        model = a.model
        if model is None:
            from tiny_models import build_causal_lm

            model = str(build_causal_lm(Path(tmp) / "llama", hidden_size=256, num_layers=4, num_heads=4,
                                        intermediate_size=512, max_positions=2048))  # fmt: skip
        print(f"model {model}; tasks {groups}; {machine()}", flush=True)
        runners = {"kmq": run_kmq, "lm-eval": run_direct}
        reference = {name: fn(model, groups, data_dir, a) for name, fn in runners.items()}  # warm-up
        same = reference["kmq"] == reference["lm-eval"]
        rows = []
        for r in range(a.rounds):
            seconds = {}
            for name in (("kmq", "lm-eval") if r % 2 == 0 else ("lm-eval", "kmq")):
                t0 = time.perf_counter()
                metrics = runners[name](model, groups, data_dir, a)
                seconds[name] = time.perf_counter() - t0
                same = same and metrics == reference[name]
            rows.append(seconds)
            print(f"round {r + 1}: kmq {seconds['kmq']:.2f} s, lm-eval {seconds['lm-eval']:.2f} s", flush=True)
    ratios = [s["kmq"] / s["lm-eval"] for s in rows]
    print("\n| round | kmq eval (s) | lm-eval direct (s) | ratio kmq / lm-eval |\n|---|---|---|---|")
    for i, (s, ratio) in enumerate(zip(rows, ratios, strict=True), 1):
        print(f"| {i} | {s['kmq']:.2f} | {s['lm-eval']:.2f} | {ratio:.3f} |")
    print(f"| median | {statistics.median(s['kmq'] for s in rows):.2f} | "
          f"{statistics.median(s['lm-eval'] for s in rows):.2f} | {statistics.median(ratios):.3f} |")  # fmt: skip
    print(f"\nsame metrics in every run: {'yes' if same else 'NO'}; {machine()}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
