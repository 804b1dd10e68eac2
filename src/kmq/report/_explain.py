"""``kmq explain RUN_DIR ID``: where one pool record went, and why, from ``pool.parquet``."""

from __future__ import annotations

import bisect
import difflib
import math
import os
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError, MissingArtifactError
from kmq.report._html import dig
from kmq.report._rundir import RunData

POOL_FIELDS = ("id", "pool_index", "cluster", "quality", "selected", "rank", "duplicate_of", "contaminated",
               "stratum", "cos_centroid", "preview")  # fmt: skip
PICK_FIELDS = ("quota", "cluster_size", "probability", "score", "cos_centroid", "reason", "round")
OTHER_PICKS = 10


def _pool(run: RunData) -> Any:
    pool = run.pool
    if pool is None:
        argv = dig(run.manifest, "versions.argv") or "the selection"
        raise MissingArtifactError(
            f"{run.path / 'pool.parquet'} not found: this run directory predates kmq's pool table. Rerun {argv} "
            "to write it."
        )
    return pool


def _find(pool: Any, record_id: str, run: RunData) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pool.column("id")
    row = pc.index(ids, pa.scalar(record_id, ids.type)).as_py()
    if row >= 0:
        return int(row)
    raise InvalidParameterError(
        f"{record_id!r} is not an id of the pool of {run.path} ({pool.num_rows} rows in pool.parquet). "
        f"Closest ids: {', '.join(closest_ids(ids.to_pylist(), record_id)) or 'none'}."
    )


def closest_ids(ids: list[Any], query: str, n: int = 5) -> list[str]:
    """Up to ``n`` ids near ``query``, most similar first (ties: the longer common prefix).

    The candidates are its neighbours in sorted order and, for pools up to 50k ids, difflib's closest matches.
    """
    strs = sorted({str(i) for i in ids if i is not None})
    at = bisect.bisect_left(strs, query)
    near = set(strs[max(0, at - 2) : at + 2])
    if len(strs) <= 50_000:
        near |= set(difflib.get_close_matches(query, strs, n=4 * n, cutoff=0.5))

    def key(s: str) -> tuple[float, int, str]:
        prefix = len(os.path.commonprefix([s, query]))
        return (-difflib.SequenceMatcher(None, query, s).ratio(), -prefix, s)

    return sorted(near, key=key)[:n]


def explain(run_dir: str | os.PathLike, record_id: str) -> dict[str, Any]:
    """The pool row of ``record_id``, its pick explanation, its cluster and why it was or was not picked.

    Returns
    -------
    dict
        ``record`` (the pool.parquet row), ``pick`` (selection.parquet's explanation columns, or None),
        ``cluster`` (size, quota, picks, mean_quality; None without clusters), ``quality_rank`` ((r, m): rank
        r of m candidates by quality in its cluster, or in the pool without clusters), ``other_picks``
        (id, preview of the cluster's other picks, by rank), ``why`` (one sentence).

    Raises
    ------
    MissingArtifactError
        ``run_dir`` is not a run directory, or has no pool.parquet.
    InvalidParameterError
        No pool row has this id (the message lists the closest ids).
    """
    run = RunData(run_dir)
    pool = _pool(run)
    row = _find(pool, str(record_id), run)
    rec = {f: pool.column(f)[row].as_py() for f in POOL_FIELDS if f in pool.column_names}
    pick = _pick(run, rec)
    cl = rec.get("cluster")
    clusters = pool.column("cluster").to_numpy(zero_copy_only=False) if "cluster" in pool.column_names else None
    cluster = _cluster_info(run, pool, cl, clusters) if cl is not None else None
    rank = _quality_rank(pool, row, cl, clusters)
    others = _other_picks(pool, row, cl, clusters)
    out = {"record": rec, "pick": pick, "cluster": cluster, "quality_rank": rank, "other_picks": others,
           "method": dig(run.manifest, "method.name"), "duplicate_picked": _dup_picked(pool, rec, run)}  # fmt: skip
    out["why"] = _why(out)
    return out


