"""``kmq iterate`` on the command line: the dry-run plan and usage errors (nothing trains here)."""

from __future__ import annotations

import pytest

from kmq.cli.main import main
from kmq.loop.api import build_iterate_config
from kmq.loop.config import IterateConfig, load_iterate_config


def test_dry_run_prints_the_plan_and_writes_nothing(pool_file, tiny_llama, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    rc = main(["iterate", str(pool_file), "--budget", "25", "--rounds", "3", "--model", str(tiny_llama),
               "--out", str(out), "--dry-run", "-q"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "budget 25 over 3 round(s): 9 + 8 + 8" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert rows == [
        ["1", "9", "9", "9", "9", "18"],
        ["2", "8", "17", "17", "17", "34"],
        ["3", "8", "25", "-", "0", "0"],
    ]
    assert "judge     perplexity; reweight multiplicative (T=1.0)" in text
    assert not out.exists() and not (tmp_path / "s.jsonl.kmq-run").exists() and list(tmp_path.iterdir()) == []


def test_dry_run_continue_mode_counts_only_the_new_batch(pool_file, tiny_llama, tmp_path, capsys):
    rc = main(["iterate", str(pool_file), "--budget", "0.2", "--rounds", "2", "--model", str(tiny_llama), "--out",
               str(tmp_path / "s.jsonl"), "--train-mode", "continue", "--train-final", "--dry-run", "-q"])  # fmt: skip
    assert rc == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert rows == [["1", "9", "9", "9", "9", "18"], ["2", "9", "18", "9", "0", "0"]]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "2", "--rounds", "3", "--model", "m"], "smaller than --rounds 3"),
        (["--budget", "10", "--trainer", "command", "--model", "m"], "needs --train-command"),
        (["--budget", "10", "--judge", "heuristic", "--model", "m"], "'judge' parameter must be one of"),
        (["--budget", "10"], "No base model given: pass --model"),
        (["--budget", "1000", "--model", "m"], "larger than the pool (90 records)"),
        (["--budget", "10", "--model", "m", "--generator", "openai:x"], "hf, vllm or openai:MODEL@URL"),
    ],
)
def test_usage_errors_exit_2_with_one_line(pool_file, tmp_path, capsys, extra, message):
    rc = main(["iterate", str(pool_file), "--out", str(tmp_path / "s.jsonl"), "--dry-run", *extra])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and err.startswith("kmq iterate: error:")


def test_config_file_and_flags(tmp_path):
    path = tmp_path / "it.yaml"
    path.write_text("budget: 30\nrounds: 2\nmodel: m\ntrain: {lr: 1.0e-5, finetune: full}\n"
                    "judge: {scorer: relevance}\nreweight: {method: softmax, temperature: 0.5}\n")  # fmt: skip
    cfg = build_iterate_config(str(path), {"train.epochs": 1.0, "out": str(tmp_path / "o.jsonl")})
    assert isinstance(cfg, IterateConfig) and cfg.train.lr == 1e-5 and cfg.train.epochs == 1.0
    assert cfg.judge.judge_unparsable == "nan" and cfg.reweight.method == "softmax"
    assert cfg.run_dir == str(tmp_path / "o.jsonl.kmq-run")
    assert IterateConfig().train.resolved_lr() == 2e-4 and cfg.train.resolved_lr() == 1e-5
    path.write_text("budget: 30\ntrain: {learning_rate: 1.0}\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['learning_rate'\] for TrainConfig"):
        load_iterate_config(path)
