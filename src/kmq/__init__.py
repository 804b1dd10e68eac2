"""kmq: diversity-first data selection for instruction tuning.

Importing kmq is light (no torch, no faiss): the public names load on first use.

>>> import kmq
>>> sel = kmq.select("pool.jsonl", budget=1000, embedder="hashing")   # doctest: +SKIP
>>> sel.write("subset.jsonl")                                         # doctest: +SKIP
"""

from __future__ import annotations

from kmq._lazy import lazy_getattr

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

__getattr__ = lazy_getattr(__name__, _LAZY)


def __dir__() -> list[str]:
    return sorted(__all__)
