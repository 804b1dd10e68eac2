"""Shaping the pool around selection: deduplication (and, later, decontamination, quotas, token budgets).

Pure functions over texts and arrays; the pipeline (:mod:`kmq.stages`) wires them in.
"""

from kmq.shape.dedup import DEDUP_HELP, exact_duplicates, near_duplicates, parse_dedup

__all__ = ["DEDUP_HELP", "exact_duplicates", "near_duplicates", "parse_dedup"]
