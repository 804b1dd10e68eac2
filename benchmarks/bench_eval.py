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

Two more modes measure one part each, alternated the same way:

``--calls``
    One evaluation call on the same ``HFLM`` and the same loaded tasks: kmq's ``lm_eval.evaluator.evaluate``
    path (``kmq.evaluate.harness._evaluate``) against ``lm_eval.simple_evaluate`` (which adds the environment
    report: ``torch.utils.collect_env`` subprocesses). kmq's results entries of both must be equal.
``--index``
    Knowing lm-eval's task names: kmq's scan of the task YAMLs (``kmq.evaluate.task_names.scan_task_names``)
    against building lm-eval's ``TaskManager`` index; the two name sets must be equal (all of them), and the
    cached lookup (``lm_eval_task_names``, a JSON read) is timed too.

Run from the repository root (results in BENCHMARKS.md)::

    .venv/bin/python benchmarks/bench_eval.py                                  # arc_easy 40 + gsm8k 8, 3 rounds
    .venv/bin/python benchmarks/bench_eval.py --model ./my-model --tasks arc_easy --limit 200 --rounds 5
    .venv/bin/python benchmarks/bench_eval.py --calls --rounds 5
    .venv/bin/python benchmarks/bench_eval.py --index --rounds 2
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
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--calls", action="store_true", help="one evaluation call: kmq's evaluate vs simple_evaluate")
    mode.add_argument("--index", action="store_true", help="lm-eval's task names: kmq's scan vs TaskManager")
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


def alternate(runners: dict, rounds: int, labels: tuple[str, str]) -> list[dict[str, float]]:
    """Each round runs both (order swapped every round) and prints their seconds; returns the rounds."""
    rows = []
    for r in range(rounds):
        seconds = {}
        for name in (labels if r % 2 == 0 else labels[::-1]):
            t0 = time.perf_counter()
            runners[name]()
            seconds[name] = time.perf_counter() - t0
        rows.append(seconds)
        print(f"round {r + 1}: " + ", ".join(f"{n} {seconds[n]:.2f} s" for n in labels), flush=True)
    return rows


def table(rows: list[dict[str, float]], labels: tuple[str, str]) -> None:
    a, b = labels
    ratios = [s[a] / s[b] for s in rows]
    print(f"\n| round | {a} (s) | {b} (s) | ratio |\n|---|---|---|---|")
    for i, (s, ratio) in enumerate(zip(rows, ratios, strict=True), 1):
        print(f"| {i} | {s[a]:.2f} | {s[b]:.2f} | {ratio:.3f} |")
    print(f"| median | {statistics.median(s[a] for s in rows):.2f} | {statistics.median(s[b] for s in rows):.2f} | "
          f"{statistics.median(ratios):.3f} |")  # fmt: skip


def bench_calls(model: str, data_dir: Path, a: argparse.Namespace) -> bool:
    """kmq's evaluate path vs simple_evaluate on one HFLM and one loaded task set; True when the entries agree."""
    import lm_eval

    from kmq.evaluate.harness import _evaluate, _load_tasks
    from kmq.evaluate.lm import build_lm
    from kmq.evaluate.results import task_entries

    tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    limit = int(a.limit) if "=" not in a.limit else min(limits(a.limit, tasks))
    lm = build_lm(model, None, "hf", device="cpu", precision="fp32", batch_size=a.batch_size, seed=0, revision=None,
                  trust_remote_code=False)  # fmt: skip
    gen = {"max_gen_toks": a.max_new_tokens}
    entries = {}

    def kmq_call():
        loaded = _load_tasks(tasks, data_dir, False, False)
        res = _evaluate(lm, loaded, num_fewshot=a.num_fewshot, limit=limit, gen_kwargs=gen, seed=0)
        entries["kmq evaluate"] = task_entries(res, loaded, limit=limit, data_dir=data_dir)

    def direct_call():
        loaded = _load_tasks(tasks, data_dir, False, False)
        res = lm_eval.simple_evaluate(model=lm, tasks=loaded["objects"], num_fewshot=a.num_fewshot, limit=limit,
                                      gen_kwargs=gen, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                                      fewshot_random_seed=0, confirm_run_unsafe_code=True, log_samples=False,
                                      task_manager=loaded["manager"])  # fmt: skip
        entries["simple_evaluate"] = task_entries(res, loaded, limit=limit, data_dir=data_dir)

    labels = ("kmq evaluate", "simple_evaluate")
    runners = dict(zip(labels, (kmq_call, direct_call), strict=True))
    kmq_call(), direct_call()  # warm-up
    same = entries["kmq evaluate"] == entries["simple_evaluate"]
    rows = alternate(runners, a.rounds, labels)
    same = same and entries["kmq evaluate"] == entries["simple_evaluate"]
    table(rows, labels)
    saved = statistics.median(s["simple_evaluate"] - s["kmq evaluate"] for s in rows)
    print(f"\ntasks {tasks}, limit {limit}; median saved per call: {saved:.2f} s; "
          f"same entries (metrics, stderr, n, shots, versions, settings): {'yes' if same else 'NO'}")
    return same


def bench_index(a: argparse.Namespace) -> bool:
    """kmq's scan of lm-eval's task YAMLs vs TaskManager's index; True when the name sets are equal."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from kmq.evaluate.task_names import lm_eval_task_names, scan_task_names

    folder = Path(lm_eval.__file__).resolve().parent / "tasks"
    found = {}
    labels = ("kmq scan", "TaskManager")
    runners = {"kmq scan": lambda: found.update(scan=scan_task_names([folder])),
               "TaskManager": lambda: found.update(tm=frozenset(TaskManager(include_defaults=True).all_tasks))}
    rows = alternate(runners, a.rounds, labels)
    table(rows, labels)
    with tempfile.TemporaryDirectory(prefix="bench-eval-cache-") as tmp:
        os.environ["KMQ_CACHE_DIR"] = tmp
        lm_eval_task_names()  # the scan, written to the cache
        from kmq.evaluate import task_names

        task_names._cached_names.cache_clear()
        t0 = time.perf_counter()
        cached = lm_eval_task_names()
        read_s = time.perf_counter() - t0
    missing, extra = found["tm"] - found["scan"], found["scan"] - found["tm"]
    print(f"\n{len(found['tm'])} names in lm-eval's index, {len(found['scan'])} from the scan; missing "
          f"{sorted(missing)[:10]}, extra {sorted(extra)[:10]}; cached lookup {read_s * 1000:.1f} ms "
          f"({'same' if cached == found['scan'] else 'DIFFERENT'} names)")
    return not missing and not extra and cached == found["scan"]


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

    if a.index:
        print(machine(), flush=True)
        ok = bench_index(a)
        print(machine())
        return 0 if ok else 1

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
        if a.calls:
            ok = bench_calls(model, data_dir, a)
            print(machine())
            return 0 if ok else 1
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
