"""Evaluation: lm-eval tasks, kmq's local task definitions for the datakit eval sets, judge-based tasks.

The public names load on first use (importing ``kmq.evaluate`` imports no lm-eval, torch or transformers).

>>> from kmq.evaluate import evaluate_model, results_table
>>> res = evaluate_model("./my-model", tasks="arc_easy,gsm8k", limit=100)   # doctest: +SKIP
>>> print(results_table(res))                                              # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "evaluate_model": "kmq.evaluate.harness",
    "results_table": "kmq.evaluate.results",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kmq.evaluate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
