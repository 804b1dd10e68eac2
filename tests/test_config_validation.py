"""Config values are validated when the config is built: exit 2 naming the setting, before any data is read."""

from __future__ import annotations

import pytest

from kmq.cli.main import main
from kmq.config import ClusterConfig, EmbedConfig, RunConfig, ScoreConfig
from kmq.errors import InvalidParameterError
from kmq.loop.config import IterateConfig, TrainConfig

# one bad value per kind of field (YAML text, the setting the message must name, words it must contain)
BAD = [
    ("seed: zero", "'seed'", "must be an int"),
    ("seed: -1", "'seed'", ">= 0"),
    ("seed: 1.5", "'seed'", "must be an int"),
    ("cluster: {niter: '25'}", "'cluster.niter'", "must be an int"),
    ("cluster: {niter: 0}", "'cluster.niter'", ">= 1"),
    ("cluster: {clusters: many}", "'cluster.clusters'", "an int, 'auto' or None"),
    ("cluster: {candidates: '16,32'}", "'cluster.candidates'", "a list of ints"),
    ("embed: {batch_size: x}", "'embed.batch_size'", "must be an int"),
    ("embed: {precision: fp8}", "'embed.precision'", "one of ['fp32', 'bf16', 'fp16', 'int8', 'auto']"),
    ("embed: {trust_remote_code: 'yes'}", "'embed.trust_remote_code'", "true or false"),
    ("embed: {embedder: 5}", "'embed.embedder'", "a string"),
    ("embed: [1, 2]", "'embed'", "a mapping of EmbedConfig settings"),
    ("score: {judge_timeout: fast}", "'score.judge_timeout'", "a finite number"),
    ("score: {relevance_embedder: 3}", "'score.relevance_embedder'", "a string or None"),
    ("select: {params: [1]}", "'select.params'", "a mapping"),
    ("budget: -5", "'budget'", ">= 0"),
    ("budget: lots", "'budget'", "a count (5000) or a fraction (0.1)"),
]


@pytest.mark.parametrize(("text", "name", "words"), BAD)
def test_bad_config_values_exit_2_before_reading(tmp_path, capsys, text, name, words):
    config = tmp_path / "run.yaml"
    config.write_text(text + "\n")
    missing_pool = tmp_path / "not-read.jsonl"  # reading it would fail with "Pool not found"
    for command in (["select", "--budget", "3"], ["iterate", "--budget", "3", "--model", "m"]):
        rc = main([command[0], str(missing_pool), *command[1:], "--out", str(tmp_path / "s.jsonl"),
                   "--config", str(config), "-q"])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2, err
        assert err.count("\n") == 1 and str(config) in err and name in err and words in err, err
        assert "Pool not found" not in err and "internal error" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]


@pytest.mark.parametrize(
    ("text", "name"),
    [("train: {trainer: deepspeed}", "'train.trainer'"), ("train: {epochs: 0}", "'train.epochs'"),
     ("rounds: 0", "'rounds'"), ("reweight: {temperature: -1}", "'reweight.temperature'"),
     ("generate: {max_new_tokens: many}", "'generate.max_new_tokens'"), ("train: {lora_r: 2.5}", "'train.lora_r'"),
     ("judge: {judge_unparsable: skip}", "'judge.judge_unparsable'")],
)  # fmt: skip
def test_bad_iterate_values(tmp_path, capsys, text, name):
    config = tmp_path / "it.yaml"
    config.write_text(text + "\n")
    rc = main(["iterate", str(tmp_path / "nope.jsonl"), "--budget", "3", "--model", "m", "--out",
               str(tmp_path / "s.jsonl"), "--config", str(config), "--dry-run"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and name in err and "Pool not found" not in err, err


def test_flags_are_validated_too(tmp_path, capsys):
    rc = main(["select", str(tmp_path / "nope.jsonl"), "--budget", "3", "--out", str(tmp_path / "s.jsonl"),
               "--seed", "-1"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "The 'seed' setting (--seed) must be an int >= 0. Got -1 instead." in err


def test_bad_yaml_in_param_is_a_usage_error(tmp_path, capsys):
    rc = main(["select", str(tmp_path / "nope.jsonl"), "--budget", "3", "--out", str(tmp_path / "s.jsonl"),
               "--param", "tau=[0.9"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and "--param 'tau=[0.9'" in err and "not valid YAML" in err and "internal error" not in err


def test_values_are_normalised_and_budget_parsed():
    cfg = RunConfig.from_dict({"budget": "300", "score": {"judge_timeout": 3}, "cluster": {"clusters": "auto"}})
    assert cfg.budget == 300 and isinstance(cfg.budget, int)
    assert cfg.score.judge_timeout == 3.0 and isinstance(cfg.score.judge_timeout, float)
    assert RunConfig(budget="0.1").budget == 0.1 and cfg.cluster.clusters == "auto"
    # direct construction is checked as well (the API builds these objects)
    with pytest.raises(InvalidParameterError, match=r"The 'niter' setting must be an int >= 1. Got 0 instead."):
        ClusterConfig(niter=0)
    with pytest.raises(InvalidParameterError, match="'precision'"):
        EmbedConfig(precision="int4")
    with pytest.raises(InvalidParameterError, match="'judge_max_retries'"):
        ScoreConfig(judge_max_retries=-1)
    with pytest.raises(InvalidParameterError, match="'finetune'"):
        TrainConfig(finetune="qlora")
    assert IterateConfig(budget="12").budget == 12


def test_resolved_config_yaml_reloads_equal(tmp_path):
    cfg = RunConfig.from_dict({"budget": "300", "seed": 4, "cluster": {"candidates": [8, 16]}})
    from kmq.config import dump_config, load_config

    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert "budget: 300\n" in path.read_text() and load_config(path) == cfg


def test_method_parameter_choices_come_from_the_method(tmp_path, capsys):
    from kmq.methods import get_method

    assert get_method("kmq").choices["within"] == ("softmax", "proportional", "uniform", "top")
    for command in (["select", "--budget", "3"], ["iterate", "--budget", "3", "--model", "m", "--dry-run"]):
        rc = main([command[0], str(tmp_path / "nope.jsonl"), *command[1:], "--out", str(tmp_path / "s.jsonl"),
                   "--param" if command[0] == "select" else "--config", *(["within=bogus"] if command[0] == "select"
                   else [str(_yaml(tmp_path, "select: {params: {within: bogus}}"))])])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 2 and "'within' parameter of method 'kmq' must be one of" in err, err
        assert "Pool not found" not in err


def _yaml(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text + "\n")
    return path
