"""Shaping the pool around selection: deduplication and decontamination.

Pure functions over texts and arrays; the pipeline (:mod:`kmq.stages`) wires them in.
"""

from kmq.config import parse_dedup
from kmq.shape.decontam import Contamination, decontaminate
from kmq.shape.dedup import exact_duplicates, near_duplicates
from kmq.shape.evalsets import EvalSet, load_eval_set

__all__ = [
    "Contamination", "EvalSet", "decontaminate", "exact_duplicates", "load_eval_set", "near_duplicates", "parse_dedup",
]  # fmt: skip
