"""``kmq experiment CONFIG.yaml --out DIR``: a grid of select -> train -> eval with a results table (resumable)."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  kmq experiment exp.yaml --out runs/exp --dry-run     (the cells, trainings, evaluations and training tokens)
  kmq experiment exp.yaml --out runs/exp               (rerun the same command after a crash: it resumes)
  kmq experiment exp.yaml --out runs/exp --restart-from eval            (evaluate every cell again)
  kmq experiment exp.yaml --out runs/exp --restart-from pool__kmq__b1000__s0/train

a config (YAML):
  pool: data/pool.jsonl
  methods: [kmq, random]          # or {name: qdit, params: {alpha: 0.7}}
  budgets: [1000]
  seeds: [0, 1, 2]
  embedder: hashing               # any kmq select option
  model: path/or/hub-name
  trainer: {name: trl, max_steps: 200}
  eval: {tasks: [arc_easy, gsm8k], limit: 500}
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="a grid of pools x methods x budgets x seeds: select, train, evaluate, one results table",
        description="Run every cell of CONFIG's grid (select -> train -> eval) in DIR and write DIR/results.csv "
        "and DIR/results.md (mean ± std over seeds, the average, the paired difference to random). Every step "
        "is saved; rerun to resume. A failed cell is reported and the others go on.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", metavar="CONFIG.yaml", help="the experiment's settings (see below)")
    p.add_argument("--out", required=True, metavar="DIR", help="the experiment folder (cells/, results.csv, ...)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (cells, work left, tokens); write nothing")
    p.add_argument("--restart-from", default=None, metavar="STEP",
                   help="delete STEP (select, train, eval) of every cell or CELL/STEP, and the later steps")
    p.add_argument("--overwrite", action="store_true",
                   help="use a non-empty DIR that is not an experiment folder (nothing of it is deleted)")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmq import hf
    from kmq.evaluate.experiment.config import load_experiment_config
    from kmq.evaluate.experiment.run import plan_experiment, run_experiment

    cfg = load_experiment_config(args.config)
    if args.dry_run:
        sys.stdout.write(f"dry run: nothing is written ({args.out})\n{plan_experiment(cfg, args.out)}\n")
        return 0
    progress = False if args.quiet else None
    with hf.library_output(progress):
        res = run_experiment(cfg, args.out, restart_from=args.restart_from, show_progress=progress,
                             overwrite=args.overwrite, inputs=[args.config])  # fmt: skip
    sys.stdout.write((res.out / "results.md").read_text(encoding="utf-8"))
    if res.failed:
        print(f"kmq experiment: {len(res.failed)} of {len(res.cells)} cells failed (listed in {res.out}/results.md); "
              "rerun to retry them", file=sys.stderr)  # fmt: skip
        return 1
    return 0
