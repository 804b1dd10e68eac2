"""``kmq report DIR`` on a ``kmq experiment`` folder: the results table and each cell's selection diagnostics."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

import pytest

TRAINER = """
import shutil, sys
shutil.copytree(sys.argv[1], sys.argv[2])
"""


def evaluator(model: str, *, tasks: list[str], limit, seed: int, **kwargs) -> dict:
    """A stand-in for the harness (run_experiment's documented evaluator hook): a value from the seed and method."""
    bonus = 0.05 * (1 + seed) if "__kmq__" in model else 0.0  # the model folder is the cell's
    return {"tasks": {t: {"primary": "acc", "value": (seed + 1 + i) / 10 + bonus, "stderr": {"acc": 0.01}, "n": limit,
                          "limited": limit is not None} for i, t in enumerate(tasks)}}  # fmt: skip


@pytest.fixture(scope="module")
def experiment(datakit, tiny_llama, tmp_path_factory) -> Path:
    from kmq.evaluate.experiment import ExperimentConfig, run_experiment

    tmp = tmp_path_factory.mktemp("exp-report")
    pool = tmp / "pool.jsonl"
    pool.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:80]) + "\n")
    (tmp / "train.py").write_text(TRAINER)
    train = f"{sys.executable} {tmp / 'train.py'} {{base_model}} {{output_dir}}"
    cfg = ExperimentConfig.from_dict({
        "name": "report <check>", "pool": str(pool), "budgets": [10], "seeds": [0, 1], "embedder": "hashing",
        "clusters": 3, "methods": ["kmq", "random"], "model": str(tiny_llama), "device": "cpu",
        "trainer": {"name": "command", "command": train},
        "eval": {"tasks": ["a", "b"], "limit": 3},
    })  # fmt: skip
    run_experiment(cfg, tmp / "out", evaluator=evaluator)
    return tmp / "out"


def test_the_report_holds_results_md_tables_and_every_cells_diagnostics(experiment, capsys):
    from kmq.cli.main import main

    assert main(["report", str(experiment), "-q"]) == 0
    page = experiment / "report.html"
    assert capsys.readouterr().out.strip() == str(page)
    text = page.read_text(encoding="utf-8")
    assert "<script" not in text and "default-src 'none'" in html.unescape(text)  # loads nothing, runs nothing
    assert "kmq experiment: report &lt;check&gt;" in text  # the name is escaped
    md = (experiment / "results.md").read_text(encoding="utf-8")
    md_rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines()
               if line.startswith("|") and not line.startswith("|---")]  # fmt: skip
    html_rows = [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<t[hd]>(.*?)</t[hd]>", row)]
                 for row in re.findall(r"<tr>(.*?)</tr>", text.split('id="selections"')[0])]  # fmt: skip
    assert html_rows == md_rows and len(md_rows) >= 5  # both tables of results.md, cell for cell
    assert "+7.50 [" in md  # kmq's paired difference to random (5 and 10 points): a real table
    cells = sorted(p.parent.name for p in experiment.glob("cells/*/select"))
    assert len(cells) == 4
    for cell in cells:
        diag = json.loads((experiment / "cells" / cell / "select" / "manifest.json").read_text())["diagnostics"]
        for key, block in (("vendi", "selected"), ("vendi_random", "random"), ("coverage_mean", "selected")):
            metric = key.removesuffix("_random")
            want = diag[block][metric]
            attr = re.escape(html.escape(json.dumps([cell, key])))
            shown = re.search(f'data-key="{attr}" data-value="([^"]+)"', text)
            assert shown, (cell, key)
            assert (None if shown.group(1) == "null" else float(shown.group(1))) == pytest.approx(want), (cell, key)
    assert "__random__" in " ".join(cells) and "__kmq__" in " ".join(cells)


def test_rerendering_gives_the_same_bytes_and_outputs_are_guarded(experiment, tmp_path):
    from kmq.errors import MissingArtifactError, OutputConflictError
    from kmq.report import is_experiment, write_experiment_report

    first = write_experiment_report(experiment, out=tmp_path / "a.html").read_bytes()
    assert write_experiment_report(experiment, out=tmp_path / "a.html").read_bytes() == first
    assert is_experiment(experiment) and not is_experiment(tmp_path)
    with pytest.raises(OutputConflictError, match="is a file of the experiment"):
        write_experiment_report(experiment, out=experiment / "results.md")
    (tmp_path / "mine.html").write_text("user's page")
    with pytest.raises(OutputConflictError, match="kmq did not write it"):
        write_experiment_report(experiment, out=tmp_path / "mine.html")
    assert (tmp_path / "mine.html").read_text() == "user's page"
    (tmp_path / "fake").mkdir()
    (tmp_path / "fake" / "experiment.json").write_text('{"command": "experiment"}')
    with pytest.raises(MissingArtifactError, match="results.md does not exist yet"):
        write_experiment_report(tmp_path / "fake")
