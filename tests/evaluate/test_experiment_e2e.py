"""``kmq experiment`` end to end on CPU: 2 methods x 1 budget x 2 seeds, select -> train -> eval on kmq's local tasks.

The command trainer (a script that copies the base model: a loadable "trained" model) runs the grid once
uninterrupted, once SIGKILLed right before the second cell's ``DONE-train`` marker (cell 1 finished, cell 2's
train folder in place but unmarked) and resumed: the resumed run must write the uninterrupted run's
``results.csv`` bytes. A cell whose trainer exits 1 is reported and the other finishes (one task); a changed
setting of a finished step is an error naming it. The TRL trainer (LoRA, 2 steps) trains and evaluates one cell.
"""

from __future__ import annotations

import csv
import io
import os
import sys

import pytest
import yaml

import killpoints

TRAINER = """
import shutil, sys
base, out, seed, fail_seed = sys.argv[1:5]
if seed == fail_seed:
    sys.exit(1)
shutil.copytree(base, out)
"""
#: imported once by the fork server, not by each run (transformers and lm-eval import their parts lazily: the Llama
#: model and tokenizer classes, lm-eval's evaluator and HF model, datasets; ~2,400 modules, seconds per run)
PRELOAD = ["torch", "transformers", "lm_eval", "pyarrow.parquet", "yaml", "kmq.pipeline", "kmq.loop.train",
           "kmq.evaluate.harness", "kmq.evaluate.experiment.run", "kmq.embed.hashing", "kmq.cli.main",
           "kmq.cli.experiment", "kmq.methods", "kmq.metrics.diagnostics", "kmq.shape", "kmq.scorers",
           "kmq.embed.tokens", "kmq.evaluate.tasks", "kmq.evaluate.task_defs.loaders", "lm_eval.evaluator",
           "lm_eval.models.huggingface", "transformers.models.llama.modeling_llama",
           "transformers.models.auto.tokenization_auto"]  # fmt: skip
TASKS = ["arc_easy", "truthfulqa_mc1"]  # two multiple-choice tasks: the generation path is test_harness.py's
EVAL = {"tasks": TASKS, "limit": 2, "num_fewshot": 0, "max_new_tokens": 8, "batch_size": 4}


@pytest.fixture(scope="module")
def grid(datakit, tiny_llama, tmp_path_factory):
    """``grid(name, **changes)`` runs ``kmq experiment`` in a forked child; returns (run, out folder)."""
    pytest.importorskip("lm_eval")
    root = tmp_path_factory.mktemp("experiment")
    pool = root / "pool.jsonl"
    pool.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:80]) + "\n")
    (root / "train.py").write_text(TRAINER)
    env = {**os.environ, "KMQ_CACHE_DIR": str(root / "cache")}

    def config(fail_seed=-1, **changes):
        cfg = {
            "name": "tiny", "pool": str(pool), "methods": ["kmq", "random"], "budgets": [16], "seeds": [0, 1],
            "embedder": "hashing", "clusters": 4, "model": str(tiny_llama), "device": "cpu",
            "trainer": {"name": "command",
                        "command": f"{sys.executable} {root / 'train.py'} {{base_model}} {{output_dir}} {{seed}} "
                        f"{fail_seed}"},
            "eval": {**EVAL, "data_dir": str(datakit)},
        }  # fmt: skip
        cfg["eval"].update(changes.pop("eval", {}))  # eval changes are merged into the eval settings
        cfg.update(changes)
        return cfg

    with killpoints.Forkserver(PRELOAD) as forks:

        def run(name, *extra, fail_seed=-1, **kw):
            cfg = config(fail_seed, **kw.pop("changes", {}))
            path = root / f"{name}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            out = root / name
            res = forks.run(["experiment", str(path), "--out", str(out), "-q", *extra], root=out, cwd=root, env=env,
                            **kw)  # fmt: skip
            return res, out

        yield run


def _rows(out):
    return list(csv.DictReader(io.StringIO((out / "results.csv").read_text())))


