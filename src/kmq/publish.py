"""What kmq may write, and how a run's outputs become visible together.

The rules (README, "File safety"):

1. **kmq writes only paths it owns.** A run directory is kmq's when it holds the marker ``kmq-run.json``
   (written by kmq, naming the command that made it) or is empty or missing. A non-empty folder without
   the marker, or a run directory of another command (``select`` vs ``iterate``), is refused unless the user
   passes ``--overwrite``. An existing subset file is replaced only when the run directory records it as its
   own output (same path and bytes) or with ``--overwrite``.
2. **No output may be an input.** Every output (the subset, each file of the run directory, the run
   directory itself) is compared after resolving symlinks with every input (pool, embeddings, config,
   model folders...); an output equal to an input or inside an input folder is refused, ``--overwrite`` or not.
3. **Nothing half-written, nothing mismatched.** Every output is first written completely into a
   staging folder (``.kmq-stage-<pid>-<hex>``) beside its final place; only then a commit journal
   (``RUN_DIR/.kmq-commit.json``) is written and the staged files are renamed into place, the manifest and
   the marker last. A failure while staging (disk full, read-only folder, a bad record) leaves the previous
   outputs as they were. The renames of the commit take microseconds and SIGINT/SIGTERM wait for them; a
   SIGKILL or power loss among them leaves the journal, and the next kmq run on that run directory finishes
   the renames before doing anything else. Stale staging folders of killed runs are removed then too.
4. **kmq deletes only what it made.** With ``--overwrite`` over a kmq run directory, only the entries its
   marker lists as kmq's are removed; other files stay.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import re
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kmq.errors import KmqError, OutputConflictError, OutputWriteError

logger = logging.getLogger(__name__)

MARKER = "kmq-run.json"
JOURNAL = ".kmq-commit.json"
_STAGE = re.compile(r"\.kmq-stage-(\d+)-[0-9a-f]+")
_OLD_TMP = re.compile(r"\.(.+)\.tmp-[0-9a-f]{8}")  # cache.atomic_path leftovers of earlier kmq versions
RUN_SUFFIX = ".kmq-run"


def default_run_dir(out: str | os.PathLike) -> Path:
    """The run directory of a subset: ``subset.jsonl`` -> ``subset.jsonl.kmq-run`` beside it.

    The whole file name is kept, so ``s.json`` and ``s.parquet`` get different run directories.
    """
    out = Path(out)
    return out.with_name(f"{out.name or 'subset'}{RUN_SUFFIX}")


def resolved(path: str | os.PathLike) -> Path:
    """``path`` made absolute with every symlink resolved (also for paths that do not exist yet)."""
    return Path(os.path.realpath(Path(path).expanduser()))


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | os.PathLike) -> str:
    """SHA-256 of a file, or of a folder's files (relative names and bytes, in sorted order)."""
    path = Path(path)
    if not path.is_dir():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode() + b"\0" + sha256_file(f).encode() + b"\0")
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- the checks


def input_paths(*specs: str | os.PathLike | None) -> list[Path]:
    """The local paths among pool sources, ``npy:PATH`` specs, config files and model names (hub names skipped)."""
    out = []
    for spec in specs:
        if spec is None or spec == "":
            continue
        text = str(spec)
        if text.startswith("npy:"):
            text = text[4:]
        p = Path(text).expanduser()
        if p.exists():
            out.append(resolved(p))
    return out


def check_not_input(what: str, path: Path, inputs: Iterable[Path]) -> None:
    """Refuse an output that is an input, lies inside an input folder, or would contain an input it replaces."""
    target = resolved(path)
    for inp in inputs:
        if target == inp:
            raise OutputConflictError(
                f"{what} {path} is an input of this run ({inp}); kmq never overwrites an input. Pass another path."
            )
        if inp.is_dir() and inp in target.parents:
            raise OutputConflictError(
                f"{what} {path} lies inside the input folder {inp}; kmq never writes into an input. "
                "Pass a path outside it."
            )


