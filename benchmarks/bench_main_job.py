"""The README's main job (``kmq select dolly_3k --budget 300``, bundled MiniLM, cold cache): old path vs new path.

Both paths run the real ``kmq select`` in this one process, alternated (old, new, new, old, ...), each with a
fresh ``KMQ_CACHE_DIR``, so the machine's drift hits both alike; wall time and this process's CPU time
(all threads) are printed, with the load average, because other jobs share the cores.

- old: ``--precision fp32 --conversation-vectors joint``; the conversation view encoded as one text (three
  passes over the pool: the conversations, then the prompts and the responses for the heuristic's relevance).
- new: ``--precision auto`` (where the config takes it; fp32 on a CPU without native bf16); conversation vectors
  pooled from the prompt and response vectors (:meth:`kmq.embed.Embedder.encode_conversations`: two passes).
- onnx: new with ``--encoder-backend onnx`` (ONNX Runtime's fused fp32 graph; ``--pair new,onnx``).

Until ``kmq.stages`` selects the pooled vectors itself, the new path swaps ``EmbedderSource.vectors`` and
``.key`` for the pooled ones inside this process (the change proposed for ``stages.py``, :func:`pooled_source`).

Quality: the overlap of the 300 picks (same seed), the manifests' ``diagnostics``, and Vendi and coverage of
both pick sets recomputed on the *same* vectors (the first path's: joint-text vectors for old, pooled ones
otherwise); then ``--seeds`` more
warm runs per path (their caches are warm: only clustering and selection run) give the seed-to-seed overlap
and the spread of the diagnostics, the scale against which the old-new differences are read.

    .venv/bin/python benchmarks/bench_main_job.py [--pair old,new] [--rounds 1] [--first old|new] [--seeds 1,2,3]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _datakit import DATAKIT  # noqa: E402

POOL = DATAKIT / "dolly_3k" / "dolly_3k.jsonl"


@contextlib.contextmanager
def pooled_source(enabled: bool):
    """Inside: ``kmq.stages.EmbedderSource`` gives pooled conversation vectors (a no-op when ``enabled`` is False)."""
    from kmq import stages

    cls = stages.EmbedderSource
    if not enabled or getattr(cls, "pools_conversations", False):
        yield
        return
    old_vectors, old_key = cls.vectors, cls.key

    def key(self: Any, pool: Any, view: str) -> str:
        if view != "conversation":
            return old_key(self, pool, view)
        return self.embedder.pooled_key(pool.texts("prompt"), pool.texts("response"))

    def vectors(self: Any, pool: Any, view: str, *, show_progress: bool | None) -> Any:
        if view != "conversation":
            return old_vectors(self, pool, view, show_progress=show_progress)
        emb, prompts, responses = self.embedder, pool.texts("prompt"), pool.texts("response")
        X = emb.encode_conversations(prompts, responses, show_progress=show_progress)
        return stages.Stage(X, emb.pooled_key(prompts, responses), dict(emb.stats_))

    cls.vectors, cls.key = vectors, key
    try:
        yield
    finally:
        cls.vectors, cls.key = old_vectors, old_key


def config_takes_auto() -> bool:
    """Whether ``embed.precision`` accepts ``auto`` (the config's Literal)."""
    import typing

    from kmq.config import EmbedConfig

    hints = typing.get_type_hints(EmbedConfig)
    return "auto" in typing.get_args(hints["precision"])


def config_has_vectors() -> bool:
    """Whether the config has ``embed.conversation_vectors`` (``--conversation-vectors``)."""
    import dataclasses

    from kmq.config import EmbedConfig

    return "conversation_vectors" in {f.name for f in dataclasses.fields(EmbedConfig)}


def run_select(path: str, out: Path, cache: Path, *, seed: int = 0, budget: int = 300) -> dict[str, Any]:
    """One ``kmq select`` in this process; wall, CPU, load and what its run directory holds."""
    from kmq.cli.main import main

    flags = ["--precision", "fp32"] if path == "old" else (["--precision", "auto"] if config_takes_auto() else [])
    if path == "old" and config_has_vectors():  # the joint text: the original path, now that pooled is the default
        flags += ["--conversation-vectors", "joint"]
    if path == "onnx":
        flags += ["--encoder-backend", "onnx"]
    argv = ["select", str(POOL), "--budget", str(budget), "--out", str(out), "--seed", str(seed), "-q", *flags]
    os.environ["KMQ_CACHE_DIR"] = str(cache)
    load0, cpu0, wall0 = os.getloadavg()[0], time.process_time(), time.perf_counter()
    with pooled_source(path != "old"):
        code = main(argv)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if code:
        raise SystemExit(f"kmq {' '.join(argv)} exited {code}")
    run_dir = Path(f"{out}.kmq-run")
    manifest = json.loads((run_dir / "manifest.json").read_text())
    import pyarrow.parquet as pq

    picks = pq.read_table(run_dir / "selection.parquet", columns=["pool_index"]).column(0).to_numpy()
    return {"path": path, "seed": seed, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "load": [round(load0, 1), round(os.getloadavg()[0], 1)], "picks": np.sort(picks).tolist(),
            "stages": _stage_seconds(manifest), "diagnostics": _diag(manifest.get("diagnostics") or {}),
            "embed": (manifest.get("stages") or {}).get("embed")}  # fmt: skip


def _stage_seconds(manifest: dict) -> dict[str, Any]:
    """``seconds`` of each stage the manifest reports (one level of views for ``embed``)."""
    out: dict[str, Any] = {}
    for name, stats in (manifest.get("stages") or {}).items():
        if isinstance(stats, dict) and "seconds" in stats:
            out[name] = stats["seconds"]
        elif isinstance(stats, dict):
            out[name] = {k: v.get("seconds") for k, v in stats.items() if isinstance(v, dict)}
    if "timings" in manifest:
        out["timings"] = manifest["timings"]
    return out


def _diag(d: dict) -> dict[str, Any]:
    """The headline diagnostics of the selection and of the random reference (``selected`` / ``random``)."""
    return {side: _headline(d.get(side) or {}) for side in ("selected", "random") if side in d}


def _headline(s: dict) -> dict[str, Any]:
    """Vendi, coverage, facility location, cluster entropy and mean quality of one side of the diagnostics."""
    q = s.get("quality") or {}
    return {"vendi": s.get("vendi"), "coverage_mean": s.get("coverage_mean"),
            "facility_location": s.get("facility_location"), "cluster_entropy": s.get("cluster_entropy"),
            "quality_mean": q.get("mean")}  # fmt: skip


def same_vector_metrics(picks: dict[str, list[int]], X: np.ndarray) -> dict[str, dict[str, Any]]:
    """Vendi, coverage and facility location of each pick set on the same vectors ``X`` (the base path's)."""
    from kmq.metrics import diagnostics

    out = {}
    for name, rows in picks.items():
        s = diagnostics(picks=np.asarray(rows), n=len(X), embeddings=X, seed=0)["selected"]
        out[name] = {k: s.get(k) for k in ("vendi", "coverage_mean", "facility_location")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=1, help="cold runs per path (alternated)")
    ap.add_argument("--pair", default="old,new", help="the two paths compared (of old, new, onnx): base,candidate")
    ap.add_argument("--first", choices=("base", "old", "new"), default="base",
                    help="the path of the first cold run (base: the pair's first; old/new: as before)")  # fmt: skip
    ap.add_argument("--seeds", default="1,2,3", help="warm runs per path with these seeds (empty: none)")
    ap.add_argument("--json", type=Path, help="write every number here")
    args = ap.parse_args()
    pair = tuple(args.pair.split(","))
    if len(pair) != 2 or len(set(pair)) != 2 or not set(pair) <= {"old", "new", "onnx"}:
        ap.error(f"--pair takes two of old, new, onnx; got {args.pair!r}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kmq-bench-main-") as tmp:
        tmp = Path(tmp)
        caches: dict[str, Path] = {}
        for r in range(args.rounds):
            order = pair if args.first in ("base", pair[0]) else pair[::-1]
            for path in order if r % 2 == 0 else order[::-1]:
                caches[path] = tmp / f"cache-{path}-{r}"
                res = run_select(path, tmp / f"{path}-{r}.jsonl", caches[path])
                print(f"cold {path}: wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s, load {res['load']}, "
                      f"stages {res['stages']}", flush=True)  # fmt: skip
                runs.append({**res, "cold": True})
        warm = []
        for path in pair:
            for s in seeds:
                res = run_select(path, tmp / f"{path}-seed{s}.jsonl", caches[path], seed=s)
                warm.append({**res, "cold": False})
                print(f"warm {path} seed {s}: wall {res['wall_s']:.1f} s, {res['diagnostics']}", flush=True)
        os.environ["KMQ_CACHE_DIR"] = str(caches[pair[0]])
        from kmq.data import read_pool
        from kmq.embed import get_embedder

        precision = "auto" if pair[0] == "new" else "fp32"  # the base's own cache entry: nothing is encoded here
        pool, emb = read_pool(str(POOL)), get_embedder("minilm", precision=precision)
        if pair[0] == "old":
            X_base = emb.encode(pool.texts("conversation"))
        else:  # the pooled vectors, from the cache
            X_base = emb.encode_conversations(pool.texts("prompt"), pool.texts("response"))
    report = summarise(runs, warm, X_base, pair)
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.write_text(json.dumps({"summary": report, "runs": runs + warm}, indent=1))


def summarise(runs: list[dict], warm: list[dict], X_base: np.ndarray, pair: tuple[str, str]) -> dict[str, Any]:
    """Medians per path, the speed-up (base over candidate), the overlaps and the diagnostics side by side."""
    base, cand = pair
    by = {p: [r for r in runs if r["path"] == p] for p in pair}
    med = {p: {k: float(np.median([r[k] for r in rs])) for k in ("wall_s", "cpu_s")} for p, rs in by.items()}
    first = {p: set(rs[0]["picks"]) for p, rs in by.items()}
    seeds = {p: [set(r["picks"]) for r in warm if r["path"] == p] for p in pair}
    budget = len(first[base])
    seed_overlap = {
        p: [len(first[p] & s) / budget for s in ss] for p, ss in seeds.items()
    }  # seed 0 against the other seeds, same path
    return {
        "cpu": _cpu_model(),
        "median": med,
        "pair": list(pair),
        "speedup_wall": round(med[base]["wall_s"] / med[cand]["wall_s"], 2),
        "speedup_cpu": round(med[base]["cpu_s"] / med[cand]["cpu_s"], 2),
        "overlap_base_candidate_seed0": len(first[base] & first[cand]) / budget,
        "overlap_same_seed": [
            len(set(a["picks"]) & set(b["picks"])) / budget
            for a, b in zip(
                [r for r in warm if r["path"] == base], [r for r in warm if r["path"] == cand], strict=True
            )
        ],
        "overlap_seed0_vs_other_seeds": seed_overlap,
        "cold_diagnostics": {p: rs[0]["diagnostics"] for p, rs in by.items()},
        "warm_diagnostics": {f"{r['path']}-{r['seed']}": r["diagnostics"] for r in warm},
        "same_vectors": same_vector_metrics({p: rs[0]["picks"] for p, rs in by.items()}, X_base),
        "embed_stats": {p: rs[0]["embed"] for p, rs in by.items()},
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x {os.cpu_count()}"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
