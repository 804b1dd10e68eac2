"""``kmq``: the command-line entry point.

stdout carries results; logs, progress bars and hints go to stderr. Any :class:`~kmq.errors.KmqError`
(bad usage or bad input) becomes one line on stderr and exit code 2, with nothing written; the
traceback shows only with ``KMQ_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from kmq.errors import KmqError


def build_parser() -> argparse.ArgumentParser:
    from kmq import __version__
    from kmq.cli import choose_k, iterate, score, select

    parser = argparse.ArgumentParser(
        prog="kmq",
        description="Diversity-first data selection for instruction tuning (k-means-quality sampling).",
    )
    parser.add_argument("--version", action="version", version=f"kmq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (select, iterate, score, choose_k):
        module.register(sub)
    return parser


def _setup_logging(verbosity: int) -> None:
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kmq: %(message)s"))
    root = logging.getLogger("kmq")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    debug = os.environ.get("KMQ_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KmqError as err:
        if debug:
            traceback.print_exc()
        print(f"kmq {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kmq {args.command}: interrupted (finished embedding blocks are cached; rerun to resume)",
              file=sys.stderr)  # fmt: skip
        return 130
    except Exception as err:  # an unexpected failure: a bug, or an environment problem
        if debug:
            traceback.print_exc()
        print(
            f"kmq {args.command}: internal error: {type(err).__name__}: {err} "
            "(rerun with KMQ_DEBUG=1 for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
