"""``kmq``: the command-line entry point.

stdout carries results; logs, progress bars and hints go to stderr. Any :class:`~kmq.errors.KmqError`
(bad usage or bad input) becomes one line on stderr and exit code 2, with nothing written; the
traceback shows only with ``KMQ_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
import traceback

from kmq.errors import KmqError, OutputWriteError


def build_parser() -> argparse.ArgumentParser:
    from kmq import __version__
    from kmq.cli import choose_k, eval_, experiment, iterate, methods, report, score, select

    parser = argparse.ArgumentParser(
        prog="kmq",
        description="Diversity-first data selection for instruction tuning (k-means-quality sampling).",
    )
    parser.add_argument("--version", action="version", version=f"kmq {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (select, iterate, score, choose_k, methods, report, experiment, eval_):
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


#: errno values that mean "the environment refused", not "kmq has a bug"
_ENV_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR,
    errno.ENOENT, errno.EEXIST, errno.ENAMETOOLONG, errno.EMFILE, errno.ENFILE, errno.EIO, errno.EBUSY,
    errno.ELOOP, errno.EXDEV,
}  # fmt: skip


def _message(err: BaseException) -> tuple[str, int]:
    """One line and an exit code for an exception (the one table of the command line)."""
    if isinstance(err, OutputWriteError):
        return f"error: {err}", 1
    if isinstance(err, KmqError):
        return f"error: {err}", 2
    if isinstance(err, MemoryError):
        return "error: out of memory (try a smaller --embed-batch-size / --score-batch-size, or a bigger machine)", 1
    if isinstance(err, OSError) and err.errno in _ENV_ERRNOS:
        where = " -> ".join(str(f) for f in (err.filename, err.filename2) if f is not None)
        reason = os.strerror(err.errno) if err.errno else str(err)
        return f"error: {where + ': ' if where else ''}{reason} (an environment problem, not a kmq bug)", 1
    return (
        f"internal error: {type(err).__name__}: {err} "
        "(rerun with KMQ_DEBUG=1 for the traceback, and please report it)"
    ), 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(-1 if getattr(args, "quiet", False) else getattr(args, "verbose", 0))
    debug = os.environ.get("KMQ_DEBUG", "") not in ("", "0")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"kmq {args.command}: interrupted (finished embedding blocks are cached; rerun to resume)",
              file=sys.stderr)  # fmt: skip
        return 130
    except Exception as err:  # KmqError: bad usage or input; OSError: the environment; anything else: a bug
        if debug:
            traceback.print_exc()
        text, code = _message(err)
        print(f"kmq {args.command}: {text}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
