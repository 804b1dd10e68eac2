"""Run untrusted Python programs (generated code + its tests) in a sandboxed subprocess.

Each program runs in a fresh interpreter (``python -s -S -B``: stdlib only, no site-packages, no
bytecode writes) in its own empty temporary folder, deleted afterwards, with a minimal environment
(no HOME, no API keys; ``PYTHONHASHSEED=0`` so runs repeat). The layers, outermost first:

1. Namespaces (when ``unshare`` works here, checked once per process): a user namespace and a private
   network namespace with only a downed loopback, so no address is reachable even if the Python
   guard below were bypassed.
2. Resource limits, set in the child before the program runs (soft = hard, and raising them is
   denied): address space (``memory_mb``), CPU seconds, file size, open files, processes, no core dumps.
3. A wall-clock timeout in the parent that kills the child's whole process group (its own session).
4. An audit hook (PEP 578, cannot be removed) installed before the program runs. It denies sockets,
   process creation (subprocess, os.system, exec*, fork, spawn, pty), signals to other processes,
   ctypes/cffi, tracing hooks, and file access outside the folder except reads of the interpreter's
   stdlib. A denied action writes a marker on stderr and ends the child at once (exit code 86), so a
   program cannot swallow the denial with ``except``. Audit hooks are no security boundary against a
   determined attacker; they stop what generated code does by accident, and layers 1-3 bound the rest.

stdout and stderr are captured up to a cap (the tail is kept). Nothing of the program ever runs in
the calling process.

Examples
--------
>>> run_program("assert 1 + 1 == 2").status  # doctest: +SKIP
'passed'
>>> round(pass_at_k(10, 3, 1), 6)
0.3
"""

from __future__ import annotations

import functools
import logging
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kmq.errors import invalid_parameter

logger = logging.getLogger(__name__)

BLOCKED_EXIT = 86
MEMORY_EXIT = 87
MARKER = "kmq-sandbox:"
OUTPUT_CAP = 64 * 1024
FILE_SIZE_MB = 32
OPEN_FILES = 64
_GRACE_S = 1.0

# The child's side lives in _sandbox_guard.py; its source is handed to ``python -c`` (the parent never imports it).
_BOOTSTRAP = (Path(__file__).parent / "_sandbox_guard.py").read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one program.

    Attributes
    ----------
    passed : bool
        The program exited 0 within the limits.
    status : str
        One of "passed", "failed" (nonzero exit: a failed assert, an exception, a syntax error),
        "timeout" (wall clock or CPU limit), "memory" (MemoryError under the address-space limit),
        "blocked" (the guard denied an action), "error" (the sandbox could not run it, or a signal).
    detail : str
        Short: the last stderr line (e.g. ``AssertionError``), the denied action, or the limit hit.
    seconds : float
        Wall-clock time of the child process.
    stdout, stderr : str
        The tails of the captured streams, at most :data:`OUTPUT_CAP` bytes each.
    """

    passed: bool
    status: str
    detail: str
    seconds: float
    stdout: str = field(default="", repr=False)
    stderr: str = field(default="", repr=False)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of Chen et al. (2021): ``1 - C(n - c, k) / C(n, k)``, computed as a stable product.

    Parameters
    ----------
    n : int
        Samples generated for the problem (>= 1).
    c : int
        Samples that passed (0 <= c <= n).
    k : int
        The k of pass@k (1 <= k <= n).
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise invalid_parameter(name, "pass_at_k", "an int", value)
    if n < 1:
        raise invalid_parameter("n", "pass_at_k", "an int >= 1", n)
    if not 0 <= c <= n:
        raise invalid_parameter("c", "pass_at_k", f"an int in the range [0, n={n}]", c)
    if not 1 <= k <= n:
        raise invalid_parameter("k", "pass_at_k", f"an int in the range [1, n={n}]", k)
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def run_programs(
    programs: Sequence[str], *, workers: int | None = None, timeout_s: float = 10.0, memory_mb: int = 1024
) -> list[Outcome]:
    """Run each program in its own sandbox, at most ``workers`` at a time; outcomes in input order.

    ``workers`` defaults to ``min(2, os.cpu_count())``.
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise invalid_parameter("workers", "run_programs", "an int >= 1 or None", workers)
    _check_limits("run_programs", timeout_s, memory_mb)
    programs = list(programs)
    if workers == 1 or len(programs) <= 1:
        return [run_program(p, timeout_s=timeout_s, memory_mb=memory_mb) for p in programs]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kmq-sandbox") as pool:
        return list(pool.map(functools.partial(run_program, timeout_s=timeout_s, memory_mb=memory_mb), programs))


def run_program(program: str, *, timeout_s: float = 10.0, memory_mb: int = 1024) -> Outcome:
    """Run one complete Python program in a fresh sandboxed subprocess.

    Parameters
    ----------
    program : str
        Complete source: the solution, its tests and the call that runs them (``check(entry_point)``).
    timeout_s : float
        Wall-clock limit; the CPU limit is one second above it, rounded up.
    memory_mb : int
        Address-space limit of the child, in MiB.

    Returns
    -------
    Outcome
        ``passed`` is True when the program exited 0 within the limits.
    """
    if not isinstance(program, str):
        raise invalid_parameter("program", "run_program", "a str of Python source", type(program).__name__)
    _check_limits("run_program", timeout_s, memory_mb)
    root = tempfile.mkdtemp(prefix="kmq-sandbox-")
    try:
        with open(os.path.join(root, "program.py"), "w", encoding="utf-8", errors="surrogatepass") as f:
            f.write(program)
        argv = [*_isolation_prefix(), sys.executable, "-s", "-S", "-B", "-c", _BOOTSTRAP, str(memory_mb << 20),
                str(math.ceil(timeout_s) + 1), str(FILE_SIZE_MB << 20), str(OPEN_FILES)]
        return _supervise(argv, root, timeout_s, memory_mb)
    finally:
        _remove_tree(root)


