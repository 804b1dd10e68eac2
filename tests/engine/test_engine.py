"""The engine layer without a Ray cluster: settings, flags, the cached_map hook, the worker's checks, no-Ray errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.cache import VectorStore, cached_map
from kmq.cli._flags import setting_overrides
from kmq.cli.main import build_parser
from kmq.config import EngineConfig, RunConfig, build
from kmq.embed import HashingEmbedder, get_embedder
from kmq.engine import EmbedderFactory, attach, get_engine, identity_digest
from kmq.errors import InvalidParameterError


def test_engine_settings_are_validated_and_kept_out_of_cache_keys():
    assert EngineConfig().engine == "local" and EngineConfig().cpus == 0.5
    with pytest.raises(InvalidParameterError, match="'engine'"):
        EngineConfig(engine="spark")
    with pytest.raises(InvalidParameterError, match="'actors'.*>= 1"):
        EngineConfig(actors=0)
    with pytest.raises(InvalidParameterError, match="'cpus'.*> 0"):
        EngineConfig(cpus=0)
    cfg = RunConfig.from_dict({"engine": {"engine": "ray", "actors": 2, "gpus": 0.5}})
    assert (cfg.engine.engine, cfg.engine.actors, cfg.engine.gpus) == ("ray", 2, 0.5)
    with pytest.raises(InvalidParameterError, match="engine.*unknown setting"):
        RunConfig.from_dict({"engine": {"workers": 2}})
    a, b = HashingEmbedder(64), HashingEmbedder(64)
    attach(b, "hashing:64", {}, EngineConfig(engine="ray"))  # attaching starts nothing
    assert a.key == b.key and b.mapper is not None and a.mapper is None


def test_engine_flags_reach_the_config():
    args = build_parser().parse_args(["select", "pool.jsonl", "--budget", "5", "--engine", "ray",
                                      "--ray-address", "127.0.0.1:6379", "--engine-gpus", "0.25",
                                      "--engine-actors", "3"])  # fmt: skip
    cfg = build(RunConfig, None, setting_overrides(args))
    assert cfg.engine == EngineConfig(engine="ray", ray_address="127.0.0.1:6379", gpus=0.25, actors=3)
    default = build(RunConfig, None, setting_overrides(build_parser().parse_args(["select", "p"])))
    assert default.engine.engine == "local"


def test_local_engine_is_cached_maps_own_loop():
    emb = get_embedder("hashing:32")
    assert get_engine(None).name == "local" and attach(emb, "hashing:32", {}, EngineConfig()).mapper is None


@settings(max_examples=25, deadline=None)
@given(st.lists(st.text(max_size=12), max_size=40), st.integers(1, 7))
def test_a_mapper_gives_the_loops_rows_and_cache(tmp_path_factory, texts, block):
    """Any mapper that computes the blocks in order gives the same rows and the same cached shards as the loop."""
    emb = HashingEmbedder(16)
    texts = ["a text that is never blank", *texts]
    calls: list[int] = []

    def mapper(blocks):
        for b in blocks:  # what an engine does: the blocks' function, elsewhere, results in order
            calls.append(len(b))
            yield emb.embed_batch(list(b))

    folder = tmp_path_factory.mktemp("c")
    runs = []
    for name, m in (("loop", None), ("mapped", mapper)):
        store = VectorStore(folder / name, 16)
        runs.append(cached_map(texts, emb.embed_batch, store, dim=16, block_size=block, skip_blank=True, mapper=m))
    assert np.array_equal(runs[0].values, runs[1].values)
    assert runs[0].stats["computed"] == runs[1].stats["computed"] == sum(calls)
    assert all(c <= block for c in calls)
    keys = runs[0].keys
    found_a, va = VectorStore(folder / "loop", 16).gather(keys)
    found_b, vb = VectorStore(folder / "mapped", 16).gather(keys)
    assert np.array_equal(found_a, found_b) and np.array_equal(va, vb)


def test_a_mapper_that_drops_blocks_is_an_error(tmp_path):
    emb = HashingEmbedder(8)
    with pytest.raises(ValueError, match="shorter"):
        cached_map(["a", "b", "c"], emb.embed_batch, VectorStore(tmp_path, 8), dim=8, block_size=1,
                   mapper=lambda blocks: [emb.embed_batch(next(iter(blocks)))])  # fmt: skip


def test_worker_factory_builds_the_encoder_and_refuses_another_identity():
    fn = EmbedderFactory("hashing:32", {}, identity_digest(HashingEmbedder(32)))()
    assert np.array_equal(fn(["a b c"]), HashingEmbedder(32).embed_batch(["a b c"]))
    with pytest.raises(InvalidParameterError, match="not the driver's"):
        EmbedderFactory("hashing:32", {}, identity_digest(HashingEmbedder(64)))()


def _without_ray(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``import ray`` fails, as it does when Ray is not installed."""
    prelude = "import sys\nsys.modules['ray'] = None\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_engine_ray_without_ray_names_the_extra(tmp_path, datakit):
    pool = tmp_path / "pool.jsonl"
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = _without_ray(f"""
        from kmq.errors import MissingDependencyError
        from kmq.engine.ray import RayEngine
        try:
            RayEngine().start()
        except MissingDependencyError as err:
            print("ERR", err)
        from kmq.cli.main import main
        sys.exit(main(["select", {str(pool)!r}, "--budget", "5", "--embedder", "hashing", "--engine", "ray",
                       "--out", {str(tmp_path / "out.jsonl")!r}, "-q"]))
    """)
    assert "ERR Please install Ray Data to use --engine ray (`pip install 'kmq[ray]'`)." in proc.stdout, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'kmq[ray]'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_the_engine_keyword_of_score_and_iterate_reaches_the_engine(tmp_path, datakit):
    """``kmq.score(engine=)`` and ``kmq.iterate(engine=)`` mean ``--engine``: ray without Ray is its error."""
    import kmq

    pool = tmp_path / "pool.jsonl"
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # checked before the first step, never loaded here
    proc = _without_ray(f"""
        import kmq
        from kmq.errors import MissingDependencyError
        for call in (lambda: kmq.score({str(pool)!r}, scorer="heuristic", embedder="hashing", engine="ray"),
                     lambda: kmq.iterate({str(pool)!r}, budget=10, rounds=2, model={str(model)!r},
                                         embedder="hashing", judge="relevance", engine="ray",
                                         run_dir={str(tmp_path / "run")!r}, show_progress=False)):
            try:
                call()
            except MissingDependencyError as err:
                print("ERR", err)
    """)
    assert proc.stdout.count("ERR Please install Ray Data to use --engine ray") == 2, proc.stderr
    local = kmq.score(str(pool), scorer="heuristic", embedder="hashing", engine="local", show_progress=False)
    assert len(local.values) == 40  # (before it the cache was cold: the Ray runs above had blocks to compute)
    with pytest.raises(InvalidParameterError, match="'engine.engine' setting must be one of"):
        kmq.score(str(pool), scorer="heuristic", embedder="hashing", engine="spark")
