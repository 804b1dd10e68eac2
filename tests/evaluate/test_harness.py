"""kmq.evaluate.evaluate_model on a tiny local Llama: the same numbers as lm-eval called directly, the results
schema, a LoRA adapter that is applied and fingerprinted, the judged tasks, and the errors raised before any
model loads."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

from eval_runs import SETTINGS, TASKS, perplexity_task, shared_run  # noqa: E402

from kmq.errors import (  # noqa: E402
    InvalidParameterError,
    MissingArtifactError,
    MissingDependencyError,
    OutputConflictError,
)
from kmq.evaluate.harness import evaluate_model  # noqa: E402
from kmq.evaluate.results import results_table, split_metrics  # noqa: E402
from kmq.publish import sha256_tree  # noqa: E402

SEEDS = {"random_seed": 0, "numpy_random_seed": 0, "torch_random_seed": 0, "fewshot_random_seed": 0}


@pytest.fixture(scope="module")
def run(tiny_llama, datakit, tmp_path_factory):
    return shared_run(tiny_llama, datakit, tmp_path_factory.mktemp("eval-run"))


@pytest.fixture(scope="module")
def perplexity(tiny_llama, datakit):
    """kmq's run of the inline perplexity task on 2 questions (no adapter)."""
    return evaluate_model(str(tiny_llama), tasks=[perplexity_task()], data_dir=datakit, limit=2, device="cpu",
                          precision="fp32", seed=0, show_progress=False)  # fmt: skip


def _direct(tiny_llama, datakit, tasks, **kwargs):
    import lm_eval

    from kmq.evaluate.tasks import task_manager

    names = [t for t in tasks if isinstance(t, str)]
    return lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": str(tiny_llama), "dtype": "float32", "device": "cpu"}, tasks=tasks,
        task_manager=task_manager(datakit, tasks=names), log_samples=False, **SEEDS, **kwargs,
    )  # fmt: skip


def test_same_numbers_as_lm_eval_called_directly(run, tiny_llama, datakit):
    results, _ = run
    direct = _direct(tiny_llama, datakit, TASKS.split(","), limit=4, num_fewshot=1, batch_size=4,
                     gen_kwargs={"max_gen_toks": 16})  # fmt: skip
    expected_metrics = {"arc_easy": {"acc", "acc_norm"},
                        "gsm8k": {"exact_match,strict-match", "exact_match,flexible-extract"}}  # fmt: skip
    for task, names in expected_metrics.items():
        entry, row = results["tasks"][task], direct["results"][task]
        assert set(entry["metrics"]) == names
        assert (entry["metrics"], entry["stderr"]) == split_metrics(row)
        assert entry["metrics"]["acc_norm" if task == "arc_easy" else "exact_match,strict-match"] == (
            row["acc_norm,none" if task == "arc_easy" else "exact_match,strict-match"]
        )
        assert entry["n"] == direct["n-samples"][task]["effective"] == 4
        assert entry["available"] == direct["n-samples"][task]["original"] > 4
        assert entry["num_fewshot"] == direct["n-shot"][task] == 1
        assert entry["version"] == direct["versions"][task]
    # kmq calls lm-eval's evaluate (not simple_evaluate, whose environment report takes seconds): the same entries
    assert results["tasks"] == _entries(direct, TASKS.split(","), 4, datakit)


def _entries(direct, names, limit, datakit):
    from kmq.evaluate.results import task_entries
    from kmq.evaluate.tasks import resolve_data_dir

    return task_entries(direct, {"top": {n: [n] for n in names}}, limit=limit, data_dir=resolve_data_dir(datakit))


def test_continuous_metrics_equal_lm_eval_called_directly(perplexity, tiny_llama, datakit):
    direct = _direct(tiny_llama, datakit, [perplexity_task()], limit=2, batch_size=8)
    entry = perplexity["tasks"]["kmq_test_perplexity"]
    assert entry["metrics"] == split_metrics(direct["results"]["kmq_test_perplexity"])[0]
    assert entry["metrics"]["word_perplexity"] > 1.0 and entry["n"] == 2
    assert perplexity["tasks"] == _entries(direct, ["kmq_test_perplexity"], 2, datakit)  # and its config digest


