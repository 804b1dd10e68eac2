"""The Ray engine's checks, run as one script inside a private network namespace (``test_ray_engine.py``).

Ray starts once (it is slow to start) and every check runs in it; the script prints one JSON line of
results and exits 1 on the first failed check. Usage: ``python ray_checks.py WORK_DIR DATAKIT``. Each Ray
dataset starts its own actor processes (about 4 CPU-seconds each: Ray and Ray Data are imported there), so
the checks share datasets where they can, and independent work overlaps (threads).

Checks: every listening socket is on loopback while Ray is up; a ``kmq select --engine ray`` process
(connected with ``--ray-address``, hashing encoder, 300 dolly records, the blocks fed to Ray two at a time)
killed between two cached blocks resumes on Ray from the cache and ends with the local engine's subset and
cache contents, and a later local run is warm; the loop's perplexity judge of a tiny local Llama (the round's
model) gives exactly the local values through a Ray actor and caches them; an error raised in an actor reaches
the driver as the kmq error it is; with ``--minilm``, the bundled MiniLM gives the local vectors through Ray
(loading torch and the model in the driver and in an actor doubles the script's time, so the test runs it only
when ``KMQ_TEST_RAY_MINILM=1``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: killpoints

LOOPBACK = ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "::1")
RESULTS: dict = {}


def check(name: str, ok: bool, **info) -> None:
    RESULTS[name] = {"ok": bool(ok), **info}
    if not ok:
        print(json.dumps(RESULTS, default=str))
        sys.exit(1)


def listening() -> list[str]:
    """Local addresses of every listening TCP socket in this namespace."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3] for line in out.splitlines() if line.strip()]


def use_cache(folder: Path) -> Path:
    os.environ["KMQ_CACHE_DIR"] = str(folder)
    return folder


def views(pool_path: Path) -> dict[str, list[str]]:
    from kmq.config import RunConfig
    from kmq.data import load_pool

    pool = load_pool(RunConfig(pool=str(pool_path)))
    return {v: pool.texts(v) for v in ("conversation", "prompt", "response")}


