"""``kmq.evaluate.experiment.run_experiment`` from Python: an iterate cell runs the loop, ``restart_from``, resume.

The evaluator here is the documented escape hatch (any callable with :func:`kmq.evaluate.harness.evaluate_model`'s
arguments and JSON): it scores each trained model folder by what the trainer wrote into it, so the test checks
that the eval step reads the cell's own trained model. The real harness runs in ``test_experiment_e2e.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

TRAINER = """
import json, shutil, sys
base, out, data = sys.argv[1:4]
shutil.copytree(base, out)
json.dump({"examples": sum(1 for _ in open(data))}, open(out + "/trained_on.json", "w"))
"""


class Evaluator:
    """Scores a model folder by the number of training examples its trainer saw; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, model: str, *, tasks: list[str], limit, seed: int, **kwargs) -> dict:
        self.calls.append(model)
        examples = json.loads((Path(model) / "trained_on.json").read_text())["examples"]
        return {"tasks": {t: {"primary": "acc", "value": examples / 100, "stderr": {"acc": 0.0}, "n": limit,
                              "limited": limit is not None} for t in tasks}}  # fmt: skip


@pytest.fixture
def experiment(datakit, tiny_llama, tmp_path):
    from kmq.evaluate.experiment import ExperimentConfig

    pool = tmp_path / "pool.jsonl"
    pool.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:60]) + "\n")
    (tmp_path / "train.py").write_text(TRAINER)
    return ExperimentConfig.from_dict({
        "pool": str(pool), "budgets": [12], "seeds": [0], "embedder": "hashing", "clusters": 3,
        "methods": ["random", {"name": "iterate", "label": "iter2",
                               "params": {"rounds": 2, "judge": "relevance", "generate.max_new_tokens": 4}}],
        "model": str(tiny_llama), "device": "cpu",
        "trainer": {"name": "command",
                    "command": f"{sys.executable} {tmp_path / 'train.py'} {{base_model}} {{output_dir}} {{data}}"},
        "eval": {"tasks": ["a", "b"], "limit": 3},
    })  # fmt: skip


def test_iterate_cell_runs_the_loop_and_restart_from(experiment, tmp_path):
    import pyarrow.parquet as pq

    from kmq.evaluate.experiment import run_experiment

    ev = Evaluator()
    res = run_experiment(experiment, tmp_path / "out", evaluator=ev)
    assert [c["status"] for c in res.cells] == ["ok", "ok"]
    cell = tmp_path / "out" / "cells" / "pool__iter2__b12__s0"
    rounds = pq.read_table(cell / "select" / "selection.parquet").column("round").to_pylist()
    assert sorted(set(rounds)) == [1, 2] and len(rounds) == 12  # the loop drew in two rounds
    assert (cell / "iterate-run" / "rounds" / "r01" / "DONE-judge").is_file()
    examples = sum(1 for _ in open(cell / "select" / "train.jsonl"))
    assert [r["value"] for r in res.rows if r["cell"] == cell.name] == [examples / 100] * 2
    assert len(ev.calls) == 2 and all(call.endswith("/train/model") for call in ev.calls)
    table = (tmp_path / "out" / "results.csv").read_bytes()

    again = run_experiment(experiment, tmp_path / "out", evaluator=ev)  # all done: nothing runs
    assert len(ev.calls) == 2 and again.rows == res.rows
    run_experiment(experiment, tmp_path / "out", evaluator=ev, restart_from="eval")
    assert len(ev.calls) == 4
    train = json.loads((cell / "DONE-train").read_text())["finished_utc"]
    run_experiment(experiment, tmp_path / "out", evaluator=ev, restart_from=f"{cell.name}/train")
    assert len(ev.calls) == 5 and ev.calls[-1].startswith(str(cell))
    assert (cell / "DONE-train").is_file() and json.loads((cell / "DONE-train").read_text())["finished_utc"] >= train
    assert (tmp_path / "out" / "results.csv").read_bytes() == table  # recomputed steps, the same table

    from kmq.errors import InvalidParameterError, SettingsChangedError
    from kmq.evaluate.experiment import plan_experiment

    changed = experiment.__class__.from_dict({**experiment.to_dict(), "eval": {"tasks": ["a", "b"], "limit": 4}})
    plan = plan_experiment(changed, tmp_path / "out")
    rows = {line.split()[0]: line.split()[1:4] for line in plan.splitlines() if line.startswith("pool__")}
    assert rows == {c: ["done", "done", "changed"] for c in ("pool__random__b12__s0", "pool__iter2__b12__s0")}
    assert "the run stops there" in plan
    with pytest.raises(SettingsChangedError, match=r"was evaluated with limit=3; now limit=4.*--restart-from"):
        run_experiment(changed, tmp_path / "out", evaluator=ev)

    with pytest.raises(InvalidParameterError, match="--restart-from must be a step"):
        run_experiment(experiment, tmp_path / "out", evaluator=ev, restart_from="judge")
    with pytest.raises(InvalidParameterError, match="no cell 'nope'"):
        run_experiment(experiment, tmp_path / "out", evaluator=ev, restart_from="nope/eval")
