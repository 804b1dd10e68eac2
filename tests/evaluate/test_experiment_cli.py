"""``kmq experiment``: config errors (exit 2, one line, nothing written) and ``--dry-run`` (the plan, no writes)."""

from __future__ import annotations

import sys

import pytest
import yaml

from kmq.cli.main import main

TRAINER = "import shutil, sys\nshutil.copytree(sys.argv[1], sys.argv[2])\n"


@pytest.fixture(scope="module")
def files(datakit, tmp_path_factory):
    """A 60-record dolly pool, a model folder (no weights: these tests never load it) and a command trainer."""
    root = tmp_path_factory.mktemp("experiment-cli")
    pool = root / "pool.jsonl"
    pool.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:60]) + "\n")
    (root / "train.py").write_text(TRAINER)
    (root / "model").mkdir()
    return {"root": root, "pool": pool, "model": root / "model"}


@pytest.fixture(scope="module")
def with_llama(files, tmp_path_factory):
    """``files`` with a tiny local Llama (its tokenizer counts the training tokens)."""
    pytest.importorskip("transformers")
    from tiny_models import build_causal_lm

    return {**files, "model": build_causal_lm(tmp_path_factory.mktemp("llama") / "model", arch="llama")}


def config(files, path, **changes):
    cfg = {
        "pool": str(files["pool"]), "methods": ["kmq", "random"], "budgets": [12], "seeds": [0, 1],
        "embedder": "hashing", "clusters": 3, "model": str(files["model"]),
        "trainer": {"name": "command", "command": f"{sys.executable} {files['root'] / 'train.py'} "
                    "{base_model} {output_dir}"},
        "eval": {"tasks": ["arc_easy", "gsm8k"], "limit": 2},
    }  # fmt: skip
    for key, value in changes.items():
        if value is None:
            cfg.pop(key)
        else:
            cfg[key] = value
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"budget": 12}, ["unknown setting(s) ['budget']", "'budgets'"]),
        ({"methods": ["kmq", "kmeans"]}, ["methods[1]", "'kmeans'", "random"]),
        ({"methods": [{"name": "kmq", "params": {"temp": 1}}]}, ["methods[0]", "['temp']", "temperature"]),
        ({"methods": [{"name": "kmq", "alpha": 1}]}, ["methods[0]", "['name', 'params', 'label']"]),
        ({"methods": ["random", {"name": "random"}]}, ["methods[0] and methods[1]", "label"]),
        ({"trainer": {"name": "trl", "steps": 2}}, ["trainer", "['steps']", "max_steps"]),
        ({"trainer": {"name": "command"}}, ["command:"]),
        ({"eval": {"tasks": ["arc_easy"], "limit": 0}}, ["'eval.limit'", "> 0"]),
        ({"eval": None}, ["eval: {tasks"]),
        ({"seeds": [0, 0]}, ["'seeds'", "distinct"]),
        ({"clusters": "many"}, ["'cluster.clusters'", "'auto'"]),
        ({"methods": [{"name": "iterate", "params": {"rounds": 2, "temperature": "hot"}}]}, ["temperature"]),
    ],
)
def test_config_errors_exit_2_with_one_line(files, tmp_path, capsys, changes, expected):
    path = config(files, tmp_path / "exp.yaml", **changes)
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kmq experiment: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    assert not out.exists()


def test_out_may_not_be_an_input(files, tmp_path, capsys):
    path = config(files, tmp_path / "exp.yaml")
    assert main(["experiment", str(path), "--out", str(files["model"] / "exp")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert main(["experiment", str(path), "--out", str(tmp_path / "busy")]) == 2
    assert "not a kmq experiment folder" in capsys.readouterr().err


def test_dry_run_prints_the_plan_and_writes_nothing(with_llama, tmp_path, capsys):
    from kmq.data import read_pool
    from kmq.embed.tokens import count_tokens

    files = with_llama
    path = config(files, tmp_path / "exp.yaml", methods=["kmq", {"name": "qdit", "params": {"alpha": 0.7}}, "random"])
    out = tmp_path / "out"
    assert main(["experiment", str(path), "--out", str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert not out.exists()
    assert "1 pool(s) x 3 method(s) x 1 budget(s) x 2 seed(s) = 6 cells" in text
    assert "trainings   6 to run of 6" in text and "evaluations 6 to run of 6: 12 task runs" in text
    assert "limit 2 (smoke numbers)" in text
    # before selection: the pool's mean tokens under the model's tokenizer x the budget, and it says so
    counts, _ = count_tokens(list(read_pool(files["pool"]).messages), str(files["model"]), show_progress=False)
    per_cell = round(float(counts.mean()) * 12)
    assert f"train tokens {6 * per_cell:,} in all (estimated: the pool's mean tokens" in text
    lines = [line for line in text.splitlines() if line.startswith("pool__")]
    assert [line.split()[0] for line in lines] == [
        f"pool__{m}__b12__s{s}" for m in ("kmq", "qdit-alpha=0.7", "random") for s in (0, 1)
    ]
    assert all(line.split()[1:4] == ["todo"] * 3 and line.endswith(f"{per_cell:,} (estimated)") for line in lines)