def test_results_schema(run, tiny_llama, datakit):
    results, out = run
    assert set(results) == {"kmq_version", "lm_eval_version", "model", "adapter", "backend", "device", "precision",
                            "seed", "limit", "tasks", "settings", "timings"}  # fmt: skip
    assert results["model"] == {"name": str(tiny_llama), "path": str(tiny_llama.resolve()),
                                "fingerprint": "sha256:" + sha256_tree(tiny_llama)}  # fmt: skip
    assert results["adapter"] is None
    assert (results["backend"], results["device"], results["precision"], results["seed"], results["limit"]) == (
        "hf", "cpu", "fp32", 0, 4)  # fmt: skip
    assert list(results["tasks"]) == ["arc_easy", "gsm8k"]
    arc, gsm = results["tasks"]["arc_easy"], results["tasks"]["gsm8k"]
    assert (arc["primary"], gsm["primary"]) == ("acc_norm", "exact_match,strict-match")
    for entry in (arc, gsm):
        assert entry["value"] == entry["metrics"][entry["primary"]] and entry["limited"] is True
        assert entry["settings"]["source"] == "kmq" and len(entry["settings"]["sha256"]) == 64
        assert set(entry["stderr"]) == set(entry["metrics"])
    assert gsm["settings"]["files"].keys() == {"gsm8k_test/gsm8k_test.jsonl", "gsm8k_train/gsm8k_train.jsonl"}
    assert results["settings"]["max_new_tokens"] == 16 and results["settings"]["data_dir"] == str(datakit.resolve())
    assert set(results["timings"]) >= {"load_tasks_s", "load_model_s", "evaluate_s", "total_s"}
    # the file: the same dict, keys sorted, written where asked
    text = out.read_text(encoding="utf-8")
    assert json.loads(text) == results
    assert text == json.dumps(results, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    table = results_table(results)
    assert "| arc_easy | acc_norm | " in table and "| limit 4 |" in table


def test_out_refuses_a_file_kmq_did_not_write(tiny_llama, datakit, tmp_path):
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": 1}\n')
    with pytest.raises(OutputConflictError, match="--overwrite"):
        evaluate_model(str(tiny_llama), tasks="arc_easy", data_dir=datakit, out=foreign)
    with pytest.raises(OutputConflictError, match="input"):
        evaluate_model(str(tiny_llama), tasks="arc_easy", data_dir=datakit, out=tiny_llama / "config.json")
    assert foreign.read_text() == '{"mine": 1}\n'


@pytest.fixture(scope="module")
def lora(tiny_llama, tmp_path_factory):
    """A LoRA adapter of the tiny Llama with random (non-zero) B matrices: it changes the logits."""
    peft = pytest.importorskip("peft")
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    cfg = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    path = tmp_path_factory.mktemp("eval-lora")
    peft.get_peft_model(base, cfg).save_pretrained(path)
    return path


def test_adapter_is_applied_and_fingerprinted(perplexity, lora, tiny_llama, datakit):
    res = evaluate_model(str(tiny_llama), adapter=str(lora), tasks=[perplexity_task()], data_dir=datakit, limit=2,
                         device="cpu", precision="fp32", seed=0, show_progress=False)  # fmt: skip
    assert res["model"] == perplexity["model"]
    fingerprint = "sha256:" + sha256_tree(lora)
    assert res["adapter"] == {"name": str(lora), "path": str(lora.resolve()), "fingerprint": fingerprint}
    with_lora = res["tasks"]["kmq_test_perplexity"]["metrics"]
    without = perplexity["tasks"]["kmq_test_perplexity"]["metrics"]
    assert with_lora.keys() == without.keys()
    assert all(with_lora[m] != pytest.approx(without[m], rel=1e-6) for m in with_lora)


def test_judged_task_answers_with_the_model_and_asks_the_judge(tiny_llama, lora, datakit):
    pytest.importorskip("openai")
    from chat_server import ChatServer

    prompts = []
    with ChatServer(lambda m: (prompts.append(m), "Both are alike. [[C]]")[1]) as server:
        res = evaluate_model(str(tiny_llama), adapter=str(lora), tasks="alpaca_eval", data_dir=datakit, limit=2,
                             device="cpu", precision="fp32", max_new_tokens=4, seed=0, show_progress=False,
                             judge="judge:test-judge@" + server.url.replace("://", "://me:sk-secret@"))  # fmt: skip
    entry = res["tasks"]["alpaca_eval"]
    assert (entry["primary"], entry["value"], entry["n"], entry["limited"]) == ("win_rate", 0.5, 2, True)
    assert "samples" not in entry and entry["settings"]["limit"] == 2
    assert len(prompts) == 4  # 2 instructions, each judged in both orders
    assert res["adapter"]["fingerprint"] == "sha256:" + sha256_tree(lora)
    assert "sk-secret" not in json.dumps(res) and "***@" in res["settings"]["judge"]


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(
    st.tuples(st.from_regex(r"[a-z][a-z_@0-9]{0,8}", fullmatch=True).filter(lambda m: not m.endswith("_stderr")),
              st.sampled_from(["none", "strict-match", "get-answer"])),
    st.tuples(st.floats(allow_nan=True, allow_infinity=False), st.one_of(st.floats(0, 1), st.just("N/A"))),
    max_size=6,
))  # fmt: skip
def test_split_metrics_keeps_every_metric_and_its_stderr(rows):
    row = {"alias": "t", "name": "t", "sample_len": 3}
    for (metric, filt), (value, err) in rows.items():
        row[f"{metric},{filt}"] = value
        row[f"{metric}_stderr,{filt}"] = err
    metrics, stderr = split_metrics(row)
    labels = {m if f == "none" else f"{m},{f}" for m, f in rows}
    assert set(metrics) == set(stderr) == labels
    for (metric, filt), (value, err) in rows.items():
        label = metric if filt == "none" else f"{metric},{filt}"
        assert metrics[label] == (None if value != value else value)  # NaN is written as null
        assert stderr[label] == (None if err == "N/A" else err)


