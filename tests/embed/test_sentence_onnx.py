"""The ONNX backend of the sentence-transformers encoder (:mod:`kmq.embed.onnx_backend`) on a tiny random BERT.

Its fp32 vectors must be torch's to float32 noise (the tolerance that lets the two backends share the fp32
cache key: cosine >= 1 - 1e-6, as two torch runs in different batches); the export is published once under
``$KMQ_CACHE_DIR/onnx`` and reused; int8 has a key of its own; ``auto`` stays torch for fp32.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
st = pytest.importorskip("sentence_transformers")

from kmq.embed.sentence import SentenceTransformerEmbedder  # noqa: E402
from kmq.errors import InvalidParameterError  # noqa: E402

TEXTS = ["Name three primary colours.", "Red, yellow and blue are the primary colours in painting.",
         "Write a haiku about autumn leaves " * 20, "Which planet is largest? Jupiter."]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_st(tmp_path_factory):
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    from tiny_models import build_tiny_bert

    bert = build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), num_layers=2, max_positions=64)
    first = Transformer(str(bert), max_seq_length=64)
    folder = tmp_path_factory.mktemp("tiny-st")
    st.SentenceTransformer(modules=[first, Pooling(32, pooling_mode="mean"), Normalize()], device="cpu").save(
        str(folder)
    )
    return str(folder)


def test_onnx_fp32_is_torch_to_float_noise_and_shares_its_key(tiny_st, tmp_path, monkeypatch):
    monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path))
    torch_emb = SentenceTransformerEmbedder(tiny_st, precision="fp32", backend="torch")
    onnx_emb = SentenceTransformerEmbedder(tiny_st, precision="fp32", backend="onnx")
    a = torch_emb.encode(TEXTS, cache=False, show_progress=False)
    b = onnx_emb.encode(TEXTS, cache=False, show_progress=False)
    assert onnx_emb.stats_["backend"] == "onnx" and torch_emb.stats_["backend"] == "torch"
    assert ((a * b).sum(axis=1) >= 1 - 1e-6).all()  # the 3rd text spans two windows: pooled the same way
    assert onnx_emb.key == torch_emb.key
    exported = list((tmp_path / "onnx").glob("*/model.onnx"))
    assert len(exported) == 1 and not list((tmp_path / "onnx").glob(".*"))  # published whole, no temp left
    mtime = exported[0].stat().st_mtime_ns
    again = SentenceTransformerEmbedder(tiny_st, precision="fp32", backend="onnx")
    np.testing.assert_array_equal(again.encode(TEXTS, cache=False, show_progress=False), b)  # deterministic
    assert exported[0].stat().st_mtime_ns == mtime  # reused, not exported again


def test_int8_is_onnx_with_a_key_of_its_own(tiny_st, tmp_path, monkeypatch):
    monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path))
    q = SentenceTransformerEmbedder(tiny_st, precision="int8")
    v = q.encode(TEXTS, cache=False, show_progress=False)
    assert q.resolved_backend == "onnx" and q.stats_["precision"] == "int8"
    assert q.key != SentenceTransformerEmbedder(tiny_st, precision="fp32").key
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    with pytest.raises(InvalidParameterError, match="int8"):
        _ = SentenceTransformerEmbedder(tiny_st, precision="int8", backend="torch").resolved_precision


def test_auto_is_torch_for_fp32_and_bad_backends_are_named(tiny_st):
    assert SentenceTransformerEmbedder(tiny_st, precision="fp32").resolved_backend == "torch"
    with pytest.raises(InvalidParameterError, match="'backend' parameter"):
        _ = SentenceTransformerEmbedder(tiny_st, backend="tensorrt").resolved_backend
    assert SentenceTransformerEmbedder(tiny_st, backend="onnx").resolved_precision == "fp32"  # even on bf16 CPUs
    with pytest.raises(InvalidParameterError, match="ONNX backend runs fp32 and int8, not bf16"):
        _ = SentenceTransformerEmbedder(tiny_st, precision="bf16", backend="onnx").resolved_precision


def _select(pool, tiny_st, out, *flags):
    from kmq.cli.main import main

    rc = main(["select", str(pool), "--budget", "5", "--embedder", f"st:{tiny_st}", "--out", str(out), "--overwrite",
               "-q", *flags])  # fmt: skip
    assert rc == 0
    manifest = json.loads((out.parent / f"{out.name}.kmq-run" / "manifest.json").read_text(encoding="utf-8"))
    return manifest["stages"]["embed"]["conversation"]


@pytest.fixture(scope="module")
def small_pool(datakit, tmp_path_factory):
    pool = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return pool


def test_cli_backend_and_int8_reach_the_manifest_and_the_cache_key(tiny_st, small_pool, tmp_path):
    out = tmp_path / "s.jsonl"
    onnx = _select(small_pool, tiny_st, out, "--encoder-backend", "onnx", "--precision", "fp32")
    assert (onnx["backend"], onnx["precision"], onnx["encoded"]) == ("onnx", "fp32", 60)
    torch_run = _select(small_pool, tiny_st, out, "--encoder-backend", "torch", "--precision", "fp32")
    assert (torch_run["backend"], torch_run["cached"], torch_run["encoded"]) == ("torch", 60, 0)  # one fp32 key
    q = _select(small_pool, tiny_st, out, "--precision", "int8")  # auto: onnx, the only backend of int8
    assert (q["backend"], q["precision"], q["encoded"]) == ("onnx", "int8", 60)  # a key of its own


def test_score_and_the_relevance_judge_take_the_backend(tiny_st, small_pool, tmp_path):
    from kmq.cli.main import main
    from kmq.config import EmbedConfig, ScoreConfig
    from kmq.loop.judge import Judge

    args = ["score", str(small_pool), "--scorer", "heuristic", "--embedder", f"st:{tiny_st}", "--explain", "-q"]
    relevance = {}
    for precision in ("int8", "fp32"):
        out = tmp_path / f"{precision}.jsonl"
        assert main([*args, "--precision", precision, "--out", str(out)]) == 0
        relevance[precision] = [json.loads(line)["relevance"] for line in out.read_text().splitlines()]
    assert relevance["int8"] != relevance["fp32"]  # the heuristic's relevance from the int8 vectors
    assert np.allclose(relevance["int8"], relevance["fp32"], atol=0.2)
    conv = [{"role": "user", "content": TEXTS[0]}, {"role": "assistant", "content": TEXTS[1]}]
    judge = Judge("relevance", ScoreConfig(), EmbedConfig(embedder=f"st:{tiny_st}", encoder_backend="onnx"))
    scorer = judge.scorer(None)
    scorer.score_messages([conv])
    assert scorer.embedder.stats_["backend"] == "onnx"
