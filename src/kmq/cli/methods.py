"""``kmq methods``: every selection method with what it needs, its parameters and their defaults."""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "methods",
        help="list the selection methods and their parameters",
        description="List every selection method of kmq select --method, what it needs (embeddings, clusters, "
        "quality) and its parameters with their defaults (set them with --param KEY=VALUE).",
    )
    p.add_argument("name", nargs="?", default=None, help="show only this method")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmq.methods import METHODS, get_method

    methods = [get_method(args.name)] if args.name else [METHODS[k] for k in sorted(METHODS)]
    out = []
    for m in methods:
        needs = ", ".join(sorted(m.needs)) or "nothing"
        out.append(f"{m.name}\n  {m.help}\n  needs: {needs}")
        for key, default in m.params.items():
            choices = m.choices.get(key)
            shown = f" ({' | '.join(map(str, choices))})" if choices else ""
            out.append(f"  --param {key}={default}{shown}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0
