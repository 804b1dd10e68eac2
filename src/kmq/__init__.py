"""kmq: diversity-first data selection for instruction tuning.

Importing kmq is light (no torch, no faiss): the public names load on first use.

>>> import kmq
>>> sel = kmq.select("pool.jsonl", budget=1000, embedder="hashing")   # doctest: +SKIP
>>> sel.write("subset.jsonl")                                         # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Selection": "kmq.selection",
    "RunConfig": "kmq.config",
    "load_config": "kmq.config",
    "read_pool": "kmq.data",
    "write_subset": "kmq.data",
    "Pool": "kmq.data",
    "get_embedder": "kmq.embed",
    "get_scorer": "kmq.scorers",
    "KMeans": "kmq.cluster",
    "choose_k": "kmq.pipeline",
    "KChoice": "kmq.pipeline",
    "Scores": "kmq.scoring",
    "score": "kmq.scoring",
    "METHODS": "kmq.methods.registry",
    "select": "kmq.pipeline",
    "iterate": "kmq.loop",
    "evaluate_model": "kmq.evaluate.harness",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kmq' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
