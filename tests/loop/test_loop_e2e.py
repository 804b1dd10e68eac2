"""The whole loop with a tiny local Llama (TRL + LoRA, a few steps per round), resumed after SIGKILLs.

One uninterrupted run (the Python API) is the reference; the one slow kill test drives the command line
in a subprocess, SIGKILLs it at a deterministic point (:mod:`killpoints`: while the trained model is
saved), resumes it and checks that the resumed run ends with the same selection.parquet content and
the same subset bytes. Every step boundary is killed with fast components in ``test_iterate_resume.py``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

pytest.importorskip("trl")
pytest.importorskip("peft")

import killpoints  # noqa: E402
import kmq  # noqa: E402
from kmq.loop.config import load_iterate_config  # noqa: E402
from kmq.loop.rundir import SettingsChangedError  # noqa: E402
from kmq.methods.allocate import allocate_budget  # noqa: E402

BUDGET, ROUNDS, SEED = 24, 2, 3
FLAGS = [
    "--budget", str(BUDGET), "--rounds", str(ROUNDS), "--seed", str(SEED), "--embedder", "hashing", "--clusters", "6",
    "--judge", "relevance", "--max-steps", "2", "--batch-size", "4", "--grad-accum", "1", "--max-seq-length", "128",
    "--max-new-tokens", "8",
]  # fmt: skip
SETTINGS = {"train.max_steps": 2, "train.batch_size": 4, "train.grad_accum": 1, "train.max_seq_length": 128,
            "generate.max_new_tokens": 8}  # fmt: skip


def api_run(pool_file, model, out, run_dir=None, **kw):
    return kmq.iterate(
        str(pool_file), budget=BUDGET, rounds=ROUNDS, seed=SEED, model=str(model), out=out, run_dir=run_dir,
        embedder="hashing", clusters=6, judge=kw.pop("judge", "relevance"),
        settings={**SETTINGS, **kw.pop("settings", {})}, show_progress=False, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def baseline(pool_file, tiny_llama, tmp_path_factory):
    """An uninterrupted run: returns its folder (subset s.jsonl, run dir s.jsonl.kmq-run)."""
    root = tmp_path_factory.mktemp("baseline")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KMQ_CACHE_DIR", str(root / "cache"))
        api_run(pool_file, tiny_llama, root / "s.jsonl")
    return root


def table(run_dir):
    return pq.read_table(run_dir / "selection.parquet").to_pydict()


def test_uninterrupted_run_outputs(baseline, pool_file):
    run = baseline / "s.jsonl.kmq-run"
    t = table(run)
    assert len(t["id"]) == BUDGET and len(set(t["pool_index"])) == BUDGET
    assert t["round"] == [1] * 12 + [2] * 12
    pool_lines = pool_file.read_bytes().splitlines()
    assert (baseline / "s.jsonl").read_bytes().splitlines() == [pool_lines[i] for i in sorted(t["pool_index"])]
    m = json.loads((run / "manifest.json").read_text())
    assert m["command"] == "iterate" and m["budget"]["sizes"] == [12, 12] and m["counts"]["selected"] == BUDGET
    r1, r2 = m["rounds"]
    assert sum(r1["counts"]) == 12 and sum(r2["counts"]) == 12
    assert r1["weights"] == pytest.approx([1 / 6] * 6) and sum(r1["weights_after"]) == pytest.approx(1)
    assert sum(r1["scored"]) == 12 and set(r1["seconds"]) == {"select", "train", "generate", "judge", "reweight"}
    assert r2["weights"] == pytest.approx(r1["weights_after"]) and set(r2["seconds"]) == {"select"}
    assert r1["stats"]["train"]["steps"] == 2 and r1["stats"]["generate"]["generations"] == 12
    # round 2 draws by the new weights, capped by what each cluster has left
    labels = np.load(run / "prepare/arrays/labels.npy")
    capacity = np.bincount(np.delete(labels, t["pool_index"][:12]), minlength=6)
    assert allocate_budget(capacity, np.array(r2["weights"]), 12).tolist() == r2["counts"]
    assert not (run / "rounds/r02/DONE-train").exists()  # no training after the last draw (train_final off)
    weights = json.loads((run / "rounds/r01/reweight/weights.json").read_text())
    assert weights["weights"] == pytest.approx(r1["weights_after"])
    assert load_iterate_config(run / "config.yaml").judge.scorer == "relevance"


@pytest.mark.slow
def test_sigkill_while_saving_the_trained_model_resumes_identically(baseline, pool_file, tiny_llama, tmp_path):
    """The one slow kill-and-resume case, with the real TRL trainer and HF generator; the fast components of
    ``test_iterate_resume.py`` cover every step boundary. The kill is deterministic (:mod:`killpoints`): at
    the first file written into the trained model's folder, after training, before the step is in place."""
    out = tmp_path / "s.jsonl"
    run = tmp_path / "s.jsonl.kmq-run"
    args = ["iterate", str(pool_file), "--model", str(tiny_llama), "--out", str(out), *FLAGS]
    script = killpoints.wrapper(tmp_path)
    saving = killpoints.run_kmq(script, args, root=run, ops=("open", "replace", "rename"), kill_at=1,
                                match=r"^rounds/r01/\.train\.tmp-[0-9a-f]+/model/")  # fmt: skip
    assert saving.killed, saving.stderr[-3000:]
    assert "r01-train: start" in saving.stderr and (run / "rounds/r01/DONE-select").is_file()
    assert not (run / "rounds/r01/train").exists() and not (run / "rounds/r01/DONE-train").exists()
    done = killpoints.run_kmq(script, args, root=run)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "r01-select: finished earlier, reusing" in done.stderr and "r01-train: start" in done.stderr
    assert table(run) == table(baseline / "s.jsonl.kmq-run")
    assert out.read_bytes() == (baseline / "s.jsonl").read_bytes()
    assert not list(run.rglob(".*tmp-*")) and not list(run.rglob(".*-work"))  # no half-written leftovers


