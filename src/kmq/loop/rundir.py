"""The iterative run directory: one folder per step, completion markers, resume and the settings check.

Layout::

    RUN_DIR/
      DONE-prepare  prepare/            clusters (labels.npy) and quality (quality.npy) of the pool
      rounds/r01/
        DONE-select   select/           indices drawn this round, counts per cluster, weights used
        DONE-train    train/            train.jsonl (the round's data) and model/ (the checkpoint)
        DONE-generate generate/         generations.jsonl: the model's greedy answer per selected prompt
        DONE-judge    judge/            judge scores of gold and generated answers, instance scores S
        DONE-reweight reweight/         cluster signals, scored counts, new weights (weights.json)
      rounds/r02/ ...
      config.yaml  manifest.json  selection.parquet     (written at the end of every finished run)

A step computes into a hidden temporary folder that is renamed into place when complete; only then is
its marker ``DONE-<step>`` written (atomically). The marker holds a digest of the step's own settings and
of the digests of the steps it reads from, plus those settings, its stats and timing. A rerun skips every
step whose marker matches, deletes the leftovers of a step that has no marker (a killed run) and computes
it again; because every random draw comes from ``default_rng([seed, stream, round])`` and decoding is
greedy, the result equals an uninterrupted run. A marker that does not match is an error naming the
setting (``--restart-from STEP`` deletes that step and every later one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kmq.cache import atomic_path, digest, write_json
from kmq.errors import InvalidParameterError, OutputConflictError, RunDirBusyError, SettingsChangedError
from kmq.publish import pid_alive

logger = logging.getLogger(__name__)

STEPS = ("select", "train", "generate", "judge", "reweight")
VERBS = {
    "prepare": "prepared", "select": "selected", "train": "trained", "generate": "generated",
    "judge": "judged", "reweight": "reweighted", "eval": "evaluated",
}  # fmt: skip
#: the file inside every step folder that says kmq made it (only such folders are ever deleted)
OWN = ".kmq-step"
_STEP_ID = re.compile(r"prepare|r(\d{2,})-(select|train|generate|judge|reweight)")


@dataclass
class StepResult:
    """A finished step: its folder, digest and marker content."""

    step_id: str
    folder: Path
    digest: str
    marker: dict[str, Any]
    computed: bool


def step_id(round_: int, step: str) -> str:
    return f"r{round_:02d}-{step}"


def _order(sid: str) -> tuple[int, int]:
    match = _STEP_ID.fullmatch(sid)
    if match is None:
        raise InvalidParameterError(
            f"--restart-from must be 'prepare' or rNN-STEP with STEP in {list(STEPS)} (e.g. r01-train). "
            f"Got {sid!r} instead."
        )
    return (0, 0) if sid == "prepare" else (int(match[1]), STEPS.index(match[2]))


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}"))
    return out


def _show(v: Any) -> str:
    return v if isinstance(v, str) else repr(v)


class RunDir:
    """Folders, markers and the resume logic of one iterative run (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold ``RUN_DIR/.lock`` (our pid) while running; a lock whose process is gone (killed) is taken over."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / ".lock"
        while True:
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and pid_alive(pid):
                    raise RunDirBusyError(
                        f"{self.root} is in use by another kmq iterate (pid {pid}). Wait for it to finish or "
                        "pass another --run-dir."
                    ) from None
                path.unlink(missing_ok=True)  # left by a killed run
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            break
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def folder(self, sid: str) -> Path:
        if sid == "prepare":
            return self.root / "prepare"
        rnd, step = sid.split("-", 1)
        return self.root / "rounds" / rnd / step

    def marker_path(self, sid: str) -> Path:
        folder = self.folder(sid)
        return folder.parent / f"DONE-{folder.name}"

    def where(self, sid: str) -> str:
        return "prepare" if sid == "prepare" else f"rounds/{sid.split('-')[0]}"

    def finished(self) -> list[str]:
        """Step ids with a marker, in run order."""
        found = ["prepare"] if self.marker_path("prepare").is_file() else []
        for marker in self.root.glob("rounds/r*/DONE-*"):
            sid = f"{marker.parent.name}-{marker.name[5:]}"
            if _STEP_ID.fullmatch(sid):
                found.append(sid)
        return sorted(found, key=_order)

    def restart_from(self, sid: str) -> list[str]:
        """Delete step ``sid`` and every later step (markers first, then folders); returns what was deleted."""
        start = _order(sid)
        gone = [s for s in self.finished() if _order(s) >= start]
        for s in gone:  # check every folder first: delete nothing when one of them is not kmq's
            folder = self.folder(s)
            if (folder.exists() or folder.is_symlink()) and not self._is_own(s, folder, marked=True):
                raise OutputConflictError(f"{folder} is not a folder kmq made; kmq will not delete it. Move it away.")
        for s in reversed(gone):
            self.marker_path(s).unlink(missing_ok=True)
        for s in gone:
            shutil.rmtree(self.folder(s), ignore_errors=True)
        if gone:
            logger.info("restarting from %s: deleted %s", sid, ", ".join(gone))
        return gone

    def key(self, sid: str, settings: dict[str, Any], inputs: dict[str, str]) -> str:
        """The digest the marker of step ``sid`` holds when it was computed with ``settings`` from ``inputs``."""
        return digest("kmq-iterate-step-v1", sid, settings, inputs)

    def ensure(
        self,
        sid: str,
        settings: dict[str, Any],
        inputs: dict[str, str],
        compute: Callable[[Path], dict[str, Any]],
        *,
        legacy_settings: dict[str, Any] | None = None,
    ) -> StepResult:
        """Return the finished step ``sid``, computing it first when it has no marker.

        Parameters
        ----------
        settings : dict
            JSON values of every setting the step's output depends on (not the upstream ones).
        inputs : dict of str
            Digest of each upstream step the step reads (``{"r01-select": "..."}``).
        compute : callable
            ``compute(tmp_folder) -> stats``: writes the step's artifacts into the (existing, empty) folder.
        legacy_settings : dict, optional
            The settings as an earlier kmq version recorded them: a marker with that digest is accepted too.
        """
        key = self.key(sid, settings, inputs)
        marker, folder = self.marker_path(sid), self.folder(sid)
        if marker.is_file():
            done = json.loads(marker.read_text(encoding="utf-8"))
            legacy = legacy_settings is not None and done.get("digest") == digest(
                "kmq-iterate-step-v1", sid, legacy_settings, inputs
            )
            if done.get("digest") != key and not legacy:
                raise self._changed(sid, done, settings, inputs)
            if folder.is_dir():
                return StepResult(sid, folder, done["digest"], done, computed=False)  # (a legacy digest stays)
            marker.unlink()  # the artifacts were deleted by hand: compute them again
        if folder.exists():  # renamed into place, but killed before the marker was written
            self._remove_own(sid, folder)
        for name in (folder.name, marker.name):  # a killed run's half-written folder or marker
            for tmp in folder.parent.glob(f".{name}.tmp-*"):
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink(missing_ok=True)
        logger.info("%s: start", sid)
        start = time.perf_counter()
        with atomic_path(folder) as tmp:
            tmp.mkdir()
            (tmp / OWN).write_text(sid + "\n", encoding="utf-8")
            stats = compute(tmp)
        seconds = round(time.perf_counter() - start, 3)
        done = {
            "step": sid, "digest": key, "settings": settings, "inputs": inputs, "stats": stats,
            "seconds": seconds, "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }  # fmt: skip
        write_json(marker, done)
        logger.info("%s: done in %.1fs", sid, seconds)
        return StepResult(sid, folder, key, done, computed=True)

    def _is_own(self, sid: str, folder: Path, *, marked: bool = False) -> bool:
        """Whether kmq made ``folder``: it holds the ownership file, or (run folders of earlier kmq versions) the
        step's marker was valid when ``marked``."""
        return folder.is_dir() and not folder.is_symlink() and ((folder / OWN).is_file() or marked)

    def _remove_own(self, sid: str, folder: Path) -> None:
        """Delete a step folder that kmq made; anything else at a step's path is an error, never deleted."""
        if not self._is_own(sid, folder):
            raise OutputConflictError(
                f"{folder} exists but was not made by kmq (no {OWN} inside), so kmq will not delete it. Move it "
                "out of the run directory, or pass another --run-dir."
            )
        shutil.rmtree(folder)

    def _changed(self, sid: str, done: dict[str, Any], settings: dict[str, Any], inputs: dict[str, str]):
        old, new = _flat(done.get("settings", {})), _flat(json.loads(json.dumps(settings, default=str)))
        keys = [*new, *(k for k in old if k not in new)]  # the step's own order: the main setting first
        diffs = [k for k in keys if old.get(k, "<unset>") != new.get(k, "<unset>")]
        where, verb = self.where(sid), VERBS[sid.rsplit("-", 1)[-1]]
        if diffs:
            k = diffs[0]
            msg = f"{where} was {verb} with {k}={_show(old.get(k))}; now {k}={_show(new.get(k))}."
            if len(diffs) > 1:
                msg += f" (Other changed settings: {', '.join(diffs[1:6])}.)"
        else:
            ups = [
                k for k in sorted(set(inputs) | set(done.get("inputs", {}))) if done["inputs"].get(k) != inputs.get(k)
            ]
            msg = f"{where} was {verb} from other inputs than now ({', '.join(ups) or 'unknown'} changed)."
        return SettingsChangedError(f"{msg} Use a new --run-dir or pass --restart-from {sid}.")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
