"""Shaping the pool around selection: deduplication (and, later, decontamination, quotas, token budgets).

Pure functions over texts and arrays; the pipeline (:mod:`kmq.stages`) wires them in.
"""

from kmq.config import parse_dedup
from kmq.shape.dedup import exact_duplicates, near_duplicates

__all__ = ["exact_duplicates", "near_duplicates", "parse_dedup"]
