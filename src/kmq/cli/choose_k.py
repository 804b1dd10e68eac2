"""``kmq choose-k``: silhouette over candidate k, the paper's guideline for picking k."""

from __future__ import annotations

import argparse
import sys

from kmq.cli._common import add_common_options, add_embed_options, add_pool_options, show_progress
from kmq.cli._flags import setting, setting_overrides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "choose-k",
        help="silhouette over candidate k",
        description="Fit k-means for each candidate k and print the cosine silhouette on a sample.",
        epilog="example:\n  kmq choose-k pool.jsonl --candidates 16,32,64,128 --sample 20000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from kmq.config import RunConfig as C

    add_pool_options(p, C)
    setting(p, C, "cluster.candidates", "--candidates", help="comma-separated k values (default: powers of two)")
    setting(p, C, "cluster.silhouette_sample", "--sample")
    p.add_argument(
        "--budget", default=None, help="budget, to bound the default candidates (default: 10%% of the pool)"
    )
    add_embed_options(p, C)
    add_common_options(p, C)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmq.pipeline import choose_k

    choice = choose_k(args.pool, budget=args.budget, config=args.config, settings=setting_overrides(args),
                      show_progress=show_progress(args))  # fmt: skip
    sys.stdout.write("k\tsilhouette\tseconds\n")
    for row in choice.table:
        sys.stdout.write(f"{row['k']}\t{row['silhouette']:.4f}\t{row['seconds']:.1f}\n")
    sys.stdout.write(f"best k = {choice.best}\n")
    return 0
