"""Perplexity and IFD scorers on tiny local causal LMs, checked against a direct computation.

Their per-example cache is the scorers' shared cached block loop (killed and resumed in ``test_score_resume.py``).
"""

import json
import logging
import re

import numpy as np
import pytest

from kmq.errors import DataFormatError
from kmq.scorers import IFDScorer, PerplexityScorer, get_scorer
from kmq.scorers._lm import FALLBACK_CHAT_TEMPLATE

torch = pytest.importorskip("torch")


def _assistant_spans(text: str, eot: str) -> list[tuple[int, int]]:
    """Assistant content + end-of-turn marker + newline, found by pattern (independent of the scorer)."""
    header = r"(?:<\|im_start\|>assistant\n|<\|assistant\|>\n)"
    return [m.span(1) for m in re.finditer(header + r"(.*?" + re.escape(eot) + r"\n)", text, flags=re.S)]


def _direct_nll(model, tok, text: str, spans: list[tuple[int, int]]) -> tuple[float, int]:
    """One example, plain forward, manual masking: mean NLL of the tokens inside ``spans``."""
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    scored = [any(s < e2 and e > s2 for s2, e2 in spans) for s, e in enc["offset_mapping"]]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    nll = [-float(logp[t - 1, ids[0, t]]) for t in range(1, ids.shape[1]) if scored[t]]
    return float(np.mean(nll)), len(nll)


def _eot(scorer) -> str:
    return "<|im_end|>" if scorer.template_source_ == "model" else scorer.tokenizer.eos_token


@pytest.fixture(params=["tiny_llama", "tiny_gpt2"])
def lm_dir(request):
    return request.getfixturevalue(request.param)


def test_perplexity_matches_direct_computation(lm_dir, conversations):
    scorer = PerplexityScorer(str(lm_dir), batch_size=3)
    nll = scorer.mean_nll(conversations)
    tok, model = scorer.tokenizer, scorer.model
    for conv, got in zip(conversations, nll, strict=True):
        text = tok.apply_chat_template(conv, tokenize=False)
        want, _ = _direct_nll(model, tok, text, _assistant_spans(text, _eot(scorer)))
        assert got == pytest.approx(want, abs=1e-5)
    np.testing.assert_array_equal(scorer.score_messages(conversations), -nll)  # the sign: higher = lower NLL


def test_ifd_matches_direct_computation(lm_dir, conversations):
    scorer = IFDScorer(str(lm_dir), batch_size=2)
    cond, uncond = scorer.losses(conversations)
    tok, model = scorer.tokenizer, scorer.model
    bos = tok.bos_token or ""
    for conv, c, u in zip(conversations, cond, uncond, strict=True):
        text = tok.apply_chat_template(conv, tokenize=False)
        spans = _assistant_spans(text, _eot(scorer))
        response = bos + "".join(text[s:e] for s, e in spans)
        assert c == pytest.approx(_direct_nll(model, tok, text, spans)[0], abs=1e-5)
        assert u == pytest.approx(_direct_nll(model, tok, response, [(len(bos), len(response))])[0], abs=1e-5)
    ifd = cond / uncond
    np.testing.assert_allclose(scorer.ifd(conversations), ifd)
    np.testing.assert_allclose(scorer.score_messages(conversations), np.where(ifd < 1, ifd, 1 - ifd))
    assert scorer.stats_["ifd_ge_1"] == int((ifd >= 1).sum())


def test_batched_equals_unbatched(tiny_llama, conversations):
    one = PerplexityScorer(str(tiny_llama), batch_size=1, cache=False).mean_nll(conversations)
    many = PerplexityScorer(str(tiny_llama), batch_size=5, cache=False).mean_nll(conversations)
    np.testing.assert_allclose(many, one, rtol=0, atol=1e-6)


def test_cross_entropy_in_chunks_equals_at_once(tiny_llama, conversations, monkeypatch):
    import kmq.scorers.perplexity as ppl

    whole = PerplexityScorer(str(tiny_llama), batch_size=4, cache=False).mean_nll(conversations)
    vocab = len(PerplexityScorer(str(tiny_llama)).tokenizer)
    monkeypatch.setattr(ppl, "CE_CHUNK_FLOATS", 3 * vocab)  # three positions per upcast chunk
    chunked = PerplexityScorer(str(tiny_llama), batch_size=4, cache=False).mean_nll(conversations)
    np.testing.assert_array_equal(chunked, whole)


def test_multi_turn_scores_only_assistant_tokens(tiny_llama, conversations):
    conv = conversations[2]  # system, user, assistant, user, assistant
    scorer = PerplexityScorer(str(tiny_llama))
    scorer.mean_nll([conv])
    tok = scorer.tokenizer
    expected = sum(len(tok(t["content"] + "<|im_end|>\n", add_special_tokens=False)["input_ids"]) for t in conv[2::2])
    total = len(tok(tok.apply_chat_template(conv, tokenize=False), add_special_tokens=False)["input_ids"])
    assert scorer.stats_["scored_tokens"] == expected and expected < total / 2


