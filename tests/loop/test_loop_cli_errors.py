"""Errors of the loop's pure parts reach the command line as one line and exit 2, never as "internal error".

``kmq iterate`` runs for real with fast components (hashing, ``--judge relevance``, a command trainer that
copies the model folder, an OpenAI-compatible loopback server as the generator).
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from chat_server import ChatServer, echo_words
from kmq.cli.main import main

TRAINER = "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])"


@pytest.fixture(scope="module")
def server():
    with ChatServer(echo_words) as srv:
        yield srv


@pytest.fixture
def iterate(pool_file, server, tmp_path, capsys):
    """``iterate(*flags)``: ``kmq iterate`` in this process; returns (exit code, stderr lines)."""
    pytest.importorskip("openai")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}\n")
    (tmp_path / "train.py").write_text(TRAINER)

    def run(*flags):
        args = ["iterate", str(pool_file), "--budget", "24", "--rounds", "2", "--seed", "3", "--embedder", "hashing",
                "--clusters", "6", "--judge", "relevance", "--model", str(model), "--out", str(tmp_path / "s.jsonl"),
                "--trainer", "command", "--train-command",
                f"{sys.executable} {tmp_path / 'train.py'} {{base_model}} {{output_dir}}",
                "--generator", f"openai:tiny@{server.url}", "-q", *flags]  # fmt: skip
        capsys.readouterr()
        code = main(args)
        return code, capsys.readouterr().err.strip().splitlines()

    return run


def test_a_reweight_temperature_too_small_for_the_signals_is_one_line_exit_2(iterate, tmp_path):
    code, err = iterate("--reweight-temperature", "1e-320")  # a valid float > 0: signal / T overflows
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("kmq iterate: error: The 'temperature' parameter of update_weights is too small")
    assert "--reweight-temperature" in err[0] and "internal error" not in err[0]
    assert not (tmp_path / "s.jsonl.kmq-run" / "rounds/r01/DONE-reweight").exists()  # no NaN weights kept


def test_damaged_judge_scores_are_one_line_exit_2(iterate, tmp_path):
    assert iterate()[0] == 0
    s_path = tmp_path / "s.jsonl.kmq-run" / "rounds/r01/judge/arrays/S.npy"
    np.save(s_path, np.load(s_path)[:5])  # edited by hand: fewer scores than judged examples
    code, err = iterate("--restart-from", "r01-reweight")
    assert code == 2 and len(err) == 1, err
    assert err[0] == ("kmq iterate: error: labels and scores of cluster_signal must have the same shape (m,); got "
                      "(12,) and (5,).")  # fmt: skip
    weights = json.loads((tmp_path / "s.jsonl.kmq-run" / "manifest.json").read_text())["rounds"][0]["weights_after"]
    assert len(weights) == 6  # the finished run's outputs are untouched
