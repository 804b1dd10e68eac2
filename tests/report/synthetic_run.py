"""Synthetic run directories in the layout of the shared contract (prompts/schema: manifest diagnostics,
pool.parquet, map.parquet, clusters.parquet, selection.parquet), of any size, for the report tests and
benchmarks. Everything is drawn from ``default_rng(seed)``: the same arguments give the same bytes.

    python tests/report/synthetic_run.py OUT_DIR --rows 100000 --budget 10000 --clusters 200
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

#: a prompt that runs script wherever it is pasted into HTML unescaped
XSS = '</script><script>window.__kmq_xss=1;alert(1)</script><img src=x onerror="window.__kmq_xss=2">&amp;'
WORDS = ("river mountain python function recipe garden violin planet market history poem engine protein "
         "election football winter coffee algebra neuron castle desert ocean theorem chess camera bridge "
         "forest lawyer vaccine galaxy harvest sonnet tariff glacier comet sculpture migration satire").split()


def _previews(rng: np.random.Generator, cluster: np.ndarray, k: int) -> list[str]:
    topic = rng.integers(0, len(WORDS), size=(k, 3))
    filler = np.array(WORDS, dtype=object)
    words = rng.integers(0, len(WORDS), size=(len(cluster), 4))
    out = []
    for i, c in enumerate(cluster):
        t = topic[c] if c >= 0 else words[i, :3]
        out.append(f"Explain the {WORDS[t[0]]} and {WORDS[t[1]]} of {WORDS[t[2]]} "
                   f"with {filler[words[i, 0]]} {filler[words[i, 1]]} (row {i}).")  # fmt: skip
    return out


def quant(q: np.ndarray) -> dict[str, float] | None:
    q = q[np.isfinite(q)]
    if not len(q):
        return None
    qs = np.quantile(q, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"mean": float(q.mean()), "min": float(q.min()), "q05": float(qs[0]), "q25": float(qs[1]),
            "q50": float(qs[2]), "q75": float(qs[3]), "q95": float(qs[4]), "max": float(q.max())}  # fmt: skip


def _block(rows: np.ndarray, cluster: np.ndarray, quality: np.ndarray, k: int, mix: dict, rng) -> dict:
    counts = np.bincount(cluster[rows], minlength=k) if k else np.zeros(0)
    p = counts / max(counts.sum(), 1)
    pool_p = np.bincount(cluster, minlength=k) / len(cluster) if k else np.zeros(0)
    nz = p > 0
    ent = float(-(p[nz] * np.log(p[nz])).sum()) if k else None
    kl = float((p[nz] * np.log(p[nz] / pool_p[nz])).sum()) if k else None
    return {
        "n": int(len(rows)), "vendi": float(rng.uniform(20, 60)), "vendi_sample": int(min(len(rows), 2000)),
        "coverage_mean": float(rng.uniform(0.2, 0.5)), "coverage_p95": float(rng.uniform(0.5, 0.8)),
        "facility_location": float(rng.uniform(0.5, 0.8)), "cluster_entropy": ent,
        "cluster_entropy_max": math.log(k) if k else None, "cluster_kl": kl,
        "empty_clusters": int((counts == 0).sum()) if k else None, "quality": quant(quality[rows]),
        "duplicates_exact": int(rng.integers(0, 5)), "duplicates_near": int(rng.integers(0, 9)),
        "mix": {f: {str(v): int(c) for v, c in zip(*np.unique(vals[rows], return_counts=True), strict=True)}
                for f, vals in mix.items()},
    }  # fmt: skip


def make_run(out: str | Path, *, rows: int = 2000, budget: int = 200, clusters: int = 12, seed: int = 0,
             method: str = "kmq", iterate: int = 0, auto: bool = False, with_map: bool = True,
             payload: str | None = None, map_points: int = 50_000) -> Path:  # fmt: skip
    """Write a complete synthetic run directory at ``out`` and return it.

    ``method="random"`` writes no map, no clusters and null embedding diagnostics (like a real random run);
    ``iterate=R`` adds R rounds (manifest ``rounds``, ``rounds/rNN/reweight/weights.json``); ``auto`` adds a
    silhouette table; ``payload`` is put into previews, ids, sources and parameters (escaping tests).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    clustered = method != "random"
    k = clusters if clustered else 0
    cluster = rng.integers(0, k, size=rows) if clustered else np.full(rows, -1)
    quality = rng.normal(4.0, 1.0, size=rows)
    quality[rng.random(rows) < 0.01] = np.nan
    ids = np.array([f"syn-{i:07d}" for i in range(rows)], dtype=object)
    previews = _previews(rng, cluster, max(k, 1))
    source = np.array(["alpha", "beta", "gamma", "delta"], dtype=object)[rng.integers(0, 4, size=rows)]
    category = np.array([f"cat{c}" for c in range(25)], dtype=object)[rng.integers(0, 25, size=rows)]
    if payload is not None:
        previews[1] = payload
        previews[2] = payload
        ids[2] = payload
        source[:3] = payload
    dup = np.full(rows, None, dtype=object)
    dups = rng.choice(rows, size=max(rows // 100, 1), replace=False)
    dup[dups] = [ids[(d + 1) % rows] for d in dups]
    cont = np.full(rows, None, dtype=object)
    cont[rng.choice(rows, size=max(rows // 200, 1), replace=False)] = "gsm8k_test"
    cand = np.flatnonzero((dup == None) & (cont == None))  # noqa: E711
    picks = np.sort(rng.choice(cand, size=min(budget, len(cand)), replace=False))
    if payload is not None and 2 not in picks:
        picks = np.sort(np.concatenate([picks[1:], [2]]))
    order = rng.permutation(len(picks))
    rank = np.full(rows, -1, np.int64)
    rank[picks[order]] = np.arange(len(picks))
    selected = np.zeros(rows, bool)
    selected[picks] = True

    def opt(a, mask):
        return pa.array([None if m else v for v, m in zip(a.tolist(), mask, strict=True)])

    pq.write_table(pa.table({
        "id": pa.array(ids.tolist(), pa.string()), "pool_index": pa.array(np.arange(rows), pa.int64()),
        "cluster": opt(cluster, cluster < 0) if clustered else pa.nulls(rows, pa.int64()),
        "quality": pa.array(quality, pa.float64(), from_pandas=True), "selected": pa.array(selected),
        "rank": opt(rank, rank < 0), "duplicate_of": pa.array(dup.tolist(), pa.string()),
        "contaminated": pa.array(cont.tolist(), pa.string()), "stratum": pa.nulls(rows, pa.string()),
        "preview": pa.array(previews, pa.string()),
        "cos_centroid": pa.array(rng.uniform(0.2, 0.9, rows).astype(np.float32)) if clustered
        else pa.nulls(rows, pa.float32()),
    }), out / "pool.parquet")  # fmt: skip
    sizes = np.bincount(cluster[cluster >= 0], minlength=k) if k else np.zeros(0, np.int64)
    npicks = np.bincount(cluster[picks], minlength=k) if k else np.zeros(0, np.int64)
    quota = npicks.copy()
    prank = rank[picks]
    pq.write_table(pa.table({
        "id": pa.array(ids[picks].tolist(), pa.string()), "pool_index": pa.array(picks, pa.int64()),
        "cluster": pa.array(cluster[picks], pa.int64()) if clustered else pa.nulls(len(picks), pa.int64()),
        "quality": pa.array(quality[picks], pa.float64(), from_pandas=True),
        "round": pa.array(np.zeros(len(picks), np.int32)), "rank": pa.array(prank, pa.int64()),
        "reason": pa.array([f"cluster {c}: softmax draw" if clustered else "uniform draw" for c in cluster[picks]]),
        "quota": pa.array(quota[cluster[picks]], pa.int64()) if clustered else pa.nulls(len(picks), pa.int64()),
        "cluster_size": pa.array(sizes[cluster[picks]], pa.int64()) if clustered else pa.nulls(len(picks), pa.int64()),
        "probability": pa.array(rng.uniform(0, 0.2, len(picks))), "score": pa.nulls(len(picks), pa.float64()),
        "cos_centroid": pa.array(rng.uniform(0.2, 0.9, len(picks))),
    }), out / "selection.parquet")  # fmt: skip
    if clustered:
        qs = [float(np.nanmean(quality[cluster == c])) if sizes[c] else None for c in range(k)]
        pq.write_table(pa.table({
            "cluster": pa.array(np.arange(k), pa.int64()), "size": pa.array(sizes, pa.int64()),
            "quota": pa.array(quota, pa.int64()), "picks": pa.array(npicks, pa.int64()),
            "mean_quality": pa.array(qs, pa.float64()), "centroid_cos_mean": pa.array(rng.uniform(0.3, 0.7, k)),
        }), out / "clusters.parquet")  # fmt: skip
        if with_map:
            shown = np.arange(rows)
            if rows > map_points:
                rest = np.setdiff1d(np.arange(rows), picks[: map_points // 2])
                shown = np.sort(np.concatenate([picks[: map_points // 2],
                                                rng.choice(rest, map_points - min(len(picks), map_points // 2),
                                                           replace=False)]))  # fmt: skip
            centers = rng.normal(0, 4, size=(k, 2))
            xy = centers[cluster[shown]] + rng.normal(0, 1, size=(len(shown), 2))
            pq.write_table(pa.table({"pool_index": pa.array(shown, pa.int64()),
                                     "x": pa.array(xy[:, 0].astype(np.float32)),
                                     "y": pa.array(xy[:, 1].astype(np.float32))}), out / "map.parquet")  # fmt: skip
    mix = {"source": source, "category": category}
    rnd = np.sort(rng.choice(cand, size=len(picks), replace=False))
    diag = {
        "settings": {"seed": seed, "vendi_sample": 2000, "coverage_sample": 20000, "near_tau": 0.95,
                     "metric": "cosine"},
        "selected": _block(picks, np.maximum(cluster, 0), quality, k, mix, rng),
        "random": _block(rnd, np.maximum(cluster, 0), quality, k, mix, rng),
        "pool": {"n": rows, "quality": quant(quality), "clusters": k or None,
                 "mix": {f: {str(v): int(c) for v, c in zip(*np.unique(vals, return_counts=True), strict=True)}
                         for f, vals in mix.items()}},
        "seconds": 1.25,
    }  # fmt: skip
    if not clustered:
        for b in ("selected", "random"):
            diag[b].update(vendi=None, coverage_mean=None, coverage_p95=None, facility_location=None,
                           cluster_entropy=None, cluster_entropy_max=None, cluster_kl=None, empty_clusters=None,
                           duplicates_near=None)  # fmt: skip
    command = "iterate" if iterate else "select"
    stages: dict = {"read": {"seconds": 0.1}, "dedup": {"mode": "exact", "records": rows,
                    "kept": int(rows - len(dups)), "exact_duplicates": int(len(dups)), "seconds": 0.05}}  # fmt: skip
    if clustered:
        stages["cluster"] = {"n_clusters": k, "k_source": "silhouette" if auto else "default rule", "seconds": 0.4}
        if auto:
            stages["cluster"]["silhouette"] = [
                {"k": kk, "silhouette": round(0.05 + 0.02 * math.sin(kk / 3) + (0.03 if kk == k else 0), 6),
                 "seconds": 0.1, "empty_clusters": 0} for kk in sorted({max(2, k - 6), max(2, k - 3), k, k + 3, k + 6})
            ]  # fmt: skip
    params = {"allocation": "equal", "within": "softmax", "temperature": 1.0}
    if payload is not None:
        params["note"] = payload
    manifest = {
        "command": command, "created_utc": "2026-01-02T03:04:05+00:00",
        "versions": {"kmq": "0.1.0", "argv": f"kmq {command} synthetic"}, "seed": seed,
        "input": {"source": payload or f"/data/synthetic-{rows}.jsonl", "format": "messages", "container": "jsonl",
                  "records": rows},
        "budget": {"requested": budget, "resolved": int(len(picks))},
        "method": {"name": method if not iterate else "iterative-kmq", "params": params if clustered else {}},
        "stages": stages,
        "counts": {"pool": rows, "selected": int(len(picks)), "clusters_with_picks": int((npicks > 0).sum()),
                   "per_source": {str(v): int(c) for v, c in zip(*np.unique(source[picks], return_counts=True),
                                                                  strict=True)}},
        "seconds": 3.5, "warnings": ["a synthetic run" if payload is None else payload],
        "diagnostics": diag,
    }  # fmt: skip
    if iterate:
        manifest["rounds"] = _rounds(out, iterate, k, rng)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (out / "kmq-run.json").write_text(json.dumps({
        "tool": "kmq", "version": "0.1.0", "command": command, "argv": "synthetic", "outputs": {},
        "owned": sorted(["config.yaml", "manifest.json", "selection.parquet", "pool.parquet", "map.parquet",
                         "clusters.parquet", "kmq-run.json"] + (["rounds", "prepare"] if iterate else [])),
    }, indent=2) + "\n")  # fmt: skip
    return out


def _rounds(out: Path, n: int, k: int, rng) -> list[dict]:
    w = np.full(k, 1.0 / k)
    rounds = []
    for r in range(1, n + 1):
        entry = {"round": r, "size": 10 * k, "weights": w.tolist(), "counts": [10] * k,
                 "stats": {"select": {"drawn": 10 * k, "clusters_drawn": k}}}  # fmt: skip
        if r < n:
            signal = rng.normal(0, 0.3, k)
            after = w * np.exp(signal)
            after /= after.sum()
            entry.update(signal=signal.tolist(), scored=[3] * k, weights_after=after.tolist())
            entry["stats"]["judge"] = {"scored": 3 * k, "mean_S": float(signal.mean())}
            folder = out / "rounds" / f"r{r:02d}" / "reweight"
            folder.mkdir(parents=True, exist_ok=True)
            body = {"weights_before": w.tolist(), "signal": signal.tolist(), "scored": [3] * k,
                    "weights": after.tolist()}  # fmt: skip
            (folder / "weights.json").write_text(json.dumps(body))
            w = after
        rounds.append(entry)
    return rounds


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--budget", type=int, default=10_000)
    ap.add_argument("--clusters", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make_run(a.out, rows=a.rows, budget=a.budget, clusters=a.clusters, seed=a.seed))