def _check_limits(owner: str, timeout_s: float, memory_mb: int) -> None:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not 0 < timeout_s < 86400:
        raise invalid_parameter("timeout_s", owner, "a number of seconds in (0, 86400)", timeout_s)
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int) or memory_mb < 64:
        raise invalid_parameter("memory_mb", owner, "an int >= 64 (MiB)", memory_mb)


def _child_env(root: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": root, "TMPDIR": root, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8", "KMQ_SANDBOX": os.path.basename(root)}


@functools.lru_cache(maxsize=1)
def _isolation_prefix() -> tuple[str, ...]:
    """The ``unshare`` command that gives the child a private network namespace, or () where that fails."""
    exe = shutil.which("unshare")
    if exe is not None:
        base = (exe, "--user", "--map-root-user", "--net")
        for prefix in ((*base, "--ipc"), base):
            try:
                done = subprocess.run([*prefix, sys.executable, "-S", "-c", "pass"], capture_output=True, timeout=30,
                                      env={"PATH": "/usr/bin:/bin"})
            except (OSError, subprocess.TimeoutExpired):
                continue
            if done.returncode == 0:
                return prefix
    logger.warning("kmq sandbox: no private network namespace (`unshare --user --net` is unavailable or refused "
                   "here); network access is denied only by the in-process audit hook")
    return ()


def _supervise(argv: list[str], root: str, timeout_s: float, memory_mb: int) -> Outcome:
    start = time.monotonic()
    try:
        proc = subprocess.Popen(argv, cwd=root, env=_child_env(root), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True)
    except OSError as err:
        return Outcome(False, "error", f"could not start the sandbox ({argv[0]}): {err}", 0.0)
    try:
        out, err, timed_out = _collect(proc, start + timeout_s)
    finally:
        _kill_group(proc.pid)  # the leader is not reaped yet, so its group id cannot have been reused
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    seconds = time.monotonic() - start
    stdout, stderr = (b.decode("utf-8", "replace") for b in (out, err))
    return _classify(proc.returncode, timed_out, stderr, timeout_s, memory_mb, seconds, stdout)


def _collect(proc: subprocess.Popen, deadline: float) -> tuple[bytes, bytes, bool]:
    """Read both pipes (keeping the tails) until the child exits and the pipes close, or the deadline passes."""
    tails = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
    sel = selectors.DefaultSelector()
    for fd in tails:
        sel.register(fd, selectors.EVENT_READ)
    open_pipes = set(tails)
    pidfd = _pidfd(proc.pid)
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ)
    exited = False
    try:
        while open_pipes or not exited:
            wait = deadline - time.monotonic()
            if wait <= 0:
                break
            for key, _ in sel.select(wait if pidfd is not None else min(wait, 0.02)):
                if key.fd == pidfd:
                    sel.unregister(pidfd)
                    exited = True
                    continue
                chunk = os.read(key.fd, 1 << 16)
                if not chunk:
                    sel.unregister(key.fd)
                    open_pipes.discard(key.fd)
                    continue
                tail = tails[key.fd]
                tail += chunk
                if len(tail) > 2 * OUTPUT_CAP:
                    del tail[:-OUTPUT_CAP]
            if not exited and pidfd is None:
                exited = _has_exited(proc.pid)
            if exited and open_pipes and deadline > time.monotonic() + _GRACE_S:
                _kill_group(proc.pid)  # something left in the group holds the pipes open
                deadline = time.monotonic() + _GRACE_S
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
    out, err = (bytes(t[-OUTPUT_CAP:]) for t in tails.values())
    return out, err, not exited


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def _has_exited(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(rc: int, timed_out: bool, stderr: str, timeout_s: float, memory_mb: int, seconds: float,
              stdout: str) -> Outcome:
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if timed_out:
        status, detail = "timeout", f"wall-clock limit of {timeout_s:g} s reached; process group killed"
    elif rc == BLOCKED_EXIT and f"{MARKER} blocked" in stderr:
        status, detail = "blocked", last.removeprefix(MARKER).strip()
    elif rc in (-signal.SIGXCPU, -signal.SIGKILL):
        status, detail = "timeout", f"CPU limit of {math.ceil(timeout_s) + 1} s reached ({signal.Signals(-rc).name})"
    elif (rc == MEMORY_EXIT and f"{MARKER} memory" in stderr) or last.startswith("MemoryError"):
        status, detail = "memory", f"MemoryError under the {memory_mb} MiB address-space limit"
    elif rc == 0:
        status, detail = "passed", ""
    elif rc < 0:
        status, detail = "error", f"killed by {signal.Signals(-rc).name}"
    else:
        status, detail = "failed", last[:300] or f"exit code {rc}"
    return Outcome(status == "passed", status, detail, round(seconds, 4), stdout, stderr)


def _remove_tree(root: str) -> None:
    """Delete the folder even where the program removed permissions inside it."""
    try:
        shutil.rmtree(root)
        return
    except OSError:
        pass
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            try:
                os.chmod(os.path.join(dirpath, name), 0o700, follow_symlinks=False)
            except OSError:
                pass
    shutil.rmtree(root, ignore_errors=True)
