"""Model scorers on an engine, without a Ray cluster: the factories, attach_scorer, build_scorer, kmq iterate's flags.

An engine is anything whose ``mapper(factory)`` computes ``factory()(block)`` of every block elsewhere and
yields the results in order. :class:`PickledEngine` does what a Ray actor does, in this process: it receives
the factory pickled (the only way it reaches an actor), builds the scorer from it and computes the blocks.
Ray itself runs in ``test_ray_engine.py`` (``ray_checks.py``).
"""

from __future__ import annotations

import pickle
import threading
from pathlib import Path

import numpy as np
import pytest

from conversations import CONVERSATIONS
from kmq.cache import VectorStore, text_keys
from kmq.cli._flags import setting_overrides
from kmq.cli.iterate import overrides
from kmq.cli.main import build_parser
from kmq.config import EmbedConfig, EngineConfig, ScoreConfig, build
from kmq.engine import ScorerFactory, attach_scorer, identity_digest
from kmq.errors import InvalidParameterError
from kmq.loop.config import IterateConfig
from kmq.scorers import get_scorer


class PickledEngine:
    """Blocks computed by a scorer rebuilt from the pickled factory, as in a Ray actor (here, in this process)."""

    name = "pickled"

    def __init__(self) -> None:
        self.blocks: list[int] = []

    def mapper(self, factory):
        def run(blocks):
            fn = pickle.loads(pickle.dumps(factory))()
            for block in blocks:
                self.blocks.append(len(block))
                yield fn(block)

        return run


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    pytest.importorskip("transformers")
    import tiny_models

    root = tmp_path_factory.mktemp("tiny")
    return {"llama": tiny_models.build_causal_lm(root / "llama", arch="llama"),
            "gpt2": tiny_models.build_causal_lm(root / "gpt2", arch="gpt2"),
            "rm": tiny_models.build_reward_model(root / "rm")}  # fmt: skip


def _stores(cache: Path) -> dict[str, VectorStore]:
    out = {}
    for folder in sorted((cache / "scores").iterdir()):
        (dim,) = {int(np.load(p, mmap_mode="r").shape[1]) for p in folder.glob("shard-*/vectors.npy")}
        out[folder.name] = VectorStore(folder, dim, dtype=np.float64)
    return out


def _scorer(spec: str):
    scorer = get_scorer(spec, batch_size=2)
    for part in scorer.model_parts():
        part.block_size = 2  # several blocks per model (the same blocks here and on the engine)
    return scorer


@pytest.mark.parametrize("kind", ["ifd", "reward", "deita"])
def test_model_scorers_on_an_engine_give_the_local_values_and_cache(tiny, kind, tmp_path, monkeypatch):
    spec = {"ifd": f"ifd:{tiny['gpt2']}", "reward": f"reward:{tiny['rm']}",
            "deita": f"deita:{tiny['llama']},{tiny['gpt2']}"}[kind]  # fmt: skip
    convs = CONVERSATIONS * 2 + [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]]
    monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path / "local"))
    local = _scorer(spec).score_messages(convs)
    monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path / "engine"))
    engine = PickledEngine()
    scorer = attach_scorer(_scorer(spec), engine)
    assert all(part.mapper is not None for part in scorer.model_parts())
    remote = scorer.score_messages(convs)
    assert np.array_equal(local, remote)  # exactly: the same blocks on the same CPU
    assert engine.blocks and max(engine.blocks) == 2
    assert sum(engine.blocks) >= len(set(map(str, convs)))  # every distinct input was computed on the engine
    a, b = _stores(tmp_path / "local"), _stores(tmp_path / "engine")
    assert a.keys() == b.keys() and len(a) == (2 if kind == "deita" else 1)
    for name, store in a.items():
        keys = _stored_keys(tmp_path / "local" / "scores" / name)
        assert len(keys) == len(_stored_keys(tmp_path / "engine" / "scores" / name))
        fa, va = store.gather(keys)
        fb, vb = b[name].gather(keys)
        assert fa.all() and fb.all() and np.array_equal(va, vb)
    again = get_scorer(spec, batch_size=2)  # the engine's cache is the local engine's: a local run is warm
    assert np.array_equal(again.score_messages(convs), local)
    stats = again.stats_ if kind != "deita" else again.stats_["complexity"]
    assert stats["computed"] == 0 and stats["cached"] > 0


def _stored_keys(folder: Path) -> np.ndarray:
    keys = [np.load(p) for p in sorted(folder.glob("shard-*/keys.npy"))]
    assert keys, f"no shards with keys.npy in {folder}: {sorted(p.name for p in folder.iterdir())}"
    return np.concatenate(keys)


def test_scorer_factory_rebuilds_the_scorer_and_refuses_another_model(tiny):
    from kmq.scorers.perplexity import PerplexityScorer

    scorer = PerplexityScorer(str(tiny["llama"]), batch_size=3)
    factory = ScorerFactory(PerplexityScorer, scorer.model_name, scorer.options(), identity_digest(scorer))
    assert scorer.options() == {"device": "cpu", "precision": "fp32", "batch_size": 3, "max_length": 2048,
                                "trust_remote_code": False, "revision": None}  # fmt: skip
    block = [f'["{"x " * n}", [[0, {2 * n}]]]' for n in (3, 5)]
    assert np.array_equal(pickle.loads(pickle.dumps(factory))()(block), scorer.compute_block(block))
    other = ScorerFactory(PerplexityScorer, str(tiny["gpt2"]), scorer.options(), identity_digest(scorer))
    with pytest.raises(InvalidParameterError, match="not the driver's"):
        other()


