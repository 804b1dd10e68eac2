"""Deterministic kill points: run the real ``kmq`` command line and SIGKILL it at its N-th file-system change.

The child process hooks ``os.replace`` and ``os.rename`` (and, when asked, ``os.unlink`` and ``open``
for writing), counts the calls that touch a path under ``root`` (the cache folder, a run directory, an
output folder) and, when the count reaches ``kill_at``, SIGKILLs itself *before* that change happens.
Every atomic commit of kmq (a shard or step folder renamed into place, a marker or output replaced) is
one such call, so the same ``kill_at`` always stops at the same point: no timing, no polling. ``match`` (a
regular expression searched in the change's target path relative to ``root``) counts only the changes it
matches: ``match=r"^rounds/r01/DONE-train$", kill_at=1`` stops right before that marker is written.

Every change under ``root`` (counted or not) is appended to a trace (``op<TAB>target`` per line, relative
to ``root``) before it runs; :attr:`KmqRun.changes` reads it back, so an uninterrupted run (``kill_at=0``)
lists the possible kill points, and a killed run ends with the change it was killed at.

Two ways to start the child:

- :func:`run_kmq` runs ``python killpoints_wrapper.py ... ARGS`` (a fresh interpreter, as a user's shell does);
- :class:`Forkserver` imports kmq (and e.g. openai) once in a helper process without threads and forks one
  child per command from it, so a test that kills a command at many points does not pay the imports
  (about 2 s with openai) every time. The child is still a separate process running ``kmq.cli.main.main``
  with its own environment, working directory, stdout and stderr.

Import it from any test: ``import killpoints`` (``tests/`` is on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path

HOOKS = r"""
import builtins, io, os, re, signal
def install_hooks(root, n, ops, match, trace):
    '''Count changes under root; SIGKILL this process before the n-th. Returns a one-item list: the count.'''
    root = os.path.realpath(root)
    pattern = re.compile(match) if match else None
    counted, _open = [0], io.open
    def under(path):
        real = os.path.realpath(path)
        return real == root or real.startswith(root + os.sep)
    def hook(name, orig, nargs=2):
        def wrapped(*args, **kwargs):
            paths = [a for a in args[:nargs] if isinstance(a, (str, os.PathLike))]
            if any(under(p) for p in paths):
                target = os.path.relpath(os.path.realpath(paths[-1]), root).replace(os.sep, "/")
                with _open(trace, "a", encoding="utf-8") as fh:
                    fh.write(f"{name}\t{target}\n")
                if pattern is None or pattern.search(target):
                    counted[0] += 1
                    if counted[0] == n:
                        os.kill(os.getpid(), signal.SIGKILL)
            return orig(*args, **kwargs)
        return wrapped
    def hook_open(orig):
        hooked = hook("open", orig, nargs=1)
        def wrapped(file, *args, **kwargs):
            mode = args[0] if args else kwargs.get("mode", "r")
            writes = isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+")
            return (hooked if writes else orig)(file, *args, **kwargs)
        return wrapped
    for name in ops:
        if name == "open":  # opening a file for writing
            builtins.open = io.open = hook_open(io.open)
        else:
            setattr(os, name, hook(name, getattr(os, name)))
    return counted
"""

WRAPPER = (
    HOOKS
    + r"""
import atexit, json, sys
spec = json.loads(sys.argv[1])
counted = install_hooks(spec["root"], spec["kill_at"], spec["ops"], spec["match"], spec["trace"])
if spec["count_file"]:
    atexit.register(lambda: open(spec["count_file"], "w").write(str(counted[0])))
exec(spec["setup"])
from kmq.cli.main import main
sys.exit(main(sys.argv[2:]))
"""
)

FORKSERVER = (
    HOOKS
    + r"""
import importlib, json, sys
for name in sys.argv[1:]:  # only to save time: a module a refactor renamed is imported when it is needed
    try:
        importlib.import_module(name)
    except ImportError:
        pass
from kmq.cli.main import main
requests, replies = sys.stdin, sys.stdout
for line in requests:
    spec = json.loads(line)
    replies.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for fd, path in ((1, spec["stdout"]), (2, spec["stderr"])):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.environ.clear()
            os.environ.update(spec["env"])
            os.chdir(spec["cwd"])
            sys.argv = ["kmq", *spec["args"]]
            counted = install_hooks(spec["root"], spec["kill_at"], spec["ops"], spec["match"], spec["trace"])
            exec(spec["setup"])
            try:
                code = main(spec["args"])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            if spec["count_file"]:
                with open(spec["count_file"], "w") as fh:
                    fh.write(str(counted[0]))
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    rc = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    replies.write(json.dumps({"returncode": rc}) + "\n")
    replies.flush()