def test_table_of_hand_made_results():
    results = {"limit": 0.5, "tasks": {
        "a": {"primary": "acc", "value": 0.25, "stderr": {"acc": 0.125}, "n": 8, "limited": True},
        "b": {"primary": "score", "value": None, "stderr": {}, "n": 0, "limited": False},
        "c": {"primary": "em", "value": 1.0, "stderr": {"em": None}, "n": 2, "limited": False},
    }}  # fmt: skip
    assert results_table(results, digits=2).splitlines() == [
        "| task | metric | value | n | flag |", "| --- | --- | --- | --- | --- |",
        "| a | acc | 0.25 ± 0.12 | 8 | limit 0.5 |", "| b | score | n/a | 0 |  |", "| c | em | 1.00 | 2 |  |",
    ]  # fmt: skip
    del results["tasks"]["a"]
    assert results_table(results).splitlines()[0] == "| task | metric | value | n |"


# -- errors before anything heavy runs -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backend": "tgi"}, "'backend' parameter"),
        ({"precision": "int8"}, "'precision' parameter"),
        ({"limit": 0}, "'limit' parameter"),
        ({"batch_size": 0}, "'batch_size' parameter"),
        ({"num_fewshot": -1}, "'num_fewshot' parameter"),
        ({"tasks": []}, "'tasks' parameter"),
        ({"tasks": "alpaca_eval"}, "--judge judge:MODEL@URL"),
        ({"tasks": "mt_bench", "judge": "gpt-4o"}, "judge:MODEL@URL"),
        ({"tasks": "humaneval"}, "--allow-code-execution"),
    ],
)
def test_bad_parameters(tiny_llama, datakit, kwargs, match):
    kwargs = {"tasks": "arc_easy", **kwargs}
    with pytest.raises(InvalidParameterError, match=match):
        evaluate_model(str(tiny_llama), data_dir=datakit, show_progress=False, **kwargs)


def test_missing_model_and_adapter_folders(tiny_llama, datakit, tmp_path):
    with pytest.raises(MissingArtifactError, match="does not exist"):
        evaluate_model(str(tmp_path / "nothing"), tasks="arc_easy", data_dir=datakit)
    with pytest.raises(MissingArtifactError, match="adapter_config.json"):
        evaluate_model(str(tiny_llama), adapter=str(tmp_path), tasks="arc_easy", data_dir=datakit)


def test_vllm_backend_without_vllm(tiny_llama, datakit):
    pytest.importorskip("lm_eval")
    try:
        import vllm  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("vllm is installed")
    with pytest.raises(MissingDependencyError, match="--backend hf"):
        evaluate_model(str(tiny_llama), tasks="arc_easy", data_dir=datakit, backend="vllm", limit=1, **{
            k: v for k, v in SETTINGS.items() if k in ("device", "precision")})  # fmt: skip


def test_a_group_entry_sums_its_members(datakit):
    """A group (mmlu: 57 subjects) is one entry: lm-eval's aggregate, n summed, each member's value kept."""
    from kmq.evaluate.results import task_entries

    res = {
        "results": {"mmlu": {"alias": "mmlu", "acc,none": 0.5, "acc_stderr,none": 0.1},
                    "mmlu_anatomy": {"acc,none": 1.0, "acc_stderr,none": 0.0},
                    "mmlu_astronomy": {"acc,none": 0.0, "acc_stderr,none": "N/A"}},
        "n-samples": {"mmlu_anatomy": {"original": 135, "effective": 2}, "mmlu_astronomy": {"original": 152,
                                                                                           "effective": 2}},
        "n-shot": {"mmlu_anatomy": 5, "mmlu_astronomy": 5}, "versions": {"mmlu": "1.0"},
        "higher_is_better": {"mmlu": {"acc": True}},
    }  # fmt: skip
    loaded = {"top": {"mmlu": ["mmlu_anatomy", "mmlu_astronomy"]}}
    entry = task_entries(res, loaded, limit=2, data_dir=datakit)["mmlu"]
    assert (entry["metrics"], entry["stderr"], entry["primary"], entry["value"]) == ({"acc": 0.5}, {"acc": 0.1},
                                                                                   "acc", 0.5)  # fmt: skip
    assert (entry["n"], entry["available"], entry["limited"], entry["num_fewshot"]) == (4, 287, True, 5)
    assert entry["subtasks"] == {"mmlu_anatomy": {"value": 1.0, "n": 2}, "mmlu_astronomy": {"value": 0.0, "n": 2}}
    assert entry["settings"]["source"] == "kmq" and entry["settings"]["group"] is None
