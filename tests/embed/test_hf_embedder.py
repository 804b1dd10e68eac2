"""The ``hf:MODEL[:POOLING]`` encoder on tiny local Llama, GPT-2 and BERT models (no downloads)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from kmq.embed import get_embedder  # noqa: E402
from kmq.embed.hf_pooled import HFEmbedder, pool  # noqa: E402
from kmq.errors import InvalidParameterError, MissingArtifactError  # noqa: E402
from tiny_models import build_causal_lm, make_tokenizer  # noqa: E402

TEXTS = [
    "What is the capital of France?",
    "Add 2 and 3.",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "hi",
    "Explain why the sky is blue, in one short paragraph for a child.",
    "def add(a, b):\n    return a + b",
    "Translate 'good morning' into Spanish.",
]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Folders of a tiny Llama, GPT-2 (no pad token) and BERT, and a Llama whose tokenizer pads on the left."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    root = tmp_path_factory.mktemp("hf-embed-models")
    llama = build_causal_lm(root / "llama", arch="llama")
    gpt2 = build_causal_lm(root / "gpt2", arch="gpt2")
    left = root / "llama-left"
    shutil.copytree(llama, left)
    tok = AutoTokenizer.from_pretrained(left)
    tok.padding_side = "left"
    tok.save_pretrained(left)
    tok = make_tokenizer(chat_template=False)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id)  # fmt: skip
    bert = root / "bert"
    BertModel(cfg).save_pretrained(bert)
    tok.save_pretrained(bert)
    return {"llama": llama, "gpt2": gpt2, "llama-left": left, "bert": bert}


def _reference(path, texts, pooling, *, max_length=None) -> np.ndarray:
    """One unpadded forward pass per text with transformers directly, pooled by hand, L2-normalised."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    window = max_length or min(tok.model_max_length, model.config.max_position_embeddings)
    rows = []
    with torch.no_grad():
        for text in texts:
            ids = tok(text, add_special_tokens=True, truncation=True, max_length=window)["input_ids"]
            h = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            rows.append({"last": h[-1], "mean": h.mean(dim=0), "cls": h[0]}[pooling].numpy())
    rows = np.stack(rows)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize(
    ("name", "pooling"),
    [("llama", "last"), ("llama-left", "last"), ("gpt2", "last"), ("llama", "mean"), ("gpt2", "mean"),
     ("bert", "mean"), ("bert", "cls")],
)  # fmt: skip
def test_pooling_equals_unpadded_forward_passes(models, name, pooling):
    emb = HFEmbedder(str(models[name]), pooling=pooling, batch_size=3, precision="fp32")  # as the reference
    got = emb.encode(TEXTS, show_progress=False, cache=False)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), emb.dim)
    np.testing.assert_allclose(got, _reference(models[name], TEXTS, pooling), atol=2e-5)