@pytest.mark.slow
def test_grid_end_to_end_then_killed_and_resumed_equals_uninterrupted(grid, tiny_llama, datakit):
    ref, out = grid("ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    rows = _rows(out)
    cells = [f"pool__{m}__b16__s{s}" for m in ("kmq", "random") for s in (0, 1)]
    assert [(r["cell"], r["task"]) for r in rows] == [(c, t) for c in cells for t in TASKS]
    assert all(r["status"] == "ok" and r["limited"] == "true" and r["n"] == "2" for r in rows)
    assert all(0 <= float(r["value"]) <= 1 and r["metric"] for r in rows)
    # the evaluation is kmq eval's JSON as it is, and the tokens are the selected records' under the model's tokenizer
    import json

    from kmq.embed.tokens import count_tokens
    from kmq.loop.train import read_training_data

    tokens = {}
    for r in rows:
        cell = out / "cells" / r["cell"]
        result = json.loads((cell / "eval" / "results.json").read_text())["tasks"][r["task"]]
        assert float(r["value"]) == result["value"] and r["metric"] == result["primary"]
        if r["cell"] not in tokens:
            counts, _ = count_tokens(read_training_data(cell / "select" / "train.jsonl"), str(tiny_llama))
            tokens[r["cell"]] = int(counts.sum())
        assert int(r["train_tokens"]) == tokens[r["cell"]] > 0
    md = (out / "results.md").read_text()
    assert ref.stdout == md
    assert "| kmq | 16 | 2 |" in md and "| random | 16 | 2 |" in md and "Difference to random" in md
    assert "**limited**" in md and "Cells without results" not in md

    killed, kout = grid("kill", match=r"^cells/[^/]+/DONE-train$", kill_at=2)
    assert killed.killed, killed.stderr[-3000:]
    assert (kout / "cells" / cells[0] / "DONE-eval").is_file()
    assert (kout / "cells" / cells[1] / "DONE-select").is_file()
    assert not (kout / "cells" / cells[1] / "DONE-train").exists()
    resumed, kout = grid("kill")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert (kout / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    assert (kout / "results.md").read_bytes() == (out / "results.md").read_bytes()
    steps = {c for c in resumed.changes if c.startswith("cells/") and "/DONE-" in c}
    assert f"cells/{cells[0]}/DONE-select" not in steps and f"cells/{cells[1]}/DONE-train" in steps

    # a finished step's setting changed: stop before any work, naming the setting and the fix
    changed, _ = grid("kill", changes={"eval": {"limit": 3}})
    assert changed.returncode == 2
    assert "was evaluated with limit=2; now limit=3" in changed.stderr and "--restart-from" in changed.stderr


def test_a_failing_cell_is_reported_and_the_others_finish(grid):
    res, out = grid("fail", fail_seed=1, changes={"methods": ["random"], "eval": {"tasks": ["arc_easy"]}})
    assert res.returncode == 1
    assert "1 of 2 cells failed" in res.stderr
    rows = {(r["cell"], r["task"]): r for r in _rows(out)}
    assert len(rows) == 2
    ok, bad = rows[("pool__random__b16__s0", "arc_easy")], rows[("pool__random__b16__s1", "arc_easy")]
    assert ok["status"] == "ok" and ok["value"]
    assert bad["status"] == "failed" and bad["failed_step"] == "train" and bad["value"] == ""
    assert "the training command exited with status 1" in bad["error"]
    md = (out / "results.md").read_text()
    assert "- pool__random__b16__s1: failed at train: TrainingError: round 1: the training command exited" in md


@pytest.mark.slow
def test_trl_lora_grid(grid):
    trainer = {"name": "trl", "finetune": "lora", "max_steps": 2, "batch_size": 2, "grad_accum": 1,
               "max_seq_length": 128, "lora_r": 4, "lora_alpha": 8}  # fmt: skip
    res, out = grid("trl", changes={"trainer": trainer, "methods": ["kmq"], "seeds": [0]})  # one cell: the TRL path
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _rows(out)
    assert [(r["cell"], r["task"]) for r in rows] == [("pool__kmq__b16__s0", t) for t in TASKS]
    assert all(r["status"] == "ok" and 0 <= float(r["value"]) <= 1 for r in rows)
    import json

    cell = out / "cells" / rows[0]["cell"]
    marker = json.loads((cell / "DONE-train").read_text())
    assert marker["stats"]["trainer"] == "trl" and marker["stats"]["steps"] == 2
    assert (cell / "train" / "model" / "config.json").is_file()
    result = json.loads((cell / "eval" / "results.json").read_text())
    assert result["model"]["path"] == str((cell / "train" / "model").resolve())  # the trained model was evaluated
    assert "trl lora, max_steps 2" in (out / "results.md").read_text()
