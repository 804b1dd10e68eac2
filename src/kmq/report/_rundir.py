"""Reading a finished run directory for the report, ``kmq compare`` and ``kmq explain``.

A run directory is kmq's when it holds the marker ``kmq-run.json`` (or, for older versions, a kmq
``manifest.json``; :func:`kmq.publish.read_marker`). Its Parquet tables (``selection``, ``pool``, ``map``,
``clusters``, ``duplicates``) are read on first use; a missing one is ``None`` and the page says so.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from kmq.errors import DataFormatError, MissingArtifactError

TABLES = ("selection", "pool", "map", "clusters", "duplicates")


class RunData:
    """The files of one run directory, loaded lazily.

    Parameters
    ----------
    path : path-like
        The run directory (``SUBSET.kmq-run`` beside a subset, or ``--run-dir``).

    Raises
    ------
    MissingArtifactError
        ``path`` is not a kmq run directory (no marker and no kmq ``manifest.json``).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from kmq.publish import read_marker

        self.path = Path(path)
        if not self.path.is_dir():
            what = "does not exist" if not self.path.exists() else "is not a folder"
            raise MissingArtifactError(
                f"{self.path} {what}: pass the run directory of a `kmq select` or `kmq iterate` run "
                "(SUBSET.kmq-run beside the subset, or its --run-dir)."
            )
        self.marker = read_marker(self.path)
        if self.marker is None or not (self.path / "manifest.json").is_file():
            raise MissingArtifactError(
                f"{self.path} is not a kmq run directory (no kmq-run.json and manifest.json in it): pass the run "
                "directory of a `kmq select` or `kmq iterate` run (SUBSET.kmq-run beside the subset)."
            )

    @cached_property
    def manifest(self) -> dict[str, Any]:
        path = self.path / "manifest.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise DataFormatError(f"{path}: not valid JSON ({err}). Rerun the selection to write it again.") from err
        if not isinstance(data, dict):
            raise DataFormatError(f"{path}: expected a JSON object, got {type(data).__name__}.")
        return data

    @property
    def command(self) -> str:
        return str(self.manifest.get("command") or self.marker.get("command") or "select")

    @property
    def diagnostics(self) -> dict[str, Any] | None:
        diag = self.manifest.get("diagnostics")
        return diag if isinstance(diag, dict) else None

    def table(self, name: str, columns: list[str] | None = None) -> Any:
        """``RUN_DIR/<name>.parquet`` as a pyarrow Table (only ``columns`` that exist), or None when absent."""
        import pyarrow.parquet as pq

        path = self.path / f"{name}.parquet"
        if not path.is_file():
            return None
        try:
            pf = pq.ParquetFile(path)  # not pq.read_table: its dataset layer imports pandas (seconds)
            cols = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
            return pf.read(columns=cols)
        except Exception as err:  # pyarrow raises ArrowInvalid / OSError subclasses for damaged files
            raise DataFormatError(
                f"{path}: cannot be read as Parquet ({type(err).__name__}: {err}). Rerun the selection to write it."
            ) from err

    @cached_property
    def selection(self) -> Any:
        return self.table("selection")

    @cached_property
    def pool(self) -> Any:
        return self.table("pool")

    @cached_property
    def map(self) -> Any:
        return self.table("map")

    @cached_property
    def clusters(self) -> Any:
        return self.table("clusters")

    @cached_property
    def duplicates(self) -> Any:
        return self.table("duplicates")

    @cached_property
    def rounds(self) -> list[dict[str, Any]]:
        """The rounds of an iterate run: ``manifest["rounds"]``, else ``rounds/rNN/reweight/weights.json``."""
        rounds = self.manifest.get("rounds")
        if isinstance(rounds, list) and rounds:
            return [r for r in rounds if isinstance(r, dict)]
        out = []
        folder = self.path / "rounds"
        for rdir in sorted(folder.glob("r[0-9][0-9]*")) if folder.is_dir() else []:
            entry: dict[str, Any] = {"round": int(rdir.name[1:])}
            wfile = rdir / "reweight" / "weights.json"
            if wfile.is_file():
                try:
                    w = json.loads(wfile.read_text(encoding="utf-8"))
                except ValueError:
                    w = {}
                entry.update(weights=w.get("weights_before"), signal=w.get("signal"), scored=w.get("scored"),
                             weights_after=w.get("weights"))  # fmt: skip
            out.append(entry)
        return out

    def owned_paths(self) -> list[Path]:
        """The entries of the run directory that kmq wrote (what a report output must never replace)."""
        names = set((self.marker or {}).get("owned") or []) | {"manifest.json", "config.yaml", "kmq-run.json"}
        names |= {f"{t}.parquet" for t in TABLES}
        return [self.path / n for n in sorted(names)]
