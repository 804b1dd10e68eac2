"""kmq.select end to end on real datakit records, with the hashing embedder (the model adds nothing here)."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

import kmq
from kmq.data import read_pool


@pytest.fixture
def pool_file(datakit, tmp_path):
    """600 real records from three sources (messages JSONL)."""
    lines = []
    for name, count in (("dolly_3k", 250), ("gsm8k_train", 200), ("code_alpaca_2k", 150)):
        lines += (datakit / name / f"{name}.jsonl").read_text().splitlines()[:count]
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(pool_file, out, **kw):
    kw.setdefault("embedder", "hashing")
    return kmq.select(str(pool_file), budget=kw.pop("budget", 60), out=out, run_dir=out.with_suffix(".run"), **kw)


def test_select_writes_subset_and_run_dir(pool_file, tmp_path):
    sel = run(pool_file, tmp_path / "s.jsonl")
    assert len(sel) == 60 and len(set(sel.ids)) == 60
    assert sel.clusters is not None and sel.quality is not None
    pool_lines = pool_file.read_bytes().splitlines()
    out_lines = (tmp_path / "s.jsonl").read_bytes().splitlines()
    assert out_lines == [pool_lines[i] for i in sorted(sel.indices)]  # the pool's order
    table = pq.read_table(tmp_path / "s.run" / "selection.parquet").to_pydict()
    assert table["id"] == sel.ids and table["pool_index"] == sel.indices.tolist()
    assert set(table) == {"id", "pool_index", "cluster", "quality", "round", "rank", "reason", "quota", "cluster_size",
                          "probability", "score", "cos_centroid", "stratum"}
    manifest = json.loads((tmp_path / "s.run" / "manifest.json").read_text())
    assert manifest["budget"]["resolved"] == 60 and manifest["input"]["records"] == 600
    assert manifest["method"]["params"] == {"allocation": "equal", "within": "softmax", "temperature": 1.0}
    assert sum(manifest["counts"]["per_source"].values()) == 60
    assert manifest["outputs"]["subset"]["sha256"]
    resolved = kmq.load_config(tmp_path / "s.run" / "config.yaml")
    assert resolved.budget == 60 and resolved.embed.embedder == "hashing"


def test_same_seed_same_bytes_other_seed_differs(pool_file, tmp_path):
    run(pool_file, tmp_path / "a.jsonl", seed=5)
    run(pool_file, tmp_path / "b.jsonl", seed=5)
    run(pool_file, tmp_path / "c.jsonl", seed=6)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.run/selection.parquet").read_bytes() == (tmp_path / "b.run/selection.parquet").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()


def test_second_run_recomputes_nothing_upstream(pool_file, tmp_path):
    first = run(pool_file, tmp_path / "a.jsonl", budget=100, clusters=12)
    assert first.manifest["stages"]["cluster"]["cached"] is False
    second = run(pool_file, tmp_path / "b.jsonl", budget=50, clusters=12, temperature=0.5)
    stages = second.manifest["stages"]
    assert all(v["encoded"] == 0 for v in stages["embed"].values())
    assert stages["cluster"]["cached"] is True and stages["score"]["from_cache"] is True


def test_kmq_spreads_over_clusters_more_evenly_than_random(pool_file, tmp_path):
    sel = run(pool_file, tmp_path / "k.jsonl", clusters=10)
    rnd = run(pool_file, tmp_path / "r.jsonl", method="random")
    assert rnd.clusters is None and rnd.quality is None
    counts = np.bincount(sel.clusters, minlength=10)
    assert counts.min() >= 5  # equal allocation: 6 each unless a cluster is smaller
    assert sorted(rnd.reason) == ["uniform random"] * 60


def test_fraction_budget_and_proportional_allocation(pool_file, tmp_path):
    sel = run(pool_file, tmp_path / "p.jsonl", budget=0.1, clusters=8, allocation="proportional")
    assert len(sel) == 60
    pool = read_pool(pool_file)
    assert sel.ids == [pool.ids[i] for i in sel.indices]


def test_pool_object_and_write(pool_file, tmp_path):
    pool = read_pool(pool_file)
    sel = kmq.select(pool, budget=30, embedder="hashing", method="random", seed=1)
    path = sel.write(tmp_path / "x.jsonl")
    assert len(path.read_text().splitlines()) == 30
    sel.save_run(tmp_path / "run")
    assert (tmp_path / "run" / "manifest.json").is_file()


def test_precomputed_embeddings_and_column_scores(pool_file, tmp_path):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(600, 16)).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)
    records = [json.loads(x) for x in pool_file.read_text().splitlines()]
    for i, r in enumerate(records):
        r["score"] = float(i % 10)
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(json.dumps(r) + "\n" for r in records))
    sel = kmq.select(
        str(scored), budget=40, embedder=f"npy:{tmp_path / 'emb.npy'}", scorer="column:score", clusters=4, within="top"
    )
    assert len(sel) == 40 and sel.quality.min() >= 5  # top-10 per cluster of a 150-row cluster are all >= 5
    cfg = kmq.RunConfig.from_dict({"score": {"relevance_embedder": "hashing"}})  # minilm would add ~1 min here
    with_rel = kmq.select(str(pool_file), budget=40, embedder=f"npy:{tmp_path / 'emb.npy'}", clusters=4, config=cfg)
    assert with_rel.manifest["stages"]["score"]["relevance_encoder"] == "hashing"
    cfg = kmq.RunConfig.from_dict({"score": {"scorer": "relevance", "relevance_embedder": "hashing"}})
    rel = kmq.select(str(pool_file), budget=40, embedder=f"npy:{tmp_path / 'emb.npy'}", clusters=4, config=cfg)
    assert rel.manifest["stages"]["score"]["encoder"] == "hashing"  # not the npy: vectors, which have no text
    assert rel.quality.max() <= 1.0 and rel.quality.min() >= -1.0


def test_auto_k_by_silhouette_is_recorded_and_cached(pool_file, tmp_path):
    cfg = kmq.RunConfig.from_dict(
        {"cluster": {"clusters": "auto", "candidates": [3, 6, 12], "silhouette_sample": 400}}
    )
    first = kmq.select(str(pool_file), budget=60, embedder="hashing", config=cfg)
    stats = first.manifest["stages"]["cluster"]
    assert stats["k_source"] == "silhouette" and [r["k"] for r in stats["silhouette"]] == [3, 6, 12]
    best = max(stats["silhouette"], key=lambda r: r["silhouette"])["k"]
    assert stats["n_clusters"] == best
    again = kmq.select(str(pool_file), budget=30, embedder="hashing", config=cfg)
    assert again.manifest["stages"]["cluster"]["cached"] is True


@pytest.mark.parametrize(
    "method", ["kmq", "random", "kmeans-random", "kmeans-closest", "kcenter", "deita", "qdit", "top-quality"]
)
def test_every_method_through_the_pipeline(pool_file, tmp_path, method):
    sel = run(pool_file, tmp_path / f"{method}.jsonl", method=method, clusters=8)
    assert len(sel) == 60 and len(set(sel.indices.tolist())) == 60
    manifest = json.loads((tmp_path / f"{method}.run" / "manifest.json").read_text())
    assert manifest["method"]["name"] == method
    assert len((tmp_path / f"{method}.jsonl").read_text().splitlines()) == 60
