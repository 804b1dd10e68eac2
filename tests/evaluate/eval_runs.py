"""One ``evaluate_model`` run on the tiny Llama shared by the harness and CLI tests (computed once per process).

The settings are small enough for a CPU test (4 examples per task, 1 shot, 16 generated tokens) and cover the
three kinds of lm-eval requests: multiple choice (``arc_easy``, log-likelihood), generation (``gsm8k``) and a
rolling log-likelihood task given as an inline lm-eval config (:data:`PERPLEXITY`, continuous metrics that move
with any change of the weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: word/byte perplexity of the first GSM8K test questions, through kmq's own GSM8K loader
PERPLEXITY = {
    "task": "kmq_test_perplexity",
    "custom_dataset": "kmq.evaluate.task_defs.loaders.load_gsm8k",
    "output_type": "loglikelihood_rolling",
    "test_split": "test",
    "doc_to_text": "",
    "doc_to_target": "{{question}}",
    "metric_list": [{"metric": "word_perplexity"}, {"metric": "byte_perplexity"}, {"metric": "bits_per_byte"}],
}
#: the settings of the shared run, as keyword arguments of evaluate_model and as kmq eval flags
SETTINGS = {"limit": 4, "device": "cpu", "precision": "fp32", "batch_size": 4, "num_fewshot": 1,
            "max_new_tokens": 16, "seed": 0}  # fmt: skip
TASKS = "arc_easy,gsm8k"
FLAGS = ["--limit", "4", "--device", "cpu", "--precision", "fp32", "--batch-size", "4", "--num-fewshot", "1",
         "--max-new-tokens", "16", "--seed", "0"]  # fmt: skip
_RUNS: dict[tuple, tuple[dict[str, Any], Path]] = {}


def perplexity_task() -> dict[str, Any]:
    """:data:`PERPLEXITY` with its loader as a function (lm-eval calls ``custom_dataset``)."""
    from kmq.evaluate.task_defs.loaders import load_gsm8k

    return {**PERPLEXITY, "custom_dataset": load_gsm8k}


def shared_run(model: Path, datakit: Path, out_dir: Path) -> tuple[dict[str, Any], Path]:
    """``(results, results.json)`` of kmq eval's run of :data:`TASKS` with :data:`SETTINGS` (once per process)."""
    from kmq.evaluate.harness import evaluate_model

    key = (str(model), str(datakit))
    if key not in _RUNS:
        out = out_dir / "results.json"
        res = evaluate_model(str(model), tasks=TASKS, data_dir=datakit, out=out, show_progress=False, **SETTINGS)
        _RUNS[key] = (res, out)
    return _RUNS[key]