def test_unpicklable_options_are_an_error_naming_the_option(tiny):
    from kmq.scorers.perplexity import PerplexityScorer

    scorer = PerplexityScorer(str(tiny["llama"]), device=threading.Lock())
    with pytest.raises(InvalidParameterError, match=r"option\(s\) \['device'\] cannot be sent.*--engine local"):
        attach_scorer(scorer, PickledEngine())
    assert scorer.mapper is None and scorer._model is None  # nothing was loaded or attached


def test_build_scorer_attaches_model_scorers_only_and_starts_nothing(tiny):
    from kmq.stages import EmbedderSource, build_scorer

    ray = EngineConfig(engine="ray")
    source = EmbedderSource(EmbedConfig(embedder="hashing"), ray)
    scorer, _ = build_scorer(ScoreConfig(scorer=f"deita:{tiny['llama']},{tiny['gpt2']}"), source.cfg, source,
                             show_progress=False)  # fmt: skip
    assert [p.mapper is not None for p in scorer.model_parts()] == [True, True]
    for spec in ("heuristic", "column:score", "judge:m@http://127.0.0.1:9/v1"):
        other, _ = build_scorer(ScoreConfig(scorer=spec), source.cfg, source, show_progress=False)
        assert other.model_parts() == [] and getattr(other, "mapper", None) is None
    local = EmbedderSource(EmbedConfig(embedder="hashing"), EngineConfig())
    scorer, _ = build_scorer(ScoreConfig(scorer=f"reward:{tiny['rm']}"), local.cfg, local, show_progress=False)
    assert scorer.mapper is None
    import sys

    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()


def test_iterate_has_the_engine_section_and_flags(tmp_path):
    cfg = IterateConfig.from_dict({"engine": {"engine": "ray", "actors": 2, "window": 4}})
    assert cfg.engine == EngineConfig(engine="ray", actors=2, window=4) and cfg.run_config().engine == cfg.engine
    with pytest.raises(InvalidParameterError, match="engine.*unknown setting.*workers"):
        IterateConfig.from_dict({"engine": {"workers": 2}})
    args = build_parser().parse_args(["iterate", "pool.jsonl", "--budget", "5", "--model", "m", "--engine", "ray",
                                      "--ray-address", "127.0.0.1:6379", "--engine-gpus", "0.5",
                                      "--engine-actors", "3"])  # fmt: skip
    got = build(IterateConfig, None, overrides(args)).engine
    assert got == EngineConfig(engine="ray", ray_address="127.0.0.1:6379", gpus=0.5, actors=3)
    yaml = tmp_path / "it.yaml"
    yaml.write_text("engine: {engine: ray, actors: 2}\n", encoding="utf-8")
    args = build_parser().parse_args(["iterate", "p", "--engine-actors", "4"])
    assert build(IterateConfig, str(yaml), setting_overrides(args)).engine == EngineConfig(engine="ray", actors=4)
    assert build(IterateConfig, None, {}).engine.engine == "local"


def test_text_keys_of_scorer_inputs_are_what_the_cache_stores(tiny, tmp_path, monkeypatch):
    """The engine's blocks are cached_map's: every stored key is an input's content key."""
    monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path))
    scorer = get_scorer(f"reward:{tiny['rm']}")
    attach_scorer(scorer, PickledEngine())
    scorer.score_messages(CONVERSATIONS)
    texts = [scorer.tokenizer.apply_chat_template(c, tokenize=False) for c in CONVERSATIONS]
    (store,) = _stores(tmp_path).values()
    assert store.gather(text_keys(texts))[0].all()


def test_the_loops_judge_runs_on_the_engine_with_the_local_values(tiny, tmp_path, monkeypatch):
    """``Judge(engine=)``: model judges and the relevance encoder compute on the engine; an HTTP judge stays here."""
    from kmq.loop.judge import Judge

    gold, generated = CONVERSATIONS[:3], [[*c[:-1], {"role": "assistant", "content": "No idea."}] for c in
                                          CONVERSATIONS[:3]]  # fmt: skip
    cfg, embed = ScoreConfig(batch_size=2), EmbedConfig(embedder="hashing")
    for spec, model in (("perplexity", str(tiny["llama"])), (f"reward:{tiny['rm']}", None), ("relevance", None)):
        monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path / spec.replace("/", "_") / "local"))
        *local, stats = Judge(spec, cfg, embed, show_progress=False).score_pairs(gold, generated, round_model=model)
        assert "engine" not in stats
        monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path / spec.replace("/", "_") / "engine"))
        engine = PickledEngine()
        *remote, stats = Judge(spec, cfg, embed, show_progress=False, engine=engine).score_pairs(
            gold, generated, round_model=model)  # fmt: skip
        assert engine.blocks and stats["engine"] == "pickled", spec
        assert all(np.array_equal(a, b) for a, b in zip(local, remote, strict=True)), spec
    ray = EngineConfig(engine="ray")
    assert Judge(f"reward:{tiny['rm']}", cfg, embed, engine=ray).scorer(None).mapper is not None  # starts nothing
    assert Judge("relevance", cfg, embed, engine=ray).scorer(None).embedder.mapper is not None
    http = Judge("judge:m@http://127.0.0.1:9/v1", cfg, embed, engine=ray)
    assert not http.on_engine and http.scorer(None).model_parts() == []
    assert Judge(f"reward:{tiny['rm']}", cfg, embed, engine=EngineConfig()).scorer(None).mapper is None
    import sys

    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
