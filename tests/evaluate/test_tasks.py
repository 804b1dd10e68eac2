"""kmq's local lm-eval tasks: each loads offline and renders the datakit rows as expected; names, shots, metadata.

Expected prompts are built here from the raw JSONL rows (and the BBH prompt files), not from kmq's code.
"""

from __future__ import annotations

import hashlib
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kmq.errors import InvalidParameterError, MissingArtifactError
from kmq.evaluate.task_defs import BBH_TASKS, DEFS_DIR, MMLU_SUBJECTS
from kmq.evaluate.tasks import (
    LOCAL_SUBTASKS,
    LOCAL_TASKS,
    PAPER_SUITE,
    apply_paper_shots,
    describe,
    expand_tasks,
    primary_metric,
    primary_metric_key,
    resolve_data_dir,
    task_manager,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def rows(datakit, rel):
    return [json.loads(line) for line in (datakit / rel).read_text(encoding="utf-8").split("\n") if line.strip()]


_LOADED: dict = {}


def render(manager, name, index=0, *, fresh=False):
    """(task, doc, context, continuations) of the eval doc ``index`` of the local task ``name`` (built once)."""
    if fresh or name not in _LOADED:
        _LOADED[name] = next(iter(manager.load([name])["tasks"].values()))
    task = _LOADED[name]
    task.set_fewshot_seed(1234)
    doc = task.eval_docs[index]
    ctx = task.fewshot_context(doc, task.get_config("num_fewshot") or 0)
    requests = task.construct_requests(doc=doc, ctx=ctx, metadata=(name, index, 1))
    conts = [r.arguments[1] for r in requests] if isinstance(requests, list) else None
    return task, doc, ctx, conts


# -- the definitions ------------------------------------------------------------------------------------------
def test_catalogs_match_the_datakit(datakit):
    assert sorted({r["category"] for r in rows(datakit, "mmlu/mmlu.jsonl")}) == list(MMLU_SUBJECTS)
    assert sorted({r["category"] for r in rows(datakit, "bbh/bbh.jsonl")}) == list(BBH_TASKS)
    assert sorted(p.stem for p in (datakit / "bbh/orig/cot-prompts").glob("*.txt")) == list(BBH_TASKS)


def test_generated_files_are_up_to_date():
    from kmq.evaluate.task_defs.generate import render as render_files

    files = render_files()
    on_disk = {p.relative_to(DEFS_DIR).as_posix() for d in ("mmlu", "bbh") for p in (DEFS_DIR / d).glob("*.yaml")}
    assert on_disk == set(files)
    assert all((DEFS_DIR / rel).read_text(encoding="utf-8") == text for rel, text in files.items())


def test_the_index_has_every_local_name_and_groups_list_their_subtasks(local_tasks):
    assert set(LOCAL_TASKS) | set(LOCAL_SUBTASKS) == set(local_tasks.all_subtasks) | set(local_tasks.all_groups)
    assert local_tasks.all_groups == ["bbh", "mmlu"]
    assert local_tasks.task_index["mmlu"].cfg["task"] == [f"mmlu_{s}" for s in MMLU_SUBJECTS]
    assert local_tasks.task_index["bbh"].cfg["task"] == [f"bbh_{t}" for t in BBH_TASKS]


# -- rendering against the raw rows ---------------------------------------------------------------------------
def mmlu_block(row, answer=True):
    letters = "".join(f"\n{letter}. {c}" for letter, c in zip("ABCD", row["choices"], strict=True))
    return f"{row['question'].strip()}{letters}\nAnswer:" + (f" {row['answer']}" if answer else "")


@pytest.mark.parametrize("subject", ["anatomy", "high_school_us_history"])
def test_mmlu_is_5_shot_from_the_same_subjects_dev_rows(local_tasks, datakit, subject):
    mine = [r for r in rows(datakit, "mmlu/mmlu.jsonl") if r["category"] == subject]
    dev, test = [r for r in mine if r["split"] == "dev"], [r for r in mine if r["split"] == "test"]
    task, doc, ctx, conts = render(local_tasks, f"mmlu_{subject}")
    header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    assert ctx == header + "\n\n".join([*(mmlu_block(r) for r in dev[:5]), mmlu_block(test[0], answer=False)])
    assert conts == [" A", " B", " C", " D"]
    assert task.doc_to_target(doc) == test[0]["answer_index"] == "ABCD".index(test[0]["answer"])
    assert len(task.eval_docs) == len(test)


def test_arc_easy_is_zero_shot_over_the_choice_texts(local_tasks, datakit):
    easy = [r for r in rows(datakit, "arc/arc.jsonl") if r["category"] == "ARC-easy"]
    task, doc, ctx, conts = render(local_tasks, "arc_easy")
    assert ctx == f"Question: {easy[0]['question']}\nAnswer:"
    assert conts == [f" {c}" for c in easy[0]["choices"]]
    assert task.doc_to_target(doc) == easy[0]["answer_index"]
    assert len(task.eval_docs) == len(easy)


def test_arc_challenge_shots_are_other_challenge_items(local_tasks, datakit):
    hard = [r for r in rows(datakit, "arc/arc.jsonl") if r["category"] == "ARC-challenge"]
    solved = {f"Question: {r['question']}\nAnswer: {r['choices'][r['answer_index']]}" for r in hard}
    _, _, ctx, _ = render(local_tasks, "arc_challenge", index=3)
    *shots, last = ctx.split("\n\n")
    assert last == f"Question: {hard[3]['question']}\nAnswer:"
    assert len(shots) == 25 and set(shots) <= solved
    assert not any(s.startswith(f"Question: {hard[3]['question']}\n") for s in shots)


def test_gsm8k_shots_come_from_train_never_from_test(local_tasks, datakit):
    test = rows(datakit, "gsm8k_test/gsm8k_test.jsonl")
    train_rows = rows(datakit, "gsm8k_train/gsm8k_train.jsonl")
    train = {(r["messages"][0]["content"], r["messages"][1]["content"]) for r in train_rows}
    test_questions = {r["prompt"] for r in test}
    for index in range(3):
        task, doc, ctx, _ = render(local_tasks, "gsm8k", index=index)
        assert ctx.startswith("Question: ")
        *shots, last = ctx.removeprefix("Question: ").split("\n\nQuestion: ")
        assert last == f"{test[index]['prompt']}\nAnswer:"
        pairs = [tuple(s.split("\nAnswer: ", 1)) for s in shots]
        assert len(pairs) == 5 and set(pairs) <= train
        assert not {q for q, _ in pairs} & test_questions
        assert task.doc_to_target(doc) == test[index]["final_answer"]
    assert {"Question:", "\n\n"} <= set(task.config.generation_kwargs["until"])


def test_rendering_is_deterministic(local_tasks):
    from kmq.evaluate.task_defs.loaders import clear_cache

    first = [render(local_tasks, "gsm8k", index=i)[2] for i in range(2)]
    clear_cache()  # parse the files and build the datasets again
    again = [render(local_tasks, "gsm8k", index=i, fresh=i == 0)[2] for i in range(2)]
    assert first == again


@pytest.mark.parametrize("name", ["truthfulqa_mc1", "truthfulqa_mc2"])
def test_truthfulqa_choices(local_tasks, datakit, name):
    row = rows(datakit, "truthfulqa/truthfulqa.jsonl")[0]
    task, doc, ctx, conts = render(local_tasks, name)
    assert ctx.startswith("Q: What is human life expectancy in the United States?\n")
    assert ctx.endswith(f"\n\nQ: {row['prompt']}\nA:")
    if name == "truthfulqa_mc1":
        expected = [row["best_answer"], *row["incorrect_answers"]]
    else:
        expected = [*row["correct_answers"], *row["incorrect_answers"]]
    assert conts == [f" {c}" for c in expected]
    assert task.doc_to_target(doc) == 0


def test_truthfulqa_mc2_is_the_probability_mass_on_true_answers(local_tasks):
    task, doc, _, _ = render(local_tasks, "truthfulqa_mc2")
    labels = doc["mc2_targets"]["labels"]
    probs = [0.5 / labels.count(1) if lab else 0.25 / labels.count(0) for lab in labels]  # sums to 0.75
    got = task.process_results(doc, [(math.log(p), False) for p in probs])
    assert got["acc"] == pytest.approx(0.5 / 0.75)


@given(st.lists(st.floats(-80, 0), min_size=2, max_size=8), st.floats(-500, 500))
def test_mc2_is_a_probability_and_shift_invariant(lls, shift):
    from kmq.evaluate.task_defs.scoring import process_results_mc2

    doc = {"mc2_targets": {"labels": [1] + [0] * (len(lls) - 1)}}
    one = process_results_mc2(doc, [(x, False) for x in lls])["acc"]
    two = process_results_mc2(doc, [(x + shift, False) for x in lls])["acc"]
    assert 0.0 <= one <= 1.0 and one == pytest.approx(two, abs=1e-9)


@pytest.mark.parametrize("category", ["boolean_expressions", "sports_understanding"])
def test_bbh_is_the_3_shot_cot_prompt_file(local_tasks, datakit, category):
    row = next(r for r in rows(datakit, "bbh/bbh.jsonl") if r["category"] == category)
    text = (datakit / f"bbh/orig/cot-prompts/{category}.txt").read_text(encoding="utf-8")
    body = text.split("\n-----\n", 1)[1].strip("\n").replace("step by step. ", "step by step.\n")
    task, doc, ctx, _ = render(local_tasks, f"bbh_{category}")
    assert ctx == f"{body}\n\nQ: {row['prompt']}\nA: Let's think step by step.\n"
    assert task.doc_to_target(doc) == row["target"]


def test_humaneval_prompt_and_sandboxed_scoring(local_tasks, datakit):
    pytest.importorskip("kmq.evaluate.sandbox")
    row = rows(datakit, "humaneval/humaneval.jsonl")[0]
    task, doc, ctx, _ = render(local_tasks, "humaneval")
    assert ctx == row["prompt"] and task.UNSAFE_CODE
    assert task.process_results(doc, [[row["canonical_solution"]]]) == {"pass@1": 1.0}
    assert task.process_results(doc, [["    return not True\n"]]) == {"pass@1": 0.0}
    # two samples, one right: pass@1 = 1/2 (no pass@10 with fewer than 10 samples)
    assert task.process_results(doc, [[row["canonical_solution"], "    return 1/0\n"]]) == {"pass@1": 0.5}


def test_mbpp_prompt_and_sandboxed_scoring(local_tasks, datakit):
    pytest.importorskip("kmq.evaluate.sandbox")
    row = rows(datakit, "mbpp_test/mbpp_test.jsonl")[0]
    task, doc, ctx, _ = render(local_tasks, "mbpp")
    tests = "\n".join(row["test_list"])
    last = (f"You are an expert Python programmer, and here is your task: {row['prompt']} Your code should pass "
            f"these tests:\n\n{tests}\n[BEGIN]\n")
    assert ctx.endswith("[DONE]\n\n" + last) and ctx.count("[DONE]") == 3 and task.UNSAFE_CODE
    assert task.process_results(doc, [[row["code"]]]) == {"pass@1": 1.0}
    assert task.process_results(doc, [["def remove_Occ(s,ch):\n    return s"]]) == {"pass@1": 0.0}


# -- errors ---------------------------------------------------------------------------------------------------
def test_a_missing_data_file_is_named(tmp_path):
    pytest.importorskip("lm_eval")
    manager = task_manager(tmp_path, tasks=["arc_easy"])
    with pytest.raises(MissingArtifactError, match=r"arc/arc\.jsonl.*--data-dir"):
        manager.load(["arc_easy"])
    with pytest.raises(MissingArtifactError, match=r"arc/arc\.jsonl"):
        describe("arc_easy", tmp_path)


def test_an_unknown_task_lists_the_local_ones(datakit):
    pytest.importorskip("lm_eval")
    with pytest.raises(InvalidParameterError, match=r"'no_such_task'.*mmlu, arc_challenge"):
        task_manager(datakit, tasks=["arc_easy", "no_such_task"], include_defaults=False)


def test_resolve_data_dir_order(tmp_path, monkeypatch, datakit):
    monkeypatch.delenv("KMQ_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InvalidParameterError, match=r"--data-dir.*KMQ_DATA_DIR.*shared/datakit.*datakit"):
        resolve_data_dir(None)
    assert resolve_data_dir(None, required=False) is None
    (tmp_path / "datakit").mkdir()
    assert resolve_data_dir(None) == tmp_path / "datakit"
    monkeypatch.setenv("KMQ_DATA_DIR", str(datakit))
    assert resolve_data_dir(None) == datakit.resolve()
    assert resolve_data_dir(tmp_path) == tmp_path  # an explicit folder wins over the variable
    with pytest.raises(InvalidParameterError, match=r"'data_dir'.*nowhere"):
        resolve_data_dir(tmp_path / "nowhere")
    with pytest.raises(InvalidParameterError, match=r"'data_dir'.*Got ''"):
        resolve_data_dir("")
    monkeypatch.setenv("KMQ_DATA_DIR", str(tmp_path / "gone"))
    with pytest.raises(InvalidParameterError, match=r"\$KMQ_DATA_DIR.*gone"):
        resolve_data_dir(None)


def test_expand_tasks():
    assert expand_tasks("arc_easy, gsm8k") == ["arc_easy", "gsm8k"]
    assert expand_tasks(["gsm8k", "paper"]) == ["gsm8k", "mmlu", "hellaswag", "arc_challenge", "truthfulqa_mc2",
                                                "humaneval"]  # fmt: skip
    for bad in ("", " , ", [], [""], [3], None, {"a": 1}):
        with pytest.raises(InvalidParameterError, match="'tasks'"):
            expand_tasks(bad)


@given(st.lists(st.sampled_from(["a", "b", "gsm8k", "mmlu", "paper", " c ", ""]), min_size=1))
def test_expand_tasks_keeps_first_occurrences(parts):
    wanted = [n for p in parts for n in (PAPER_SUITE if p == "paper" else [p.strip()]) if n]
    if not wanted:
        with pytest.raises(InvalidParameterError):
            expand_tasks(",".join(parts))
        return
    got = expand_tasks(",".join(parts))
    assert got == list(dict.fromkeys(wanted)) == expand_tasks(parts)


# -- metrics, shots, description ------------------------------------------------------------------------------
def test_primary_metrics():
    assert {t: primary_metric_key(t) for t in PAPER_SUITE} == {
        "mmlu": "acc,none", "gsm8k": "exact_match,strict-match", "hellaswag": "acc_norm,none",
        "arc_challenge": "acc_norm,none", "truthfulqa_mc2": "acc,none", "humaneval": "pass@1,create_test",
    }  # fmt: skip
    assert primary_metric("mmlu_anatomy") == "acc" and primary_metric_key("bbh_navigate") == "exact_match,get-answer"
    assert {primary_metric(t) for t in LOCAL_TASKS} == {"acc", "acc_norm", "exact_match", "pass@1"}
    with pytest.raises(InvalidParameterError, match="'winogrande'"):
        primary_metric("winogrande")


def test_apply_paper_shots_fills_only_unset_shots(local_tasks):
    loaded = local_tasks.load(["arc_challenge", "arc_easy", "gsm8k"])["tasks"]
    assert apply_paper_shots(loaded) == {}  # every local task carries its shots
    loaded["arc_challenge"].set_config(key="num_fewshot", value=None)
    assert apply_paper_shots(loaded) == {"arc_challenge": 25}
    assert loaded["arc_challenge"].get_config("num_fewshot") == 25


def test_describe_records_versions_files_and_digest(datakit):
    info = describe("gsm8k", datakit)
    digest = hashlib.sha256((datakit / "gsm8k_test/gsm8k_test.jsonl").read_bytes()).hexdigest()
    assert info["sha256"] == digest
    assert set(info["files"]) == {"gsm8k_test/gsm8k_test.jsonl", "gsm8k_train/gsm8k_train.jsonl"}
    assert (info["version"], info["num_fewshot"], info["metric"], info["source"]) == (1.0, 5, "exact_match", "kmq")
    sub = describe("mmlu_virology", datakit)
    assert sub["group"] == "mmlu" and sub["version"] == 1.0
    assert sub["config_digest"] != describe("mmlu", datakit)["config_digest"]
    assert describe("hellaswag") == {"task": "hellaswag", "source": "lm_eval", "num_fewshot": 10}


# -- the path kmq eval wraps ----------------------------------------------------------------------------------
def test_lm_evals_evaluate_on_a_tiny_llama(local_tasks, tiny_llama):
    """The call kmq eval makes (harness._evaluate: lm-eval's evaluate with simple_evaluate's settings)."""
    pytest.importorskip("lm_eval")
    from lm_eval.evaluator import evaluate
    from lm_eval.models.huggingface import HFLM

    from kmq.evaluate.harness import _evaluate

    lm = HFLM(pretrained=str(tiny_llama), device="cpu", dtype="float32", batch_size=4)
    loaded = {"manager": local_tasks, "objects": list(local_tasks.load(["arc_easy", "gsm8k"])["tasks"].values())}
    res = _evaluate(lm, loaded, num_fewshot=None, limit=4, gen_kwargs={"max_gen_toks": 8}, seed=0)
    got = res["results"]
    for name, key in (("arc_easy", "acc,none"), ("arc_easy", "acc_norm,none"), ("gsm8k", "exact_match,strict-match"),
                      ("gsm8k", "exact_match,flexible-extract")):  # fmt: skip
        assert 0.0 <= got[name][key] <= 1.0
    assert res["n-shot"] == {"arc_easy": 0, "gsm8k": 5} and res["n-samples"]["gsm8k"]["effective"] == 4
    assert res["configs"]["gsm8k"]["metadata"]["kmq_data_dir"] == str(local_tasks.metadata["kmq_data_dir"])
    with pytest.raises(ValueError, match="unsafe"):  # lm-eval's own guard, under kmq's allow_code_execution check
        evaluate(lm=lm, task_dict=local_tasks.load(["humaneval"]), limit=1)


def test_lm_eval_per_task_noise_is_dropped(local_tasks):
    import logging

    seen = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = seen.append
    logger = logging.getLogger("lm_eval.api.task")  # lm-eval logs "Custom kwargs can be passed..." once per task here
    logger.addHandler(handler)
    try:
        local_tasks.load(["truthfulqa_mc1"])
    finally:
        logger.removeHandler(handler)
    assert not [r for r in seen if "Custom kwargs" in r.getMessage()]
