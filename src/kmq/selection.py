"""The result of a selection run, and the run directory it writes.

A run directory holds (design.md §4)::

    config.yaml         the resolved RunConfig: load it with --config to rerun
    manifest.json       versions, seed, input fingerprint, per-stage stats and timings, counts, diagnostics
    selection.parquet   one row per selected record: id, pool_index, cluster, quality, round, rank, reason and
                        why it was picked (quota, cluster_size, probability, score, cos_centroid, stratum)
    pool.parquet        one row per pool record: id, cluster, quality, selected, rank, duplicate_of,
                        contaminated, stratum, preview, cos_centroid ("why wasn't X picked?" is one lookup)
    clusters.parquet    one row per cluster: size, quota, picks, mean quality, mean cosine to the centroid
    map.parquet         pool_index, x, y: a 2-D projection of a seeded sample of the pool (with the picks)
    duplicates.parquet  id, duplicate_of: what deduplication removed
"""

from __future__ import annotations

import importlib.metadata
import platform
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kmq.config import RunConfig, dump_yaml
from kmq.publish import OutputPlan, input_paths, plan_outputs

#: random stream of the subset's order with ``shuffle`` (the pipeline's are 1-4)
STREAM_SHUFFLE = 5
#: characters of the first user turn kept in pool.parquet's ``preview``
PREVIEW_CHARS = 160
#: rows of a pool.parquet row group: pyarrow.parquet's default row group length, so writing it a row group at
#: a time gives the bytes one ``write_table`` of the whole table gives
POOL_ROW_GROUP = 1024 * 1024
#: the keys of :attr:`Selection.pool_info` that pool.parquet shows row by row
_POOL_INFO = ("labels", "quality", "contaminated", "stratum", "cos_centroid")
#: the per-pick explanation columns of selection.parquet and their Arrow types' names
EXPLAIN_COLUMNS = {
    "quota": "int64", "cluster_size": "int64", "probability": "float64", "score": "float64",
    "cos_centroid": "float64", "stratum": "string",
}  # fmt: skip


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
    #: per-pick explanation arrays aligned with ``indices`` (keys of :data:`EXPLAIN_COLUMNS`)
    explain: dict[str, Any] = field(default_factory=dict)
    #: pool-level arrays (n,): labels, quality, dup_of, contaminated, stratum, cos_centroid (each optional)
    pool_info: dict[str, Any] = field(default_factory=dict)
    #: what decontamination found (:class:`kmq.shape.decontam.Contamination`), or None without eval sets
    contamination: Any = None
    #: the map: (pool rows (m,), coordinates (m, 2)), or None when the method used no embeddings
    map_xy: tuple[np.ndarray, np.ndarray] | None = None

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
        columns = {
            "id": pa.array(self.ids, pa.string()),
            "pool_index": pa.array(self.indices, pa.int64()),
            "cluster": _column(self.clusters, b, pa.int64()),
            "quality": _column(self.quality, b, pa.float64()),
            "round": pa.array(np.zeros(b, dtype=np.int32), pa.int32()),
            "rank": pa.array(np.arange(b, dtype=np.int64), pa.int64()),
            "reason": pa.array(self.reason, pa.string()),
        }
        for name, kind in EXPLAIN_COLUMNS.items():
            columns[name] = _column(self.explain.get(name), b, getattr(pa, kind)())
        return pa.table(columns)

    def pool_table(self) -> Any:
        """One row per pool record (``pool.parquet``): where it went and why (see the module docstring)."""
        import pyarrow as pa

        return pa.Table.from_batches(list(self.pool_batches()))

    def pool_batches(self, rows: int = POOL_ROW_GROUP) -> Iterator[Any]:
        """:meth:`pool_table` as ``pyarrow.RecordBatch`` es of ``rows`` records (the last one shorter; one empty
        batch for an empty pool), built one at a time: no column of n Python objects."""
        import pyarrow as pa

        n = len(self.pool)
        info = self.pool_info
        selected = np.zeros(n, dtype=bool)
        selected[self.indices] = True
        rank = np.full(n, -1, dtype=np.int64)
        rank[self.indices] = np.arange(len(self.indices))
        ids = self.pool.ids
        dup_of = info.get("dup_of")
        dup_of = None if dup_of is None else np.asarray(dup_of)
        for lo in range(0, max(n, 1), rows):
            hi = min(n, lo + rows)
            part = {key: None if info.get(key) is None else info[key][lo:hi] for key in _POOL_INFO}
            m, sel = hi - lo, selected[lo:hi]
            dup_ids: list[str | None] = [None] * m
            if dup_of is not None:
                d = dup_of[lo:hi]
                at = np.flatnonzero(d >= 0)
                for pos, rid in zip(at.tolist(), _ids_at(ids, d[at]), strict=True):
                    dup_ids[pos] = rid
            yield pa.RecordBatch.from_pydict(
                {
                    "id": pa.array(ids[lo:hi], pa.string()),
                    "pool_index": pa.array(np.arange(lo, hi, dtype=np.int64), pa.int64()),
                    "cluster": _column(part["labels"], m, pa.int64()),
                    "quality": _column(part["quality"], m, pa.float64()),
                    "selected": pa.array(sel, pa.bool_()),
                    "rank": pa.array(rank[lo:hi], pa.int64(), mask=~sel),
                    "duplicate_of": pa.array(dup_ids, pa.string()),
                    "contaminated": _column(part["contaminated"], m, pa.string()),
                    "stratum": _column(part["stratum"], m, pa.string()),
                    "preview": _previews(self.pool, lo, hi),
                    "cos_centroid": _column(part["cos_centroid"], m, pa.float32()),
                }
            )

    def write_pool(self, path: str | Path, rows: int = POOL_ROW_GROUP) -> None:
        """Write ``pool.parquet``: :meth:`pool_batches` of ``rows``, one Parquet row group each (the bytes
        ``pyarrow.parquet.write_table(self.pool_table(), path, row_group_size=rows)`` writes)."""
        import pyarrow.parquet as pq

        writer = None
        try:
            for batch in self.pool_batches(rows):
                writer = writer or pq.ParquetWriter(path, batch.schema)
                writer.write_batch(batch)
        finally:
            if writer is not None:
                writer.close()

    def clusters_table(self) -> Any:
        """One row per cluster (``clusters.parquet``): size, quota, picks, mean quality, mean cosine to the centroid.

        ``size`` counts the selectable rows (after deduplication and decontamination); ``pool_size`` all rows.
        """
        import pyarrow as pa

        labels = self.pool_info.get("labels")
        names = ("cluster", "size", "pool_size", "quota", "picks", "mean_quality", "centroid_cos_mean")
        if labels is None:
            types = (pa.int64(),) * 5 + (pa.float64(),) * 2
            return pa.table({c: pa.array([], t) for c, t in zip(names, types, strict=True)})
        labels = np.asarray(labels, dtype=np.int64)
        k = int(self.pool_info.get("n_clusters") or (labels.max() + 1 if len(labels) else 0))
        candidate = np.asarray(self.pool_info.get("candidate", np.ones(len(labels), dtype=bool)), dtype=bool)
        size = np.bincount(labels[candidate], minlength=k)
        picks = np.bincount(labels[self.indices], minlength=k) if len(self.indices) else np.zeros(k, np.int64)
        quota = np.asarray(self.pool_info.get("quota", picks), dtype=np.int64)

        def mean_of(values: Any) -> Any:
            if values is None:
                return pa.array([None] * k, pa.float64())
            v = np.asarray(values, dtype=np.float64)
            ok = candidate & np.isfinite(v)
            total = np.bincount(labels[ok], weights=v[ok], minlength=k)
            count = np.bincount(labels[ok], minlength=k)
            return pa.array(np.divide(total, count, out=np.zeros(k), where=count > 0), pa.float64(), mask=count == 0)

        return pa.table(
            {
                "cluster": pa.array(np.arange(k, dtype=np.int64)),
                "size": pa.array(size.astype(np.int64)),
                "pool_size": pa.array(np.bincount(labels, minlength=k).astype(np.int64)),
                "quota": pa.array(quota),
                "picks": pa.array(picks.astype(np.int64)),
                "mean_quality": mean_of(self.pool_info.get("quality")),
                "centroid_cos_mean": mean_of(self.pool_info.get("cos_centroid")),
            }
        )

    def map_table(self) -> Any:
        """``pool_index``, ``x``, ``y`` of the map's rows (``map.parquet``; empty without embeddings)."""
        import pyarrow as pa

        rows, xy = self.map_xy if self.map_xy is not None else (np.zeros(0, np.int64), np.zeros((0, 2), np.float32))
        return pa.table(
            {
                "pool_index": pa.array(np.asarray(rows, dtype=np.int64)),
                "x": pa.array(np.asarray(xy[:, 0], dtype=np.float32)),
                "y": pa.array(np.asarray(xy[:, 1], dtype=np.float32)),
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
        report: Callable[..., Any] | None = None,
    ) -> dict[str, Any]:
        """Write the subset and the run directory so that they become visible together (:mod:`kmq.publish`).

        ``report(run_dir, out=path)`` (:func:`kmq.report.write_report`) writes ``report.html`` into the staged
        run directory, after its tables and manifest, so the report is published with the run it shows.
        """
        import pyarrow.parquet as pq

        from kmq.data import conversion_stats, output_container, write_subset
        from kmq.redact import redact

        plan = plan or self.plan(out=out, run_dir=run_dir, overwrite=overwrite)
        container = output_container(self.pool, out if out is not None else plan.out) if plan.out is not None else None
        out_format = getattr(self.config, "out_format", "same")
        writers = {}
        if plan.run_dir is not None:
            writers = {
                "config.yaml": lambda p: p.write_text(dump_yaml(redact(self.config.to_dict())), encoding="utf-8"),
                "selection.parquet": lambda p: pq.write_table(self.table(), p),
                "duplicates.parquet": lambda p: pq.write_table(self.duplicates_table(), p),
                **(
                    {"decontaminated.parquet": lambda p: pq.write_table(self.contamination.matches, p)}
                    if self.contamination is not None
                    else {}
                ),
                "pool.parquet": lambda p: self.write_pool(p),
                "clusters.parquet": lambda p: pq.write_table(self.clusters_table(), p),
                "map.parquet": lambda p: pq.write_table(self.map_table(), p),
            }

        def manifest(outputs: dict[str, Any]) -> dict[str, Any]:
            self.manifest["outputs"] = {**outputs, "selection": str(Path(outputs["run_dir"]) / "selection.parquet")}
            if "subset" in outputs:
                order = "seeded shuffle" if getattr(self.config, "shuffle", False) else "pool order"
                self.manifest["outputs"]["subset"]["order"] = order
                self.manifest["outputs"]["subset"].update(
                    container=container, format=self.pool.format if out_format == "same" else out_format
                )
                if out_format != "same":
                    self.manifest["outputs"]["subset"]["conversion"] = conversion_stats(
                        self.pool, self.output_rows(), out_format, container=container
                    )
            return self.manifest

        written = plan.publish(
            writers,
            out_writer=(
                lambda p: write_subset(self.pool, self.output_rows(), p, container=container, out_format=out_format)
            )
            if plan.out is not None
            else None,
            manifest=manifest if plan.run_dir is not None else None,
            argv=versions()["argv"],
            late_writers={"report.html": lambda p: report(p.parent, out=p)} if report and plan.run_dir else None,
        )
        if plan.run_dir is None:
            self.manifest.setdefault("outputs", {}).update(written)
        else:
            self.run_dir = plan.run_dir
        return written


def _column(values: Any, n: int, kind: Any) -> Any:
    """An Arrow column of ``values`` (NaN and None become nulls), or ``n`` nulls when ``values`` is None."""
    import pyarrow as pa

    if values is None:
        return pa.nulls(n, kind)
    if isinstance(values, np.ndarray) and values.dtype.kind == "f" and pa.types.is_floating(kind):
        return pa.array(values, kind, mask=~np.isfinite(values))
    return pa.array(values.tolist() if isinstance(values, np.ndarray) else values, kind, from_pandas=True)


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
    """The input paths a config names: the pool, ``npy:`` embeddings, eval sets, (for iterate) the base model."""
    found = [cfg.pool, cfg.embed.embedder, getattr(cfg.score, "relevance_embedder", None)]
    found.append(getattr(cfg, "model", None))
    found += [_eval_path(spec) for spec in getattr(cfg, "decontaminate", None) or []]
    return [f for f in found if f]


def _eval_path(spec: str) -> str:
    """The file or folder of a ``--decontaminate PATH[:FIELD]`` spec."""
    if Path(spec).expanduser().exists():
        return spec
    head, sep, _ = spec.rpartition(":")
    return head if sep and head else spec


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


def _ids_at(ids: Any, rows: np.ndarray) -> list[str]:
    """``ids[j]`` for each of ``rows``: a list of str or a pool's :class:`~kmq.data._ids.Ids` (taken in Arrow)."""
    take = getattr(ids, "take", None)
    return take(rows) if take is not None else [ids[j] for j in rows.tolist()]


def _previews(pool: Any, lo: int = 0, hi: int | None = None) -> Any:
    """The first :data:`PREVIEW_CHARS` characters of the prompt of records ``lo:hi`` (all by default), as a
    ``pyarrow.StringArray``.

    Sliced in Arrow (no Python str per record); Arrow strings are UTF-8, so when some text holds a lone
    surrogate (kept in the records and the subset) the texts are decoded and it shows as U+FFFD.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = pool.text_array("prompt", lo, hi)
    if pa.types.is_large_string(arr.type):
        return pc.utf8_slice_codeunits(arr, 0, PREVIEW_CHARS).cast(pa.string())
    from kmq.data.formats import LONE_SURROGATE

    texts = [b.decode("utf-8", "surrogatepass") for b in arr.to_pylist()]
    return pa.array([LONE_SURROGATE.sub("\ufffd", t[:PREVIEW_CHARS]) for t in texts], pa.string())
