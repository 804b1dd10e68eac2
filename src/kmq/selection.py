"""The result of a selection run, and the run directory it writes.

A run directory holds (design.md §4)::

    config.yaml         the resolved RunConfig: load it with --config to rerun
    manifest.json       versions, seed, input fingerprint, per-stage stats and timings, counts, outputs
    selection.parquet   id, pool_index, cluster, quality, round, rank, reason: one row per selected record
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kmq.config import RunConfig, dump_yaml
from kmq.publish import OutputPlan, input_paths, plan_outputs

#: random stream of the subset's order with ``shuffle`` (the pipeline's are 1-4)
STREAM_SHUFFLE = 5


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
    duplicates: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.indices)

    def __repr__(self) -> str:
        m = self.manifest
        parts = [f"{len(self)} of {m.get('counts', {}).get('pool', len(self.pool))} records"]
        method = m.get("method", {})
        if method:
            params = ", ".join(f"{k}={v}" for k, v in (method.get("params") or {}).items())
            parts.append(f"method {method.get('name')}" + (f" ({params})" if params else ""))
        k = m.get("stages", {}).get("cluster", {}).get("n_clusters")
        if k is not None:
            parts.append(f"k={k}")
        subset = m.get("outputs", {}).get("subset", {}).get("path")
        if subset:
            parts.append(f"written to {subset}")
        if self.run_dir is not None:
            parts.append(f"run dir {self.run_dir}")
        return f"{type(self).__name__}({', '.join(parts)})"

    #: the command a run directory of this selection belongs to (``kmq iterate`` subclasses say "iterate")
    command = "select"
    #: entries of the run directory that this command may create (recorded in its marker)
    run_entries: tuple[str, ...] = ()

    def write(self, out: str | Path, *, overwrite: bool = False) -> Path:
        """Write the selected records in the pool's own format (see :func:`kmq.data.write_subset`).

        ``out`` must not be an input; an existing ``out`` is replaced only with ``overwrite=True``.
        """
        self.publish(out=out, run_dir=None, overwrite=overwrite)
        return Path(out)

    def output_rows(self) -> np.ndarray:
        """The pool rows in the order the subset file lists them: the pool's order, or a seeded shuffle.

        (``indices`` keeps the order the method picked them; ``selection.parquet`` has it as ``rank``.)
        """
        rows = np.sort(np.asarray(self.indices, dtype=np.int64))
        if getattr(self.config, "shuffle", False):
            rows = np.random.default_rng([self.config.seed, STREAM_SHUFFLE]).permutation(rows)
        return rows

    def duplicates_table(self) -> Any:
        """``id`` and ``duplicate_of`` of every record deduplication removed (``duplicates.parquet``)."""
        import pyarrow as pa

        ids, of = zip(*self.duplicates, strict=True) if self.duplicates else ((), ())
        return pa.table({"id": pa.array(ids, pa.string()), "duplicate_of": pa.array(of, pa.string())})

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

    def save_run(self, run_dir: str | Path, *, overwrite: bool = False) -> Path:
        """Write ``config.yaml``, ``selection.parquet`` and ``manifest.json`` into ``run_dir``, together."""
        self.publish(out=None, run_dir=run_dir, overwrite=overwrite)
        return Path(run_dir)

    def plan(
        self, *, out: str | Path | None, run_dir: str | Path | None, overwrite: bool = False, inputs: Any = ()
    ) -> OutputPlan:
        """Check where this selection would be written (see :mod:`kmq.publish`); raises before anything is written."""
        inputs = [*inputs, *input_paths(str(getattr(self.pool, "source", "") or ""))]
        return plan_run(type(self), self.config, out=out, run_dir=run_dir, overwrite=overwrite, inputs=inputs)

    def publish(
        self,
        *,
        out: str | Path | None,
        run_dir: str | Path | None,
        overwrite: bool = False,
        plan: OutputPlan | None = None,
    ) -> dict[str, Any]:
        """Write the subset and the run directory so that they become visible together (:mod:`kmq.publish`)."""
        import pyarrow.parquet as pq

        from kmq.data import output_container, write_subset
        from kmq.redact import redact

        plan = plan or self.plan(out=out, run_dir=run_dir, overwrite=overwrite)
        container = output_container(self.pool, out if out is not None else plan.out) if plan.out is not None else None
        writers = {}
        if plan.run_dir is not None:
            writers = {
                "config.yaml": lambda p: p.write_text(dump_yaml(redact(self.config.to_dict())), encoding="utf-8"),
                "selection.parquet": lambda p: pq.write_table(self.table(), p),
                "duplicates.parquet": lambda p: pq.write_table(self.duplicates_table(), p),
            }

        def manifest(outputs: dict[str, Any]) -> dict[str, Any]:
            self.manifest["outputs"] = {**outputs, "selection": str(Path(outputs["run_dir"]) / "selection.parquet")}
            if "subset" in outputs:
                order = "seeded shuffle" if getattr(self.config, "shuffle", False) else "pool order"
                self.manifest["outputs"]["subset"]["order"] = order
                self.manifest["outputs"]["subset"].update(container=container, format=self.pool.format)
            return self.manifest

        written = plan.publish(
            writers,
            out_writer=(lambda p: write_subset(self.pool, self.output_rows(), p, container=container))
            if plan.out is not None
            else None,
            manifest=manifest if plan.run_dir is not None else None,
            argv=versions()["argv"],
        )
        if plan.run_dir is None:
            self.manifest.setdefault("outputs", {}).update(written)
        else:
            self.run_dir = plan.run_dir
        return written


def plan_run(
    kind: type[Selection],
    cfg: Any,
    *,
    out: str | Path | None,
    run_dir: str | Path | None,
    overwrite: bool = False,
    inputs: Any = (),
    dry_run: bool = False,
) -> OutputPlan:
    """Check the outputs of a run of ``kind`` (Selection or a subclass) before any work (:func:`plan_outputs`)."""
    return plan_outputs(
        kind.command,
        out=out,
        run_dir=run_dir,
        inputs=[*input_paths(*run_inputs(cfg)), *inputs],
        owned=kind.run_entries,
        overwrite=overwrite,
        dry_run=dry_run,
    )


def run_inputs(cfg: Any) -> list[str]:
    """The input paths a config names: the pool, ``npy:`` embeddings, and (for iterate) the base model."""
    found = [cfg.pool, cfg.embed.embedder, getattr(cfg.score, "relevance_embedder", None)]
    found.append(getattr(cfg, "model", None))
    return [f for f in found if f]


def input_summary(pool: Any) -> dict[str, Any]:
    """What the manifest records about the input pool."""
    return {
        "source": str(pool.source),
        "format": pool.format,
        **({"fields": str(pool.field_map)} if getattr(pool, "field_map", None) else {}),
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

