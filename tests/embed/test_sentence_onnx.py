"""The ONNX backend of the sentence-transformers encoder (:mod:`kmq.embed.onnx_backend`) on a tiny random BERT.

Its fp32 vectors must be torch's to float32 noise (the tolerance that lets the two backends share the fp32
cache key: cosine >= 1 - 1e-6, as two torch runs in different batches); the export is published once under
``$KMQ_CACHE_DIR/onnx`` and reused; int8 has a key of its own; ``auto`` stays torch for fp32.
"""

from __future__ import annotations

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
    import torch
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import BertConfig, BertModel

    from tiny_models import make_tokenizer

    tok = make_tokenizer(chat_template=False)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)  # fmt: skip
    bert = tmp_path_factory.mktemp("tiny-bert")
    BertModel(cfg).save_pretrained(bert)
    tok.save_pretrained(bert)
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
