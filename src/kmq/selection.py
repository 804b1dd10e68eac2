"""The result of a selection run, and the run directory it writes.

A run directory holds (design.md §4)::

    config.yaml         the resolved RunConfig: load it with --config to rerun
    manifest.json       versions, seed, input fingerprint, per-stage stats and timings, counts, outputs
    selection.parquet   id, pool_index, cluster, quality, round, rank, reason: one row per selected record
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache import atomic_path, write_json, write_text
from kmq.config import RunConfig, dump_config


@dataclass
class Selection:
    """A selected subset of a pool.

    Attributes
    ----------
    indices : ndarray of shape (b,), int64
        Pool rows in the order they were picked.
    ids : list of str
        The records' ids, aligned with ``indices``.
    clusters : ndarray of shape (b,), int64, or None
        Cluster of each selected record (methods that cluster).
    quality : ndarray of shape (b,), float64, or None
        Quality of each selected record (methods that score).
    reason : list of str
        Why each record was picked.
    pool : Pool
        The pool it was selected from (``write`` reads the original records from it).
    config : RunConfig
        The resolved configuration.
    manifest : dict
        Stats, timings and provenance (what ``manifest.json`` holds).
    """

    indices: np.ndarray
    ids: list[str]
    clusters: np.ndarray | None
    quality: np.ndarray | None
    reason: list[str]
    pool: Any
    config: RunConfig
    manifest: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def write(self, out: str | Path) -> Path:
        """Write the selected records in the pool's own format (see :func:`kmq.data.write_subset`)."""
        from kmq.data import write_subset

        path = write_subset(self.pool, self.indices, out)
        self.manifest.setdefault("outputs", {})["subset"] = {"path": str(path), "sha256": _sha256(path)}
        return path

    def table(self) -> Any:
        """The selection as a ``pyarrow.Table`` (the columns of ``selection.parquet``)."""
        import pyarrow as pa

        b = len(self.indices)
        return pa.table(
            {
                "id": pa.array(self.ids, pa.string()),
                "pool_index": pa.array(self.indices, pa.int64()),
                "cluster": pa.array(self.clusters if self.clusters is not None else [None] * b, pa.int64()),
                "quality": pa.array(self.quality if self.quality is not None else [None] * b, pa.float64()),
                "round": pa.array(np.zeros(b, dtype=np.int32), pa.int32()),
                "rank": pa.array(np.arange(b, dtype=np.int64), pa.int64()),
                "reason": pa.array(self.reason, pa.string()),
            }
        )

    def save_run(self, run_dir: str | Path) -> Path:
        """Write ``config.yaml``, ``selection.parquet`` and ``manifest.json`` into ``run_dir`` (each atomically)."""
        import pyarrow.parquet as pq

        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", dump_config(self.config))
        with atomic_path(run_dir / "selection.parquet") as tmp:
            pq.write_table(self.table(), tmp)
        self.manifest.setdefault("outputs", {})["selection"] = str(run_dir / "selection.parquet")
        write_json(run_dir / "manifest.json", self.manifest)
        self.run_dir = run_dir
        return run_dir


def input_summary(pool: Any) -> dict[str, Any]:
    """What the manifest records about the input pool."""
    return {
        "source": str(pool.source),
        "format": pool.format,
        "container": pool.container,
        "records": len(pool),
        "fingerprint": pool.fingerprint,
    }


def source_counts(pool: Any, indices: np.ndarray) -> dict[str, int] | None:
    """Picked records per ``source`` label (the datakit's), read from the picked records only; None without one."""
    if "source" not in pool.columns():
        return None
    values, freq = np.unique([str(r.get("source")) for r in pool.records(indices)], return_counts=True)
    return {str(v): int(c) for v, c in zip(values, freq, strict=True)}


def versions() -> dict[str, str]:
    """Versions of kmq, Python and the libraries that shape the result (those installed)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for dist in (
        "kmq",
        "numpy",
        "faiss-cpu",
        "faiss-gpu",
        "pyarrow",
        "torch",
        "sentence-transformers",
        "transformers",
    ):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    out["argv"] = " ".join(sys.argv) if sys.argv and sys.argv[0].endswith("kmq") else ""
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
