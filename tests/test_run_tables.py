"""The run directory's tables: pool.parquet, clusters.parquet, map.parquet and the explanation columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import kmq

DATAKIT = Path(__file__).resolve().parents[2] / "shared" / "datakit"
DOLLY = DATAKIT / "dolly_3k" / "dolly_3k.jsonl"


@pytest.fixture(scope="module")
def dolly_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "s.jsonl"
    sel = kmq.select(str(DOLLY), budget=120, embedder="hashing", out=out, run_dir=out.with_suffix(".run"))
    return sel, out.with_suffix(".run")


def test_pool_table_has_every_row_and_where_it_went(dolly_run):
    sel, run_dir = dolly_run
    pool = pq.read_table(run_dir / "pool.parquet").to_pydict()
    n = len(sel.pool)
    assert pool["pool_index"] == list(range(n)) and pool["id"] == list(sel.pool.ids)
    assert sum(pool["selected"]) == 120
    assert {i for i, s in enumerate(pool["selected"]) if s} == set(sel.indices.tolist())
    ranks = {pool["rank"][i]: i for i in sel.indices.tolist()}
    assert [ranks[r] for r in range(120)] == sel.indices.tolist()  # rank = pick order
    assert all(pool["rank"][i] is None for i in range(n) if not pool["selected"][i])
    # dolly_3k has 2 exact duplicate conversations: they name the row they duplicate, and are never picked
    dups = [(pool["id"][i], d) for i, d in enumerate(pool["duplicate_of"]) if d is not None]
    assert sorted(dups) == sorted(sel.duplicates) and len(dups) == 2
    assert not any(pool["selected"][pool["id"].index(i)] for i, _ in dups)
    labels = np.asarray(pool["cluster"])
    assert np.array_equal(labels[sel.indices], sel.clusters)
    assert all(p and len(p) <= 160 for p in pool["preview"])
    q = np.asarray(pool["quality"], dtype=float)
    assert np.allclose(q[sel.indices], sel.quality)


def test_clusters_table_counts_and_cosines(dolly_run):
    sel, run_dir = dolly_run
    cl = pq.read_table(run_dir / "clusters.parquet").to_pydict()
    k = sel.manifest["stages"]["cluster"]["n_clusters"]
    assert cl["cluster"] == list(range(k))
    assert sum(cl["picks"]) == 120 and sum(cl["pool_size"]) == len(sel.pool)
    assert sum(cl["size"]) == len(sel.pool) - 2  # the duplicates are not candidates
    assert cl["picks"] == np.bincount(sel.clusters, minlength=k).tolist()
    pool = pq.read_table(run_dir / "pool.parquet").to_pandas()
    cand = pool[pool["duplicate_of"].isna()]
    means = cand.groupby("cluster")["cos_centroid"].mean()
    assert np.allclose(np.asarray(cl["centroid_cos_mean"]), means.reindex(range(k)).to_numpy(), atol=1e-5)
    # cos_centroid of each pick is its row's cosine to its centroid: in (-1, 1], and equals pool.parquet's
    table = pq.read_table(run_dir / "selection.parquet").to_pydict()
    assert np.allclose(table["cos_centroid"], pool["cos_centroid"].to_numpy()[sel.indices], atol=1e-6)


def test_map_has_every_pick_and_is_deterministic(dolly_run, tmp_path):
    sel, run_dir = dolly_run
    m = pq.read_table(run_dir / "map.parquet").to_pydict()
    assert set(sel.indices.tolist()) <= set(m["pool_index"])
    assert np.isfinite(m["x"]).all() and np.std(m["x"]) > 0 and np.std(m["y"]) > 0
    out = tmp_path / "again.jsonl"
    kmq.select(str(DOLLY), budget=120, embedder="hashing", out=out, run_dir=out.with_suffix(".run"))
    for name in ("selection.parquet", "pool.parquet", "clusters.parquet", "map.parquet", "duplicates.parquet"):
        assert (run_dir / name).read_bytes() == (out.with_suffix(".run") / name).read_bytes(), name


def test_map_samples_large_pools_with_all_picks():
    from kmq.metrics.projection import map_rows

    picks = np.arange(0, 200_000, 50)
    rows = map_rows(200_000, picks, seed=3, max_points=10_000)
    assert len(rows) == 10_000 and np.all(np.diff(rows) > 0)
    assert set(picks.tolist()) <= set(rows.tolist())
    assert np.array_equal(rows, map_rows(200_000, picks, seed=3, max_points=10_000))
    many = map_rows(200_000, np.arange(0, 200_000, 2), seed=3, max_points=10_000)
    assert len(many) == 10_000  # more picks than half the map: a sample of them


def test_random_method_has_no_map_or_clusters(tmp_path):
    out = tmp_path / "r.jsonl"
    kmq.select(str(DOLLY), budget=50, method="random", out=out, run_dir=out.with_suffix(".run"))
    run_dir = out.with_suffix(".run")
    assert pq.read_table(run_dir / "map.parquet").num_rows == 0
    assert pq.read_table(run_dir / "clusters.parquet").num_rows == 0
    pool = pq.read_table(run_dir / "pool.parquet").to_pydict()
    assert sum(pool["selected"]) == 50 and set(pool["cluster"]) == {None}


def test_a_rerun_removes_the_previous_runs_stale_files(tmp_path):
    out = tmp_path / "s.jsonl"
    run_dir = out.with_suffix(".run")
    kmq.select(str(DOLLY), budget=50, embedder="hashing", out=out, run_dir=run_dir)
    (run_dir / "report.html").write_text("<html>an earlier run's report</html>")
    marker = json.loads((run_dir / "kmq-run.json").read_text())
    assert "report.html" in marker["owned"]
    kmq.select(str(DOLLY), budget=60, embedder="hashing", out=out, run_dir=run_dir)
    assert not (run_dir / "report.html").exists()  # it described another run
    (run_dir / "notes.txt").write_text("mine")
    kmq.select(str(DOLLY), budget=70, embedder="hashing", out=out, run_dir=run_dir, overwrite=True)
    assert (run_dir / "notes.txt").read_text() == "mine"  # not kmq's: kept