def cache_rows(cache: Path, texts: dict[str, list[str]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """What every vector store of a cache holds for the pool's texts: key folder -> (found, vectors)."""
    from kmq.cache import VectorStore, text_keys

    keys = np.concatenate([text_keys(t) for t in texts.values()])
    out = {}
    for folder in sorted((cache / "vectors").iterdir()):
        dims = {int(np.load(p, mmap_mode="r").shape[1]) for p in folder.glob("shard-*/vectors.npy")}
        for dim in dims:
            out[f"{folder.name}/{dim}"] = VectorStore(folder, dim).gather(keys)
    return out


def same_cache(one: Path, two: Path, texts: dict[str, list[str]]) -> bool:
    """Whether two caches hold the same vectors for the pool's texts (and hold some)."""
    a, b = cache_rows(one, texts), cache_rows(two, texts)
    return len(a) > 0 and a.keys() == b.keys() and all(
        np.array_equal(a[k][0], b[k][0]) and np.array_equal(a[k][1], b[k][1]) for k in a
    )


def select(pool: Path, out: Path, engine: str, **kw):
    import kmq

    return kmq.select(pool, budget=30, embedder="hashing", seed=0, out=out, run_dir=out.with_suffix(".run"),
                      engine=engine, show_progress=False, **kw)  # fmt: skip


def embed_counts(run_dir: Path) -> dict:
    stages = json.loads((run_dir / "manifest.json").read_text())["stages"]["embed"]
    return {k: sum(v.get(k, 0) for v in stages.values()) for k in ("texts", "cached", "encoded")} | {
        "engines": sorted({v.get("engine", "local") for v in stages.values()})
    }


def main(work: Path, datakit: Path) -> None:
    import ray

    from kmq.config import EngineConfig
    from kmq.engine import get_engine

    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text(encoding="utf-8").splitlines()
    pool = work / "pool.jsonl"
    pool.write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    # the local side of the perplexity check (torch, a tiny model) while Ray starts: Ray's start is mostly waiting
    reference = Background(perplexity_reference, work, pool)

    t0 = time.perf_counter()
    get_engine(EngineConfig(engine="ray")).start()
    RESULTS["ray_start_s"] = round(time.perf_counter() - t0, 1)
    addrs = listening()
    check("loopback_only", addrs and all(a.rsplit(":", 1)[0] in LOOPBACK for a in addrs), listening=addrs)

    # 1. a Ray run killed mid-embedding resumes on Ray, several windows of blocks, with the local subset and cache;
    # meanwhile (threads, each its own dataset and actor) a model scorer on Ray gives exactly the local values, and
    # an error raised in an actor reaches the driver. They share the cache folder (scores/ beside vectors/).
    use_cache(work / "cache-local")
    local = select(pool, work / "local.jsonl", "local")
    texts = views(pool)
    use_cache(work / "cache-kill")
    error = Background(worker_error)
    scores = Background(perplexity, reference)
    assigned = Background(assignment)
    kill_and_resume(work, pool, texts, local)
    check("judge_perplexity_on_ray_equals_local", **scores.result())
    check("kmeans_assignment_on_ray_equals_local", **assigned.result())
    message = error.result()
    check("worker_error_surfaces", message is not None and "not the driver's" in message and "\n" not in message,
          message=message)  # fmt: skip

    # 3. a real encoder: the bundled MiniLM on 48 texts (with --minilm: it costs as much as the rest together)
    if "--minilm" in sys.argv:
        minilm(work, texts["conversation"][:48])

    from kmq.engine.ray import _SESSION, shutdown

    tmp = _SESSION["tmp"]
    shutdown()
    check("shut_down", not ray.is_initialized() and not Path(tmp).exists())
    print(json.dumps(RESULTS, default=str))


class Background(threading.Thread):
    """``fn(*args)`` in a thread; :meth:`result` joins it and returns its value (or raises its error)."""

    def __init__(self, fn, *args) -> None:
        super().__init__(daemon=True)
        self.fn, self.args, self.value, self.error = fn, args, None, None
        self.start()

    def run(self) -> None:
        try:
            self.value = self.fn(*self.args)
        except BaseException as err:  # noqa: BLE001  (handed to the main thread)
            self.error = err

    def result(self):
        self.join()
        if self.error is not None:
            raise self.error
        return self.value


def assignment() -> dict:
    """k-means with its rows assigned as Ray tasks (float16 rows, several chunks; the numpy and the faiss kernel)
    gives the local labels and similarities to the bit (runs in a thread)."""
    from functools import partial

    from kmq.cluster import KMeans
    from kmq.config import EngineConfig
    from kmq.engine import get_engine
    from kmq.engine.arrays import assign_rows

    X = np.random.default_rng(7).standard_normal((18_000, 48)).astype(np.float16)
    ray_engine = get_engine(EngineConfig(engine="ray", actors=2))
    same = {}
    for backend in ("auto", "faiss"):  # numpy's kernel, and faiss's search (its OpenMP BLAS loads in the task)
        local = KMeans(40, random_state=3, chunk_size=4_000, backend=backend).fit(X)
        on_ray = KMeans(40, random_state=3, chunk_size=4_000, backend=backend,
                        assigner=partial(assign_rows, ray_engine)).fit(X)  # fmt: skip
        same[backend] = (np.array_equal(local.centroids_, on_ray.centroids_)
                         and np.array_equal(local.labels_, on_ray.labels_)
                         and np.array_equal(local.similarity_, on_ray.similarity_))  # fmt: skip
    return {"ok": all(same.values()), "same": same, "n": len(X)}


def worker_error() -> str | None:
    """A kmq error raised in an actor (an encoder whose identity is not the driver's) reaches the driver as itself."""
    from kmq.engine import EmbedderFactory
    from kmq.engine.ray import RayEngine
    from kmq.errors import InvalidParameterError

    t0 = time.perf_counter()
    try:
        list(RayEngine().map_blocks(EmbedderFactory("hashing:32", {}, "another-identity"), [["a text"]]))
        message = None
    except InvalidParameterError as err:
        message = str(err)
    RESULTS["worker_error_s"] = round(time.perf_counter() - t0, 1)
    return message


#: the perplexity check's scorer: a tiny local Llama, short inputs, 3 blocks of 8 conversations
PPL = {"batch_size": 4, "max_length": 96, "show_progress": False}


def perplexity_reference(work: Path, pool: Path) -> tuple[Path, list, np.ndarray]:
    """The tiny model, the conversations and their local perplexity scores (no cache: this runs in a thread)."""
    import tiny_models
    from kmq.config import RunConfig
    from kmq.data import load_pool
    from kmq.scorers import get_scorer

    t0 = time.perf_counter()
    model = tiny_models.build_causal_lm(work / "tiny-llama", arch="llama")
    convs = load_pool(RunConfig(pool=str(pool))).messages[:24]
    scorer = get_scorer(f"perplexity:{model}", **PPL)
    scorer.cache, scorer.block_size = False, 8
    values = scorer.score_messages(convs)
    RESULTS["perplexity_local_s"] = round(time.perf_counter() - t0, 1)
    return model, convs, values


def perplexity(reference: Background) -> dict:
    """The loop's per-round judge (bare ``perplexity``: the round's model) with ``--engine ray``: the perplexity
    scorer on a Ray actor (:func:`kmq.engine.attach_scorer`) gives exactly the local values, caches them, and the
    local judge is then warm.

    Runs in a thread: the cache folder is the one ``KMQ_CACHE_DIR`` names when it starts (the kill check's).
    """
    from kmq.config import EmbedConfig, EngineConfig, ScoreConfig
    from kmq.loop.judge import Judge

    model, convs, local = reference.result()
    t0 = time.perf_counter()
    cfg = ScoreConfig(batch_size=PPL["batch_size"], max_length=PPL["max_length"])
    gold, generated = convs[:12], convs[12:]  # scored as gold + generated: the reference's order and blocks
    on_ray = Judge("perplexity", cfg, EmbedConfig(), show_progress=False, engine=EngineConfig(engine="ray",
                                                                                               block_size=8))
    g, h, stats = on_ray.score_pairs(gold, generated, round_model=str(model))
    remote = np.concatenate([g, h])
    warm = Judge("perplexity", cfg, EmbedConfig(), show_progress=False).score_pairs(gold, generated,
                                                                                    round_model=str(model))
    RESULTS["perplexity_s"] = round(time.perf_counter() - t0, 1)
    ok = (np.array_equal(local, remote) and stats["computed"] == len(convs) and stats.get("engine") == "ray"
          and np.array_equal(np.concatenate(warm[:2]), local) and warm[2]["computed"] == 0
          and "engine" not in warm[2])  # fmt: skip
    return {"ok": ok, "max_abs_diff": float(np.abs(local - remote).max()), "computed": stats["computed"],
            "engine": stats.get("engine"), "warm_computed": warm[2]["computed"]}  # fmt: skip


def minilm(work: Path, sample: list[str]) -> None:
    from kmq.config import EngineConfig

    t0 = time.perf_counter()
    from kmq.embed import get_embedder
    from kmq.engine import attach

    use_cache(work / "cache-minilm-local")
    ref = get_embedder("minilm", precision="fp32").encode(sample, show_progress=False)
    RESULTS["minilm_local_s"] = round(time.perf_counter() - t0, 1)
    use_cache(work / "cache-minilm-ray")
    emb = attach(get_embedder("minilm", precision="fp32"), "minilm", {"precision": "fp32"},
                 EngineConfig(engine="ray"))  # fmt: skip
    got = emb.encode(sample, show_progress=False)
    diff = float(np.abs(got - ref).max())
    check("minilm_same_vectors", got.shape == ref.shape and diff <= 1e-5 and emb.stats_["encoded"] == len(sample),
          max_abs_diff=diff)  # fmt: skip
    RESULTS["minilm_s"] = round(time.perf_counter() - t0, 1)


def kill_and_resume(work: Path, pool: Path, texts: dict[str, list[str]], local) -> None:
    """A Ray run killed between two cached blocks resumes on Ray and ends with the local subset and cache.

    The blocks (100 texts) go to Ray two at a time, so the resumed run's responses take two windows (two
    datasets): their vectors land under the right keys only if the windows' results come back whole and in order.
    """
    import ray

    import killpoints

    t0 = time.perf_counter()
    cache = use_cache(work / "cache-kill")
    cfg = work / "blocks.yaml"
    cfg.write_text("engine: {engine: ray, block_size: 100, window: 2}\n", encoding="utf-8")
    address = ray.get_runtime_context().gcs_address
    args = ["select", str(pool), "--budget", "30", "--embedder", "hashing", "--seed", "0", "--config", str(cfg),
            "--ray-address", address, "--out", str(work / "killed.jsonl"), "-q"]  # fmt: skip
    (work / "kp").mkdir()
    run = killpoints.run_kmq(killpoints.wrapper(work / "kp"), args, root=cache, kill_at=2, match=r"shard-[^/]*$",
                             env={**os.environ}, timeout=240)  # fmt: skip
    stored = sum(int(v[0].sum()) for v in cache_rows(cache, texts).values())
    check("killed_mid_embedding", run.killed and stored > 0, returncode=run.returncode, stored=stored,
          stderr=run.stderr[-2000:])  # fmt: skip
    resumed = select(pool, work / "resumed.jsonl", "ray", config=str(cfg))
    check("same_selection", resumed.indices.tolist() == local.indices.tolist()
          and (work / "resumed.jsonl").read_bytes() == (work / "local.jsonl").read_bytes())  # fmt: skip
    counts, cold = embed_counts(work / "resumed.run"), embed_counts(work / "local.run")
    check("ray_encoded", counts["engines"] == ["ray"] and counts["encoded"] > 0, **counts)
    check("resumed_from_cache", counts["cached"] > 0 and counts["cached"] + counts["encoded"] == cold["encoded"],
          **counts)  # fmt: skip
    a = cache_rows(work / "cache-local", texts)
    check("same_cache", same_cache(work / "cache-local", cache, texts), stores=sorted(a),
          rows={k: int(v[0].sum()) for k, v in a.items()})  # fmt: skip
    warm = select(pool, work / "warm.jsonl", "local")
    counts = embed_counts(work / "warm.run")
    check("local_after_ray_is_warm", counts["encoded"] == 0 and warm.indices.tolist() == local.indices.tolist(),
          **counts)  # fmt: skip
    RESULTS["kill_resume_s"] = round(time.perf_counter() - t0, 1)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