def _dup_picked(pool: Any, rec: dict[str, Any], run: RunData) -> bool | None:
    """Whether the record this one duplicates was picked (None when it is no duplicate or not found)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    of = rec.get("duplicate_of")
    if of is None or "selected" not in pool.column_names:
        return None
    ids = pool.column("id")
    row = pc.index(ids, pa.scalar(str(of), ids.type)).as_py()
    return None if row < 0 else bool(pool.column("selected")[row].as_py())


def _pick(run: RunData, rec: dict[str, Any]) -> dict[str, Any] | None:
    sel = run.selection
    if not rec.get("selected") or sel is None:
        return None
    idx = np.asarray(sel.column("pool_index").to_numpy(), dtype=np.int64)
    hit = np.flatnonzero(idx == rec.get("pool_index"))
    if not len(hit):
        return None
    return {f: sel.column(f)[int(hit[0])].as_py() for f in PICK_FIELDS if f in sel.column_names}


def _cluster_info(run: RunData, pool: Any, cl: int, clusters: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"cluster": cl}
    table = run.clusters
    if table is not None:
        ids = np.asarray(table.column("cluster").fill_null(-1).to_numpy(), dtype=np.int64)
        hit = np.flatnonzero(ids == cl)
        if len(hit):
            info.update({c: table.column(c)[int(hit[0])].as_py() for c in table.column_names if c != "cluster"})
    if "size" not in info and clusters is not None:
        info["size"] = int(np.sum(clusters == cl))
    return info


def _candidates(pool: Any, cl: Any, clusters: Any) -> np.ndarray:
    n = pool.num_rows
    ok = np.ones(n, bool)
    for name in ("duplicate_of", "contaminated"):
        if name in pool.column_names:
            ok &= ~np.asarray(pool.column(name).is_valid().to_numpy(), dtype=bool)
    if cl is not None and clusters is not None:
        ok &= np.asarray(clusters == cl)
    return ok


def _quality_rank(pool: Any, row: int, cl: Any, clusters: Any) -> tuple[int, int] | None:
    if "quality" not in pool.column_names:
        return None
    q = np.asarray(pool.column("quality").to_numpy(zero_copy_only=False), dtype=np.float64)
    if not math.isfinite(q[row]):
        return None
    ok = _candidates(pool, cl, clusters) & np.isfinite(q)
    return int(np.sum(q[ok] > q[row])) + 1, int(np.sum(ok))


def _other_picks(pool: Any, row: int, cl: Any, clusters: Any) -> list[tuple[str, str]]:
    if cl is None or clusters is None or "selected" not in pool.column_names:
        return []
    sel = np.asarray(pool.column("selected").fill_null(False).to_numpy(), dtype=bool)
    rows = np.flatnonzero(sel & np.asarray(clusters == cl))
    rows = rows[rows != row]
    if "rank" in pool.column_names:
        rank = np.asarray(pool.column("rank").fill_null(-1).to_numpy(), dtype=np.int64)
        rows = rows[np.argsort(rank[rows], kind="stable")]
    rows = rows[:OTHER_PICKS]
    ids = pool.column("id").take(rows).to_pylist()
    prev = pool.column("preview").take(rows).to_pylist() if "preview" in pool.column_names else [""] * len(rows)
    return [(str(i), p or "") for i, p in zip(ids, prev, strict=True)]


def _why(e: dict[str, Any]) -> str:
    rec, pick, cl, rank = e["record"], e["pick"], e["cluster"], e["quality_rank"]
    method = e.get("method") or "the method"
    if rec.get("selected"):
        text = f"picked by {method} (rank {rec.get('rank')} in pick order, 0 = first)"
        if pick and pick.get("reason"):
            text += f": {pick['reason']}"
        return text + "."
    if rec.get("duplicate_of") is not None:
        kept = e.get("duplicate_picked")
        state = "" if kept is None else " (which was picked)" if kept else " (which was not picked either)"
        return f"not picked: removed before selection as a duplicate of {rec['duplicate_of']}{state}."
    if rec.get("contaminated") is not None:
        return f"not picked: removed before selection as contaminated by the eval set {rec['contaminated']}."
    rank_text = ""
    if rank:
        rank_text = f"; its quality ranks {rank[0]} of {rank[1]} candidates in {'its cluster' if cl else 'the pool'}"
    if cl:
        quota, size, picks = cl.get("quota"), cl.get("size"), cl.get("picks")
        quota_text = f"quota {quota} of size {size}" if quota is not None else f"size {size}"
        got = f", {picks} picked" if picks is not None else ""
        return f"not drawn by {method}: its cluster {cl['cluster']} had {quota_text}{got}{rank_text}."
    return f"not picked by {method}{rank_text}."


def format_explanation(e: dict[str, Any]) -> list[str]:
    """The lines ``kmq explain`` prints."""
    rec = e["record"]
    lines = [f"{'id':<18}{rec.get('id')}"]
    for f in POOL_FIELDS[1:]:
        if f in rec and f != "preview":
            lines.append(f"{f:<18}{_show(rec[f])}")
    if e["quality_rank"]:
        r, m = e["quality_rank"]
        where = "in its cluster" if e["cluster"] else "in the pool"
        lines.append(f"{'quality rank':<18}{r} of {m} candidates ({where})")
    if e["pick"]:
        lines += [f"{'pick.' + k:<18}{_show(v)}" for k, v in e["pick"].items()]
    if e["cluster"]:
        lines.append(f"{'cluster info':<18}" + ", ".join(f"{k}={_show(v)}" for k, v in e["cluster"].items()))
    lines.append(f"{'preview':<18}{rec.get('preview', '')!r}")
    lines.append(f"{'why':<18}{e['why']}")
    if e["other_picks"]:
        lines.append(f"other picks of cluster {rec.get('cluster')} (by pick order):")
        lines += [f"  {i}  {p[:100]!r}" for i, p in e["other_picks"]]
    elif e["cluster"]:
        lines.append(f"other picks of cluster {rec.get('cluster')}: none")
    return lines


def _show(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "-" if v is None else str(v)