@pytest.fixture
def copy_of_baseline(baseline, tmp_path):
    shutil.copytree(baseline / "s.jsonl.kmq-run", tmp_path / "run")
    return tmp_path / "run"


def test_changed_setting_is_an_error_naming_setting_and_step(copy_of_baseline, pool_file, tiny_llama):
    run = copy_of_baseline
    with pytest.raises(SettingsChangedError) as err:
        api_run(pool_file, tiny_llama, None, run_dir=run, settings={"train.lr": 1e-4})
    assert str(err.value) == (
        "rounds/r01 was trained with lr=0.0002; now lr=0.0001. Use a new --run-dir or pass --restart-from r01-train."
    )
    msg = r"rounds/r01 was judged with judge=relevance; now judge=perplexity\. .* --restart-from r01-judge"
    with pytest.raises(SettingsChangedError, match=msg):
        api_run(pool_file, tiny_llama, None, run_dir=run, judge="perplexity")
    with pytest.raises(SettingsChangedError, match="rounds/r01 was selected with rounds=2; now rounds=3"):
        kmq.iterate(str(pool_file), budget=BUDGET, rounds=3, seed=SEED, model=str(tiny_llama), run_dir=run,
                    embedder="hashing", clusters=6, judge="relevance", settings=SETTINGS)  # fmt: skip


def test_other_judge_redoes_judging_onward_not_training(copy_of_baseline, pool_file, tiny_llama, tiny_reward):
    run = copy_of_baseline
    trained = (run / "rounds/r01/DONE-train").read_bytes()
    generated = (run / "rounds/r01/DONE-generate").read_bytes()
    sel = api_run(pool_file, tiny_llama, None, run_dir=run, judge=f"reward:{tiny_reward}", restart_from="r01-judge")
    assert (run / "rounds/r01/DONE-train").read_bytes() == trained
    assert (run / "rounds/r01/DONE-generate").read_bytes() == generated
    assert len(sel) == BUDGET and len(np.unique(sel.indices)) == BUDGET
    judge = np.load(run / "rounds/r01/judge/arrays/S.npy")
    gold = np.load(run / "rounds/r01/judge/arrays/gold.npy")
    gen = np.load(run / "rounds/r01/judge/arrays/generated.npy")
    np.testing.assert_allclose(judge, gold - gen)
    marker = json.loads((run / "rounds/r01/DONE-judge").read_text())
    assert marker["settings"]["judge"] == f"reward:{tiny_reward}" and marker["stats"]["scorer"].startswith("reward:")
    assert sel.manifest["rounds"][0]["stats"]["judge"]["judge"] == f"reward:{tiny_reward}"


def test_perplexity_judge_is_eq7_with_the_rounds_model(copy_of_baseline, pool_file, tiny_llama):
    from kmq.loop.judge import split_prompt, with_answer
    from kmq.scorers.perplexity import PerplexityScorer

    run = copy_of_baseline
    api_run(pool_file, tiny_llama, None, run_dir=run, judge="perplexity", restart_from="r01-judge")
    S = np.load(run / "rounds/r01/judge/arrays/S.npy")
    rows = [json.loads(x) for x in (run / "rounds/r01/generate/generations.jsonl").read_text().splitlines()][:3]
    pool = kmq.read_pool(pool_file)
    prompts = [split_prompt(pool.messages[r["pool_index"]]) for r in rows]
    scorer = PerplexityScorer(str(run / "rounds/r01/train/model"))
    nll_gold = scorer.mean_nll([with_answer(p, a) for p, a in prompts])
    nll_gen = scorer.mean_nll([with_answer(p, r["answer"]) for (p, _), r in zip(prompts, rows, strict=True)])
    np.testing.assert_allclose(S[:3], nll_gold - nll_gen, rtol=1e-6)  # S = meanNLL(gold) - meanNLL(gen)