"""
)

_IDS = count()


@dataclass
class KmqRun:
    """What one wrapped command did."""

    returncode: int  #: -9 when it was killed at its kill point
    stdout: str
    stderr: str
    trace: Path  #: the changes under ``root``, one ``op<TAB>target`` line each (the killing one last)

    @property
    def killed(self) -> bool:
        return self.returncode == -9

    @property
    def changes(self) -> list[str]:
        """Targets (relative to ``root``) of the changes, in order (the killing one last)."""
        if not self.trace.is_file():
            return []
        return [line.split("\t", 1)[1] for line in self.trace.read_text(encoding="utf-8").splitlines()]


def _spec(args, root, kill_at, match, ops, env, setup, count_file, folder) -> dict:
    return {
        "args": [str(a) for a in args], "root": str(root), "kill_at": int(kill_at), "match": match or "",
        "ops": list(ops), "env": dict(os.environ if env is None else env), "setup": setup,
        "count_file": str(count_file or ""), "trace": str(Path(folder) / f"trace-{os.getpid()}-{next(_IDS)}.tsv"),
    }  # fmt: skip


def wrapper(folder: str | os.PathLike) -> Path:
    """Write the wrapper script (for :func:`run_kmq`) into ``folder``; returns its path."""
    path = Path(folder) / "killpoints_wrapper.py"
    path.write_text(WRAPPER, encoding="utf-8")
    return path


def run_kmq(
    script: str | os.PathLike,
    args: Sequence[str | os.PathLike],
    *,
    root: str | os.PathLike,
    kill_at: int = 0,
    match: str | None = None,
    ops: Sequence[str] = ("replace", "rename"),
    env: dict[str, str] | None = None,
    setup: str = "",
    count_file: str | os.PathLike | None = None,
    timeout: float = 300,
) -> KmqRun:
    """Run ``kmq ARGS`` in a fresh interpreter through the wrapper ``script`` (:func:`wrapper`).

    Parameters
    ----------
    root : path
        Only changes of paths under this folder count.
    kill_at : int, default 0
        SIGKILL before the ``kill_at``-th counted change; 0 never kills.
    match : str or None
        Count only changes whose target (relative to ``root``, ``/``-separated) matches this regex.
    ops : sequence of str
        The ``os`` functions hooked; ``"open"`` hooks ``open`` for writing (modes with w, a, x or +).
    env : dict or None
        The child's environment (default: this process's).
    setup : str
        Python run in the child before kmq starts (e.g. a smaller block size for a test).
    count_file : path or None
        Where the child writes how many changes it counted when it exits without being killed.
    """
    spec = _spec(args, root, kill_at, match, ops, env, setup, count_file, Path(script).parent)
    cmd = [sys.executable, str(script), json.dumps({k: v for k, v in spec.items() if k not in ("args", "env")}),
           *spec["args"]]  # fmt: skip
    proc = subprocess.run(cmd, env=spec["env"], capture_output=True, text=True, timeout=timeout)
    return KmqRun(proc.returncode, proc.stdout, proc.stderr, Path(spec["trace"]))


class Forkserver:
    """A process that has imported kmq (and ``preload``) and forks one child per :meth:`run` (POSIX only).

    Use it as a context manager; :meth:`run` takes the arguments of :func:`run_kmq` (without ``script``)
    plus ``cwd``.
    """

    def __init__(self, preload: Sequence[str] = ()) -> None:
        self.preload = list(preload)
        self.folder = Path(tempfile.mkdtemp(prefix="kmq-forkserver-"))
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Forkserver:
        script = self.folder / "forkserver.py"
        script.write_text(FORKSERVER, encoding="utf-8")
        self.proc = subprocess.Popen([sys.executable, str(script), *self.preload], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)  # fmt: skip
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)

    def run(
        self,
        args: Sequence[str | os.PathLike],
        *,
        root: str | os.PathLike,
        kill_at: int = 0,
        match: str | None = None,
        ops: Sequence[str] = ("replace", "rename"),
        env: dict[str, str] | None = None,
        setup: str = "",
        cwd: str | os.PathLike | None = None,
        count_file: str | os.PathLike | None = None,
        timeout: float = 300,
    ) -> KmqRun:
        """Fork a child that runs ``kmq ARGS`` (see :func:`run_kmq` for the parameters)."""
        assert self.proc is not None, "use Forkserver as a context manager"
        spec = _spec(args, root, kill_at, match, ops, env, setup, count_file, self.folder)
        n = next(_IDS)
        out, err = self.folder / f"stdout-{n}.txt", self.folder / f"stderr-{n}.txt"
        spec.update(stdout=str(out), stderr=str(err), cwd=str(cwd or os.getcwd()))
        self.proc.stdin.write(json.dumps(spec) + "\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.proc.kill()
            raise TimeoutError(f"kmq {' '.join(spec['args'])} did not finish in {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fork server died (exit {self.proc.wait()})")
        rc = json.loads(line)["returncode"]
        return KmqRun(rc, out.read_text(errors="replace"), err.read_text(errors="replace"), Path(spec["trace"]))
