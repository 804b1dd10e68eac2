"""Evaluation: lm-eval tasks, kmq's local task definitions for the datakit eval sets, judge-based tasks.

The public names load on first use (importing ``kmq.evaluate`` imports no lm-eval, torch or transformers).

>>> from kmq.evaluate import evaluate_model, results_table
>>> res = evaluate_model("./my-model", tasks="arc_easy,gsm8k", limit=100)   # doctest: +SKIP
>>> print(results_table(res))                                              # doctest: +SKIP
"""

from __future__ import annotations

from kmq._lazy import lazy_getattr

_LAZY = {
    "evaluate_model": "kmq.evaluate.harness",
    "results_table": "kmq.evaluate.results",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
