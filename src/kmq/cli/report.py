"""``kmq report``, ``kmq compare`` and ``kmq explain``: look at finished runs."""

from __future__ import annotations

import argparse
import json
import sys

REPORT_EXAMPLES = """examples:
  kmq report subset.jsonl.kmq-run                      (writes subset.jsonl.kmq-run/report.html)
  kmq report runs/kmq --out ~/reports/kmq.html
  kmq report grid/                                     (a kmq experiment folder: its results table and cells)
"""
COMPARE_EXAMPLES = """examples:
  kmq compare kmq.jsonl.kmq-run random.jsonl.kmq-run qdit.jsonl.kmq-run
  kmq compare runs/* --out comparison/                  (comparison/compare.csv, .md and .html)
"""
EXPLAIN_EXAMPLES = """examples:
  kmq explain subset.jsonl.kmq-run dolly_3k-0007
  kmq explain subset.jsonl.kmq-run dolly_3k-0007 --format json
"""


def _parser(sub: argparse._SubParsersAction, name: str, help: str, description: str, epilog: str):
    p = sub.add_parser(name, help=help, description=description, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    return p


def register(sub: argparse._SubParsersAction) -> None:
    p = _parser(sub, "report", "write the HTML report of a run directory",
                "Write one self-contained report.html (it loads nothing; open it offline) for a run directory of "
                "kmq select or kmq iterate, or for a kmq experiment folder (its results table and the diagnostics "
                "of every cell's selection).", REPORT_EXAMPLES)  # fmt: skip
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory (SUBSET.kmq-run beside the subset)")
    p.add_argument("--out", default=None, metavar="PATH", help="write here instead of RUN_DIR/report.html")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file kmq did not write")
    p.set_defaults(func=run_report)

    p = _parser(sub, "compare", "the diagnostics of several runs side by side",
                "One table of the diagnostics of several runs (method, params, budget, k, Vendi, coverage, facility "
                "location, cluster KL and entropy, empty clusters, duplicates, mean quality), each with its "
                "random reference. The Markdown table goes to stdout; --out also writes compare.csv, compare.md "
                "and compare.html.", COMPARE_EXAMPLES)  # fmt: skip
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories")
    p.add_argument("--out", default=None, metavar="DIR_OR_FILE",
                   help="a folder (gets compare.csv/.md/.html) or a file name ending .csv, .md or .html "
                        "(the three files get its stem)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing files kmq compare did not write")
    p.set_defaults(func=run_compare)

    p = _parser(sub, "explain", "why a pool record was or was not picked",
                "Print the pool.parquet row of one record (cluster, quality, selected, rank, duplicate_of, "
                "contaminated), its pick explanation, its cluster's quota and size, the cluster's other picks, "
                "and why it was not picked where kmq can say.", EXPLAIN_EXAMPLES)  # fmt: skip
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run directory")
    p.add_argument("record_id", metavar="ID", help="the record's id (the id field of the pool, or its row id)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.set_defaults(func=run_explain)


def run_report(args: argparse.Namespace) -> int:
    from kmq.report import is_experiment, write_experiment_report, write_report

    write = write_experiment_report if is_experiment(args.run_dir) else write_report
    path = write(args.run_dir, out=args.out, overwrite=args.overwrite)
    sys.stdout.write(f"{path}\n")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from kmq.report import compare_runs, write_compare
    from kmq.report._compare import to_markdown

    rows = compare_runs(args.run_dirs)
    written = write_compare(args.run_dirs, args.out, overwrite=args.overwrite, rows=rows) if args.out else []
    sys.stdout.write(to_markdown(rows).split("\n", 1)[1])
    for path in written:
        print(f"kmq compare: wrote {path}", file=sys.stderr)
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from kmq.report import explain, format_explanation

    e = explain(args.run_dir, args.record_id)
    if args.format == "json":
        sys.stdout.write(json.dumps(e, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        sys.stdout.write("\n".join(format_explanation(e)) + "\n")
    return 0
