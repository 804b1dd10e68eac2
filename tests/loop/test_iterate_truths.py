"""``kmq iterate`` is quiet and fails early (issue 11): stdout carries only the summary, ``-q`` gives an empty
stderr, the generation step shows a progress bar, a missing ``--model`` fails before any step (in
``--dry-run`` too) naming what was looked for, and ``--dry-run`` on an existing run marks the finished steps.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chat_server import ChatServer, echo_words
from kmq.cli.main import main

SUMMARY = ("subset ", "run dir ", "pool ", "rounds ", "  r0", "sources ", "time ")
TRL = ["--budget", "12", "--rounds", "2", "--seed", "3", "--embedder", "hashing", "--clusters", "3", "--judge",
       "relevance", "--max-steps", "2", "--batch-size", "4", "--grad-accum", "1", "--max-seq-length", "64",
       "--max-new-tokens", "4"]  # fmt: skip


def summary_only(stdout: str) -> None:
    lines = stdout.splitlines()
    assert lines and all(line.startswith(SUMMARY) for line in lines), stdout


def test_trl_iterate_prints_only_the_summary_on_stdout_and_progress_on_stderr(pool_file, tiny_llama, tmp_path,
                                                                             capsys):  # fmt: skip
    pytest.importorskip("trl")
    rc = main(["iterate", str(pool_file), *TRL, "--model", str(tiny_llama), "--out", str(tmp_path / "s.jsonl")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "{'loss'" not in out and "train_runtime" not in out  # transformers' PrinterCallback printed these
    summary_only(out)
    assert "round 1: training" in err and "round 1: generating" in err  # kmq's bars, on stderr


def test_trl_iterate_quiet_has_an_empty_stderr(pool_file, tiny_llama, tmp_path):
    """A real process: in pytest, warnings are captured by pytest and never reach stderr."""
    pytest.importorskip("trl")
    cmd = [sys.executable, "-m", "kmq.cli.main", "iterate", str(pool_file), *TRL, "--model", str(tiny_llama),
           "--out", str(tmp_path / "s.jsonl"), "-q"]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == ""  # no "Loading weights" bar, no transformers FutureWarning, no dataset map bars
    summary_only(done.stdout)


@pytest.mark.parametrize(
    ("model", "words"),
    [
        ("./no-such-model", ["the model folder", "no-such-model does not exist"]),
        ("nobody/no-such-model", ["'nobody/no-such-model' is no local folder", "not in the Hugging Face cache",
                                  "HF_HUB_OFFLINE is set", "hf download nobody/no-such-model"]),
        ("not a repo!", ["'not a repo!' is no local folder", "no hub name"]),
    ],
)  # fmt: skip
def test_dry_run_with_a_missing_model_exits_2_naming_it(pool_file, tmp_path, capsys, model, words):
    rc = main(["iterate", str(pool_file), "--budget", "12", "--rounds", "2", "--model", model,
               "--out", str(tmp_path / "s.jsonl"), "--dry-run"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and err.count("\n") == 1, err
    assert err.startswith("kmq iterate: error: Cannot load the base model (--model ")
    assert all(w in err for w in words), err
    assert "Repo id must be in the form" not in err


def test_a_folder_without_config_json_is_not_a_model(pool_file, tmp_path, capsys):
    folder = tmp_path / "empty-model"
    folder.mkdir()
    rc = main(["iterate", str(pool_file), "--budget", "12", "--rounds", "2", "--model", str(folder),
               "--out", str(tmp_path / "s.jsonl"), "--dry-run"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 2 and f"the folder {folder} has no config.json" in err, err


def test_a_missing_model_fails_before_any_step(pool_file, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    rc = main(["iterate", str(pool_file), "--budget", "12", "--rounds", "2", "--model", "./gone", "--embedder",
               "hashing", "--out", str(out), "-q"])  # fmt: skip
    assert rc == 2 and "gone does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no prepare step, no run directory


def test_model_check_follows_what_the_run_uses(pool_file, tmp_path, capsys):
    base = ["iterate", str(pool_file), "--budget", "12", "--out", str(tmp_path / "s.jsonl"), "--dry-run"]
    # one round and no final training: the base model is never loaded, so it is not checked
    assert main([*base, "--rounds", "1", "--model", "nobody/no-such-model"]) == 0
    assert main([*base, "--rounds", "1", "--train-final", "--model", "nobody/no-such-model"]) == 2
    # the command trainer hands --model to the user's command: only a local-looking path must exist
    command = ["--rounds", "2", "--trainer", "command", "--train-command", "train {base_model} {output_dir}"]
    assert main([*base, *command, "--model", "nobody/no-such-model"]) == 0
    assert main([*base, *command, "--model", "s3://bucket/models/m"]) == 0
    capsys.readouterr()
    assert main([*base, *command, "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missing'} does not exist" in err and "{base_model}" in err


TRAINER = "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])"


def test_dry_run_on_an_existing_run_marks_the_finished_steps(pool_file, tiny_llama, tmp_path, capsys):
    pytest.importorskip("openai")
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    out = tmp_path / "s.jsonl"
    with ChatServer(echo_words) as server:
        args = ["iterate", str(pool_file), "--budget", "12", "--rounds", "2", "--model", str(tiny_llama),
                "--embedder", "hashing", "--clusters", "3", "--judge", "relevance", "--trainer", "command",
                "--train-command", f"{sys.executable} {script} {{base_model}} {{output_dir}}",
                "--generator", f"openai:tiny@{server.url}", "--max-new-tokens", "4", "--out", str(out)]  # fmt: skip
        assert main([*args, "--dry-run", "-q"]) == 0
        fresh = capsys.readouterr().out
        assert "run dir would be" in fresh
        assert not any(line.startswith("done") or line.endswith(" done") for line in fresh.splitlines())
        assert main([*args, "-q"]) == 0
    run = tmp_path / "s.jsonl.kmq-run"
    for marker in ("rounds/r01/DONE-judge", "rounds/r01/DONE-reweight", "rounds/r02/DONE-select"):  # as if killed
        (run / marker).unlink()
    before = sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    assert main([*args, "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"run dir {run} exists: 4 step(s) finished" in text
    assert "done      prepare and 3 round step(s) finished earlier" in text
    rows = {line.split()[0]: line.split()[-1] for line in text.splitlines() if line.strip()[:1].isdigit()}
    assert rows == {"1": "select,train,generate", "2": "-"}
    assert sorted((p.relative_to(tmp_path), p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
