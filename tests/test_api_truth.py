"""What the API and the command line say about a run is short, true and helpful (issue 11)."""

from __future__ import annotations

import pytest

import kmq
from kmq.cli.main import main
from kmq.errors import InvalidParameterError


@pytest.fixture
def pool_file(datakit, tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:120]) + "\n")
    return path


def test_misspelt_option_names_the_close_match(pool_file):
    with pytest.raises(InvalidParameterError, match=r"unknown option\(s\) 'embeder' \(did you mean 'embedder'\?\)"):
        kmq.select(str(pool_file), budget=10, embeder="hashing")
    with pytest.raises(InvalidParameterError, match=r"'temprature' \(did you mean 'temperature'\?\)"):
        kmq.select(str(pool_file), budget=10, embedder="hashing", temprature=0.5)


def test_repr_is_short(pool_file, tmp_path):
    sel = kmq.select(str(pool_file), budget=12, embedder="hashing", out=tmp_path / "s.jsonl", run_dir=tmp_path / "r")
    text = repr(sel)
    assert text.startswith("Selection(12 of 120 records, method kmq (allocation=equal") and len(text) < 400
    assert "k=" in text and str(tmp_path / "s.jsonl") in text and "array(" not in text


def test_summary_names_embedder_scorer_and_duplicates(datakit, tmp_path, capsys):
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:50]
    pool = tmp_path / "dup.jsonl"
    pool.write_text("\n".join(lines + lines[:5]) + "\n")  # 5 exact duplicates (their ids differ: positions)
    assert main(["select", str(pool), "--budget", "10", "--out", str(tmp_path / "s.jsonl"), "--embedder", "hashing",
                 "-q"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "method    kmq  allocation=equal within=softmax temperature=1.0" in out
    assert ("embedder  hashing on conversations (pooled from the prompt and response vectors): 110 texts "
            "(100 encoded, 0 cached, 10 duplicates of other texts)") in out  # 55 prompts + 55 responses
    assert main(["select", str(pool), "--budget", "10", "--out", str(tmp_path / "j.jsonl"), "--embedder", "hashing",
                 "--conversation-vectors", "joint", "-q"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "embedder  hashing on conversations: 55 texts (50 encoded, 0 cached, 5 duplicates of other texts)" in out
    assert "scorer    heuristic" in out


def test_methods_command_lists_parameters_and_defaults(capsys):
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in kmq.METHODS:
        assert f"\n{name}\n" in f"\n{out}"
    assert "--param within=softmax (softmax | proportional | uniform | top)" in out
    assert "--param tau=0.9" in out
    assert main(["methods", "qdit"]) == 0 and capsys.readouterr().out.startswith("qdit\n")
    assert main(["methods", "nope"]) == 2


def test_choose_k_is_a_public_function_over_a_pool(pool_file):
    import inspect

    assert {"candidates", "sample", "budget", "embedder"} <= set(inspect.signature(kmq.choose_k).parameters)
    choice = kmq.choose_k(str(pool_file), candidates=[2, 4], embedder="hashing", show_progress=False)
    assert choice.best in (2, 4) and [row["k"] for row in choice.table] == [2, 4]


def test_score_is_a_public_function_even_after_the_scorers_are_imported(pool_file, tmp_path):
    import inspect

    import kmq.scorers.heuristic  # noqa: F401  (a submodule import must not shadow the function)

    assert inspect.isfunction(kmq.score) and "scorer" in inspect.signature(kmq.score).parameters
    scores = kmq.score(str(pool_file), embedder="hashing", out=tmp_path / "s.csv", show_progress=False)
    assert len(scores) == 120 and (tmp_path / "s.csv").read_text().startswith("id,score\n")
    assert repr(scores).startswith("Scores(120 records, scorer 'heuristic'")