def test_last_token_of_left_and_right_padded_batches(models):
    """:func:`pool` finds the last real token whichever side the pads are on (left pads with their positions)."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(models["llama"])
    model = AutoModel.from_pretrained(models["llama"]).eval()
    ids = [tok(t)["input_ids"] for t in TEXTS[:4]]
    width = max(map(len, ids))
    want = _reference(models["llama"], TEXTS[:4], "last")
    for side in ("left", "right"):
        batch = torch.full((len(ids), width), tok.pad_token_id)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, row in enumerate(ids):
            sl = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            batch[i, sl], mask[i, sl] = torch.tensor(row), 1
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        with torch.no_grad():
            hidden = model(input_ids=batch, attention_mask=mask, position_ids=positions).last_hidden_state
        got = pool(hidden, mask, "last").numpy()
        np.testing.assert_allclose(got / np.linalg.norm(got, axis=1, keepdims=True), want, atol=2e-5, err_msg=side)
        mean = pool(hidden, mask, "mean").numpy()
        want_mean = _reference(models["llama"], TEXTS[:4], "mean")
        np.testing.assert_allclose(mean / np.linalg.norm(mean, axis=1, keepdims=True), want_mean, atol=2e-5)


def test_long_texts_are_cut_at_the_window(models):
    long = " ".join(TEXTS) * 4
    emb = HFEmbedder(str(models["llama"]), pooling="last", max_length=16, precision="fp32")
    got = emb.encode([long, "short text", long[::-1]], show_progress=False)
    np.testing.assert_allclose(got, _reference(models["llama"], [long, "short text", long[::-1]], "last",
                                               max_length=16), atol=2e-5)  # fmt: skip
    assert emb.stats_["truncated"] == 2 and emb.window == 16
    assert HFEmbedder(str(models["bert"])).window == 64  # the config's positions cap the tokenizer's "no limit"


def test_order_determinism_and_blank_texts(models):
    emb = HFEmbedder(str(models["gpt2"]), pooling="last", batch_size=2)
    base = emb.encode(TEXTS, show_progress=False, cache=False)
    np.testing.assert_array_equal(emb.encode(TEXTS, show_progress=False, cache=False), base)
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    shuffled = HFEmbedder(str(models["gpt2"]), pooling="last", batch_size=2)
    np.testing.assert_allclose(shuffled.encode([TEXTS[i] for i in perm], show_progress=False), base[perm], atol=1e-6)
    with_blank = emb.encode(["", TEXTS[0], "  "], show_progress=False, cache=False)
    assert not with_blank[[0, 2]].any() and np.allclose(with_blank[1], base[0], atol=1e-6)


def test_text_weights_are_token_counts(models):
    emb = HFEmbedder(str(models["llama"]), max_length=16)
    tok = emb.tokenizer
    long = " ".join(TEXTS)
    want = [len(tok(TEXTS[0])["input_ids"]), 0, 16]
    np.testing.assert_array_equal(emb.text_weights([TEXTS[0], "  ", long]), want)


def test_cache_key_follows_pooling_precision_window_and_weights(models, tmp_path):
    path = str(models["llama"])
    base = HFEmbedder(path, precision="fp32")
    assert base.identity()["pooling"] == "mean" and base.identity()["precision"] == "fp32"
    same = [HFEmbedder(path, batch_size=5, precision="fp32"), HFEmbedder(path, device="cpu", precision="fp32"),
            get_embedder(f"hf:{path}", precision="fp32")]  # fmt: skip
    assert {e.key for e in same} == {base.key}
    from kmq._cpu import resolve_precision

    auto = HFEmbedder(path)  # the default decides at run time: fp32's key on AVX2, bf16's on AMX
    assert auto.key == HFEmbedder(path, precision=resolve_precision("auto")).key
    other = [HFEmbedder(path, pooling="last"), HFEmbedder(path, pooling="cls"), HFEmbedder(path, precision="bf16"),
             HFEmbedder(path, precision="fp16"), HFEmbedder(path, max_length=32)]  # fmt: skip
    assert len({base.key, *(e.key for e in other)}) == 6
    copy = shutil.copytree(path, tmp_path / "copy")
    before = HFEmbedder(str(copy)).key
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes() + b"\0")  # changed weights
    assert HFEmbedder(str(copy)).key != before


def test_warm_run_loads_no_weights(models):
    first = HFEmbedder(str(models["llama"]), pooling="last")
    vecs = first.encode(TEXTS, show_progress=False)
    again = HFEmbedder(str(models["llama"]), pooling="last")
    np.testing.assert_array_equal(again.encode(TEXTS, show_progress=False), vecs)
    assert again._model is None and again.stats_["cached"] == len(TEXTS)


def test_half_precisions_are_close_to_fp32(models):
    fp32 = HFEmbedder(str(models["llama"]), pooling="last").encode(TEXTS, show_progress=False)
    for precision in ("bf16", "fp16"):
        emb = HFEmbedder(str(models["llama"]), pooling="last", precision=precision)
        half = emb.encode(TEXTS, show_progress=False)
        assert half.dtype == np.float32 and emb.stats_["precision"] == precision
        assert (half * fp32).sum(axis=1).min() > 0.99, precision
    from kmq._cpu import resolve_precision

    auto = HFEmbedder(str(models["llama"]), precision="auto")
    assert auto.resolved_precision == resolve_precision("auto", "cpu")  # fp32 here (AVX2), bf16 with AMX
    assert auto.identity()["precision"] == auto.resolved_precision  # the key holds the precision decided


def test_spec_parsing(models):
    path = str(models["llama"])
    for spec, pooling in ((f"hf:{path}", "mean"), (f"hf:{path}:last", "last"), (f"hf:{path}:cls", "cls")):
        emb = get_embedder(spec, batch_size=7, max_length=20)
        assert (emb.model_name, emb.pooling, emb.batch_size, emb.max_length) == (path, pooling, 7, 20)
    assert get_embedder("hf:org/model:last").model_name == "org/model"
    assert get_embedder(f"hf:{path}:last").name == f"hf:{path}:last"
    with pytest.raises(InvalidParameterError, match=r"must be one of \['mean', 'last', 'cls'\]\. Got 'max'"):
        get_embedder(f"hf:{path}:max")
    with pytest.raises(InvalidParameterError, match="must be one of"):
        get_embedder("hf:")


def test_errors_name_the_encoder(models, tmp_path):
    with pytest.raises(MissingArtifactError, match=r"hf:/.*missing encoder's model.*does not exist"):
        _ = HFEmbedder(str(tmp_path / "missing")).dim
    with pytest.raises(InvalidParameterError, match=r"The 'pooling' parameter of hf:.*Got 'max' instead"):
        HFEmbedder(str(models["llama"]), pooling="max").encode(["x"], show_progress=False)
    with pytest.raises(InvalidParameterError, match=r"The 'precision' parameter .* Got 'int8' instead"):
        HFEmbedder(str(models["llama"]), precision="int8").encode(["x"], show_progress=False)