def read_marker(run_dir: Path) -> dict[str, Any] | None:
    """The marker of a kmq run directory, or None when ``run_dir`` is not one.

    Run directories of kmq versions before the marker are recognised by their ``manifest.json``
    (a ``command`` of select/iterate and kmq in ``versions``).
    """
    marker = run_dir / MARKER
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(marker.read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("tool") == "kmq" and isinstance(data.get("command"), str):
            return data
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        if (
            isinstance(manifest, dict)
            and manifest.get("command") in ("select", "iterate")
            and "kmq" in (manifest.get("versions") or {})
        ):
            owned = ["config.yaml", "manifest.json", "selection.parquet"]
            if manifest["command"] == "iterate":
                owned += ["prepare", "DONE-prepare", "rounds", ".lock"]
            subset = (manifest.get("outputs") or {}).get("subset")
            return {"tool": "kmq", "command": manifest["command"], "owned": owned, "legacy": True,
                    "outputs": {"subset": subset} if subset else {}}  # fmt: skip
    return None


#: the files a run directory of ``kmq select`` / ``kmq iterate`` may hold besides the marker; those a run does
#: not write are removed from the previous run's (when its marker owns them), so no file describes another run
RUN_FILES = (
    "config.yaml", "selection.parquet", "duplicates.parquet", "pool.parquet", "clusters.parquet", "map.parquet",
    "decontaminated.parquet", "report.html", "manifest.json",
)  # fmt: skip


@dataclass
class OutputPlan:
    """The checked outputs of one run (see the module docstring); build it with :func:`plan_outputs`.

    Attributes
    ----------
    command : str
        ``select``, ``iterate`` or ``score``.
    out : Path or None
        The subset (or scores) file, as given.
    run_dir : Path or None
    run_files : tuple of str
        The entries of the run directory this run writes (besides the marker).
    owned : tuple of str
        Every entry of the run directory kmq may create for this command (recorded in the marker).
    previous : dict or None
        The marker found in ``run_dir`` (None for a new or empty folder).
    overwrite : bool
    """

    command: str
    out: Path | None
    run_dir: Path | None
    run_files: tuple[str, ...]
    owned: tuple[str, ...]
    inputs: list[Path]
    previous: dict[str, Any] | None = None
    overwrite: bool = False
    recovered: list[str] = field(default_factory=list)

    def claim(self, argv: str = "") -> None:
        """Mark ``run_dir`` as kmq's before any step writes into it (``kmq iterate`` claims it at start)."""
        if self.run_dir is None:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if (
            self.previous is not None
            and self.previous.get("command") == self.command
            and not self.previous.get("legacy")
        ):
            return
        self._remove_foreign_kmq_entries()  # --overwrite over the other command's run: its steps/outputs go first
        _write_json_atomic(self.run_dir / MARKER, self._marker({}, argv))
        self.previous = read_marker(self.run_dir)

    def _marker(self, outputs: dict[str, Any], argv: str) -> dict[str, Any]:
        from kmq.redact import redact_url

        try:
            version = importlib.metadata.version("kmq")
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"

        argv = redact_url(argv)
        return {
            "tool": "kmq",
            "version": version,
            "command": self.command,
            "argv": argv,
            "updated_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "owned": sorted({*self.owned, MARKER}),
            "outputs": outputs,
        }

    def _remove_foreign_kmq_entries(self) -> None:
        """With ``--overwrite`` over a run directory of another kmq command: remove the entries kmq made there."""
        prev = self.previous
        if prev is None or prev.get("command") == self.command or self.run_dir is None:
            return
        for name in prev.get("owned", []):
            if "/" in name or name in ("", ".", "..", MARKER) or name in self.owned:
                continue  # this run writes (or just wrote) those itself
            entry = self.run_dir / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.exists() or entry.is_symlink():
                entry.unlink()
        logger.warning("--overwrite: removed the %s run's files from %s", prev.get("command"), self.run_dir)

    def _remove_stale_files(self, written: set[str]) -> None:
        """Remove the run files of the previous run that this run did not write (only those its marker owned)."""
        if self.run_dir is None or self.previous is None:
            return
        owned = set(self.previous.get("owned", []))
        for name in self.run_files:
            entry = self.run_dir / name
            if name not in written and name in owned and entry.is_file() and not entry.is_symlink():
                entry.unlink()

    # -- publishing ---------------------------------------------------------------------------------------
    def publish(
        self,
        run_writers: dict[str, Callable[[Path], Any]],
        *,
        out_writer: Callable[[Path], Any] | None = None,
        manifest: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        argv: str = "",
        late_writers: dict[str, Callable[[Path], Any]] | None = None,
    ) -> dict[str, Any]:
        """Stage every output, then commit them together (module docstring, rule 3).

        Parameters
        ----------
        run_writers : dict of str to callable
            ``name -> write(path)`` for each file of the run directory (``config.yaml``, ``selection.parquet``).
        out_writer : callable, optional
            ``write(path)`` of the subset; it must write exactly ``path`` (a file, or a folder for folder formats).
        manifest : callable, optional
            ``manifest(outputs) -> dict`` builds ``manifest.json`` once the staged outputs' digests are known.
        late_writers : dict of str to callable, optional
            Files written after ``manifest.json``, into the same stage: ``write(path)`` may read the staged run
            directory ``path.parent`` (the report reads the run's tables and manifest).

        Files of :attr:`run_files` that this run does not write, and that the previous marker owned, are removed
        once the new outputs are in place (a report of an earlier run must not sit beside this run's tables).

        Returns
        -------
        dict
            ``{"subset": {"path", "sha256"}, "run_dir": ...}``: what was written.
        """
        outputs: dict[str, Any] = {}
        stages: list[Path] = []
        moves: list[tuple[Path, Path]] = []
        made = [p for p in (self.run_dir, self.out.parent if self.out is not None else None) if p and not p.exists()]
        committed = False
        try:
            if self.out is not None and out_writer is not None:
                stage = _new_stage(self.out.parent)
                stages.append(stage)
                staged = stage / self.out.name
                _guard_write(self.out, lambda: out_writer(staged))
                outputs["subset"] = {"path": str(resolved(self.out)), "sha256": sha256_tree(staged)}
                if self.run_dir is not None:  # ownership survives moving the subset and its run directory together
                    outputs["subset"]["relative_to_run_dir"] = os.path.relpath(
                        resolved(self.out), resolved(self.run_dir)
                    )
                moves.append((staged, self.out))
            if self.run_dir is not None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                stage = _new_stage(self.run_dir)
                stages.append(stage)
                for name, write in run_writers.items():
                    _guard_write(self.run_dir / name, lambda w=write, n=name: w(stage / n))
                    moves.append((stage / name, self.run_dir / name))
                outputs["run_dir"] = str(resolved(self.run_dir))
                if manifest is not None:
                    from kmq.redact import redact

                    body = redact(manifest(outputs))
                    _guard_write(self.run_dir / "manifest.json", lambda: _write_json(stage / "manifest.json", body))
                    moves.append((stage / "manifest.json", self.run_dir / "manifest.json"))
                for name, write in (late_writers or {}).items():
                    _guard_write(self.run_dir / name, lambda w=write, n=name: w(stage / n))
                    moves.append((stage / name, self.run_dir / name))
                _write_json(stage / MARKER, self._marker(outputs, argv))
                moves.append((stage / MARKER, self.run_dir / MARKER))
            _commit(self.run_dir, moves)
            committed = True
            self._remove_foreign_kmq_entries()  # only after the new outputs are in place
            self._remove_stale_files({dst.name for _, dst in moves if dst.parent == self.run_dir})
        finally:
            for stage in stages:
                shutil.rmtree(stage, ignore_errors=True)
            if not committed:  # a failed publish leaves no folder it created behind either
                for folder in made:
                    with contextlib.suppress(OSError):
                        folder.rmdir()
        self.previous = read_marker(self.run_dir) if self.run_dir is not None else None
        return outputs


def plan_outputs(
    command: str,
    *,
    out: str | os.PathLike | None,
    run_dir: str | os.PathLike | None,
    inputs: Iterable[Path] = (),
    run_files: Iterable[str] = RUN_FILES,
    owned: Iterable[str] = (),
    overwrite: bool = False,
    out_is_kmq: Callable[[Path], bool] | None = None,
    dry_run: bool = False,
) -> OutputPlan:
    """Check a run's outputs before any work is done (module docstring, rules 1-2); recover a killed commit.

    Raises
    ------
    OutputConflictError
        An output is an input, the run directory belongs to someone else or another command, ``--out`` and
        ``--run-dir`` are the same path, or ``--out`` is an existing folder / a file kmq did not write.

    With ``dry_run`` nothing is changed on disk (no recovery, no cleaning).
    """
    inputs = list(inputs)
    outp = Path(out).expanduser() if out is not None else None
    rdir = Path(run_dir).expanduser() if run_dir is not None else None
    if rdir is not None and rdir.is_dir() and (read_marker(rdir) or {}).get("command") == command:
        # a rerun from RUN/config.yaml: that file was read whole before anything runs, and it is kmq's own
        inputs = [i for i in inputs if i != resolved(rdir / "config.yaml")]
    run_files = tuple(run_files)
    plan = OutputPlan(command, outp, rdir, run_files, tuple({*run_files, *owned}), inputs, overwrite=overwrite)
    if rdir is not None:
        if rdir.exists() and not rdir.is_dir():
            raise OutputConflictError(f"--run-dir {rdir} is an existing file; pass a folder for the run directory.")
        check_not_input("--run-dir", rdir, inputs)
        for name in (*run_files, MARKER):
            check_not_input(f"--run-dir {rdir}: its {name}", rdir / name, inputs)
        for inp in inputs:
            if resolved(rdir) in inp.parents and inp.relative_to(resolved(rdir)).parts[0] in plan.owned:
                raise OutputConflictError(
                    f"--run-dir {rdir} would replace the input {inp} (kmq writes {inp.name} there). "
                    "Pass another --run-dir."
                )
        if rdir.is_dir():
            if not dry_run:
                plan.recovered = recover(rdir)
            plan.previous = read_marker(rdir)
            _check_run_dir(plan)
    if outp is not None:
        if rdir is not None and resolved(outp) == resolved(rdir):
            raise OutputConflictError(f"--out and --run-dir are the same path ({outp}); pass different paths.")
        if rdir is not None and resolved(outp).parent == resolved(rdir) and outp.name in (*plan.owned, MARKER):
            raise OutputConflictError(f"--out {outp} is a file of the run directory {rdir}; pass another --out.")
        check_not_input("--out", outp, inputs)
        if outp.parent.is_dir() and not dry_run:
            clean_stages(outp.parent)
        _check_out(plan, out_is_kmq)
    return plan


def _check_run_dir(plan: OutputPlan) -> None:
    rdir, prev = plan.run_dir, plan.previous
    assert rdir is not None
    entries = [p.name for p in rdir.iterdir() if not _STAGE.fullmatch(p.name)]
    if prev is None:
        if entries and not plan.overwrite:
            shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
            raise OutputConflictError(
                f"--run-dir {rdir} is not empty ({shown}) and is not a kmq run directory (no {MARKER}). "
                "Pass a new or empty --run-dir, or --overwrite to write kmq's files into it."
            )
        if entries:
            clashes = [n for n in plan.owned if (rdir / n).exists()]
            if clashes:
                logger.warning("--overwrite: replacing %s in %s (not made by kmq)", ", ".join(sorted(clashes)), rdir)
        return
    if prev.get("command") != plan.command and not plan.overwrite:
        raise OutputConflictError(
            f"--run-dir {rdir} holds a `kmq {prev.get('command')}` run; this is `kmq {plan.command}`. "
            "Pass another --run-dir (or --out), or --overwrite to replace that run's files."
        )


def _check_out(plan: OutputPlan, out_is_kmq: Callable[[Path], bool] | None) -> None:
    out = plan.out
    assert out is not None
    if out.is_dir() and not _owned_out(plan, out):
        raise OutputConflictError(
            f"--out {out} is an existing folder; pass a file path such as {out / 'subset.jsonl'}."
        )
    if not (out.exists() or out.is_symlink()) or plan.overwrite:
        return
    if _owned_out(plan, out) or (out_is_kmq is not None and out_is_kmq(out)):
        return
    raise OutputConflictError(
        f"--out {out} exists and kmq did not write it (or it changed since). Pass another --out, "
        "or --overwrite to replace it."
    )


def _owned_out(plan: OutputPlan, out: Path) -> bool:
    subset = ((plan.previous or {}).get("outputs") or {}).get("subset") or {}
    rel = subset.get("relative_to_run_dir")
    here = os.path.relpath(resolved(out), resolved(plan.run_dir)) if plan.run_dir is not None else None
    if not subset or (subset.get("path") != str(resolved(out)) and (rel is None or rel != here)):
        return False
    try:
        return sha256_tree(out) == subset.get("sha256")
    except OSError:
        return False


# ----------------------------------------------------------------------------------------------- commit


def recover(run_dir: Path) -> list[str]:
    """Finish a commit that a kill interrupted, then remove stale staging folders; returns what was moved."""
    journal = run_dir / JOURNAL
    moved: list[str] = []
    if journal.is_file():
        try:
            data = json.loads(journal.read_text(encoding="utf-8"))
            moves, pid = data["moves"], int(data.get("pid", 0))
        except (OSError, ValueError, KeyError, TypeError):
            moves, pid = [], 0  # a journal is written atomically: an unreadable one was never committed
        if pid and pid != os.getpid() and pid_alive(pid):
            return moved  # another kmq process is committing right now
        for src, dst in moves:
            if Path(src).exists():
                os.replace(src, dst)
                moved.append(dst)
        journal.unlink(missing_ok=True)
        if moved:
            logger.warning("%s: finished publishing the outputs of an interrupted run (%s)", run_dir,
                           ", ".join(Path(m).name for m in moved))  # fmt: skip
    clean_stages(run_dir)
    return moved


def clean_stages(folder: Path) -> None:
    """Remove the staging folders (and ``.tmp`` files of kmq's atomic writes) that killed runs left in ``folder``."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for p in entries:
        m = _STAGE.fullmatch(p.name)
        if m is not None:
            pid = int(m.group(1))
            if pid == os.getpid() or pid_alive(pid):
                continue
            shutil.rmtree(p, ignore_errors=True)
        elif folder.joinpath(MARKER).exists() and _OLD_TMP.fullmatch(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _commit(run_dir: Path | None, moves: list[tuple[Path, Path]]) -> None:
    if not moves:
        return
    with deferred_signals():
        journal = run_dir / JOURNAL if run_dir is not None else None
        if journal is not None:
            _write_json_atomic(journal, {"pid": os.getpid(), "moves": [[str(s), str(d)] for s, d in moves]})
        for src, dst in moves:
            if dst.is_dir() and not dst.is_symlink() and src.is_dir():
                shutil.rmtree(dst)  # a folder output (save_to_disk) replaced by its staged copy
            os.replace(src, dst)
        if journal is not None:
            journal.unlink(missing_ok=True)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP received inside the block are re-sent when it ends (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    sigs = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    old = {s: signal.signal(s, lambda num, _frame: got.append(num)) for s in sigs}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
        for num in got:
            os.kill(os.getpid(), num)


def _new_stage(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stage = folder / f".kmq-stage-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    try:
        stage.mkdir()
    except OSError as err:
        raise OutputWriteError(_env_message(folder, err)) from err
    return stage


def _guard_write(final: Path, write: Callable[[], Any]) -> None:
    """Run a staged write; an environment fault (disk full, read-only) names the output it was for."""
    try:
        write()
    except KmqError:
        raise
    except OSError as err:
        raise OutputWriteError(_env_message(final, err)) from err


def _env_message(path: Path, err: OSError) -> str:
    reason = os.strerror(err.errno) if err.errno else str(err)
    hint = {
        errno.ENOSPC: "free some space or write elsewhere",
        errno.EROFS: "the file system is read-only: write elsewhere",
        errno.EACCES: "you may not write there: write elsewhere or fix the permissions",
        errno.EPERM: "you may not write there: write elsewhere or fix the permissions",
        errno.EDQUOT: "your disk quota is full: free some space or write elsewhere",
    }.get(err.errno or 0, "nothing was changed")
    return f"cannot write {path}: {reason} ({hint}; the previous outputs are unchanged)."


def finite_json(obj: Any) -> Any:
    """A copy of a JSON-like value with NaN and infinities (not JSON) replaced by None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def _write_json(path: Path, obj: Any) -> None:
    from kmq.cache import _json_default

    obj = finite_json(json.loads(json.dumps(obj, default=_json_default)))
    text = json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _write_json_atomic(path: Path, obj: Any) -> None:
    from kmq.cache import atomic_path

    try:
        with atomic_path(path) as tmp:
            _write_json(tmp, obj)
    except OSError as err:
        raise OutputWriteError(_env_message(path, err)) from err


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` is running (a lock or staging folder of a live kmq is left alone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
