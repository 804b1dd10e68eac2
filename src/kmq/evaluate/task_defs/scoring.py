"""Scoring functions the local task YAMLs name: TruthfulQA mc2 and code execution in kmq's sandbox.

The code tasks (``humaneval``, ``mbpp``) are ``unsafe_code: true``: lm-eval refuses them unless the caller
passes ``confirm_run_unsafe_code=True`` (``kmq eval --allow-code-execution``). Each generated program runs in
:func:`kmq.evaluate.sandbox.run_programs` (a subprocess with time and memory limits and no network); a sample
passes when the program exits cleanly, i.e. every assert held. With ``repeats`` n > 1 samples per problem,
pass@k is the unbiased estimator of Chen et al. (2021) over the n samples.
"""

from __future__ import annotations

#: pass@k reported when a problem has at least k samples (``repeats``)
PASS_AT = (1, 10, 100)
#: per-program limits
TIMEOUT_S = 10.0
MEMORY_MB = 1024


def process_results_mc2(doc: dict, results: list[tuple[float, bool]]) -> dict[str, float]:
    """Normalised probability mass on the true answers (lm-eval's truthfulqa_mc2 ``acc``)."""
    import numpy as np

    lls = np.array([ll for ll, _ in results], dtype=np.float64)
    probs = np.exp(lls - lls.max())  # the shift cancels in the ratio and avoids underflow on long answers
    labels = np.array(doc["mc2_targets"]["labels"])
    return {"acc": float(probs[labels == 1].sum() / probs.sum())}


def keep_all(resps: list[list[str]], docs: list[dict]) -> list[list[str]]:
    """Filter that keeps every sample of every request (lm-eval's default keeps only the first)."""
    return [list(r) for r in resps]


def humaneval_program(doc: dict, completion: str) -> str:
    """The prompt, the model's completion, the problem's tests and the call of ``check``."""
    return f"{doc['prompt']}{completion}\n\n{doc['test']}\n\ncheck({doc['entry_point']})\n"


def mbpp_program(doc: dict, completion: str) -> str:
    """The model's code, the problem's setup code and its asserts."""
    return "\n".join([completion, doc.get("test_setup_code") or "", *doc["test_list"], ""])


def process_results_humaneval(doc: dict, results: list[list[str]]) -> dict[str, float]:
    """pass@k of one HumanEval problem over its samples."""
    return _pass_rates([humaneval_program(doc, c) for c in _samples(results)])


def process_results_mbpp(doc: dict, results: list[list[str]]) -> dict[str, float]:
    """pass@k of one MBPP problem over its samples."""
    return _pass_rates([mbpp_program(doc, c) for c in _samples(results)])


def _samples(results: list) -> list[str]:
    first = results[0] if results else []
    return [first] if isinstance(first, str) else list(first)


def _pass_rates(programs: list[str]) -> dict[str, float]:
    try:
        from kmq.evaluate.sandbox import pass_at_k, run_programs
    except ImportError as err:  # the sandbox module is written alongside these tasks
        from kmq.errors import MissingDependencyError

        raise MissingDependencyError(
            "The code tasks need kmq.evaluate.sandbox, which this kmq build does not have: update kmq."
        ) from err
    passed = sum(bool(o.passed) for o in run_programs(programs, timeout_s=TIMEOUT_S, memory_mb=MEMORY_MB))
    n = len(programs)
    return {f"pass@{k}": float(pass_at_k(n, passed, k)) for k in PASS_AT if k <= n}