def test_fallback_template_when_tokenizer_has_none(tiny_gpt2):
    scorer = PerplexityScorer(str(tiny_gpt2))
    conv = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}]
    scorer.mean_nll([conv])
    assert scorer.template_source_ == "fallback" and scorer.tokenizer.chat_template == FALLBACK_CHAT_TEMPLATE
    text = scorer.tokenizer.apply_chat_template(conv, tokenize=False)
    assert text == "<|endoftext|><|user|>\nAdd 2 and 3.\n<|assistant|>\n5<|endoftext|>\n"
    assert scorer.stats_["template"] == "fallback"


def test_second_run_computes_nothing_and_ifd_reuses_perplexity(tiny_llama, conversations):
    PerplexityScorer(str(tiny_llama)).mean_nll(conversations)
    again = PerplexityScorer(str(tiny_llama))
    again.mean_nll(conversations)
    assert again.stats_["computed"] == 0 and again.stats_["cached"] == len(conversations)
    ifd = IFDScorer(str(tiny_llama))
    ifd.losses(conversations)
    assert ifd.stats_["computed"] == len(conversations)  # only the response-alone passes are new


def test_truncation_is_counted_and_logged(tiny_llama, conversations, caplog):
    scorer = PerplexityScorer(str(tiny_llama), max_length=24)
    with caplog.at_level("WARNING", logger="kmq"):
        nll = scorer.mean_nll(conversations[:4])
    assert scorer.stats_["truncated"] >= 1 and "only their last 24 tokens" in caplog.text
    assert np.isfinite(nll).all()


def test_missing_response_is_an_error(tiny_llama):
    with pytest.raises(DataFormatError, match="no response token"):
        PerplexityScorer(str(tiny_llama)).mean_nll([[{"role": "user", "content": "Hello?"}]])


def test_get_scorer_specs(tiny_llama):
    s = get_scorer(f"ifd:{tiny_llama}", device="cpu", batch_size=4, max_length=128, concurrency=3)
    assert isinstance(s, IFDScorer) and s.batch_size == 4 and s.max_length == 128
    ident = s.identity()
    assert ident["files"] and ident["max_tokens"] == 128 and ident["template"]
    with pytest.raises(ValueError, match="Unknown scorer option"):
        get_scorer(f"ifd:{tiny_llama}", devise="cpu")


def test_cli_score_end_to_end(tiny_llama, conversations, tmp_path, capsys):
    from kmq.cli.main import main

    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"id": f"r{i}", "messages": c}) + "\n" for i, c in enumerate(conversations)))
    out = tmp_path / "scores.jsonl"
    rc = main(["score", str(pool), "--scorer", f"perplexity:{tiny_llama}", "--out", str(out), "-q",
               "--score-batch-size", "2", "--max-length", "256"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(len(conversations))]
    want = PerplexityScorer(str(tiny_llama), max_length=256).score_messages(conversations)
    np.testing.assert_allclose([r["score"] for r in rows], want, atol=1e-9)
    assert f"perplexity:{tiny_llama}" in capsys.readouterr().out


def test_cli_select_with_ifd(tiny_llama, datakit, tmp_path, capsys):
    from kmq.cli.main import main

    src = datakit / "alpaca_random9k" / "alpaca_random9k.jsonl"
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(src.read_text().splitlines(keepends=True)[:12]))
    out = tmp_path / "subset.jsonl"
    rc = main(["select", str(pool), "--budget", "4", "--out", str(out), "--embedder", "hashing", "--clusters", "2",
               "--scorer", f"ifd:{tiny_llama}", "--score-batch-size", "4", "--score-revision", "v1",
               "-q"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 4
    manifest = json.loads((tmp_path / "subset.jsonl.kmq-run" / "manifest.json").read_text())
    assert manifest["stages"]["score"]["scorer"] == f"ifd:{tiny_llama}"
    assert "revision: v1" in (tmp_path / "subset.jsonl.kmq-run" / "config.yaml").read_text()  # recorded, reloadable


def test_revision_reaches_the_loader_and_is_ignored_for_local_folders(tiny_llama, conversations, caplog):
    pinned = get_scorer(f"perplexity:{tiny_llama}", revision="v1.0", batch_size=4)
    assert pinned.revision == "v1.0"
    with caplog.at_level(logging.WARNING):
        nll = pinned.mean_nll(conversations)
    assert "is a local folder: revision 'v1.0' is ignored" in caplog.text
    np.testing.assert_allclose(nll, PerplexityScorer(str(tiny_llama), cache=False).mean_nll(conversations), atol=1e-6)
    hub = PerplexityScorer("some-org/not-downloaded", revision="abc123")
    hub._config = type("Config", (), {"_commit_hash": "abc123def"})()  # what transformers records after a download
    assert hub.model_identity() == {
        "model": "some-org/not-downloaded", "revision": "abc123def", "requested_revision": "abc123"
    }
    hub.revision = None
    assert hub.model_identity() == {"model": "some-org/not-downloaded", "revision": "abc123def"}  # keys as before
