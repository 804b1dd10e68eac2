"""Selection diagnostics: pure functions over arrays, and the one entry point the pipeline stores in manifest.json.

:func:`diagnostics` gives the ``"diagnostics"`` object of the manifest: diversity (Vendi score, coverage,
facility location), cluster balance (entropy, KL to the pool, empty clusters), quality quantiles, field mix
and duplicates, for the picks and for a seeded random subset of the same size. The pieces are public:

- :mod:`~kmq.metrics.diversity`: :func:`vendi_score`, :func:`coverage`, :func:`facility_location`;
- :mod:`~kmq.metrics.balance`: :func:`cluster_balance`;
- :mod:`~kmq.metrics.mix`: :func:`quantiles`, :func:`mix_counts`;
- :mod:`~kmq.metrics.duplicates`: :func:`prompt_key`, :func:`exact_duplicates`, :func:`near_duplicates`.

faiss is imported on first use (``import kmq.metrics`` stays light).
"""

from kmq.metrics.balance import cluster_balance
from kmq.metrics.diagnostics import COVERAGE_PAIRS, MIN_COVERAGE_ROWS, STREAM_DIAGNOSTICS, coverage_rows, diagnostics
from kmq.metrics.diversity import coverage, facility_location, vendi_score
from kmq.metrics.duplicates import (
    exact_duplicates,
    near_duplicate_mask,
    near_duplicates,
    normalize_prompt,
    prompt_key,
    prompt_keys,
)
from kmq.metrics.mix import MISSING, mix_counts, quantiles

__all__ = [
    "COVERAGE_PAIRS",
    "MIN_COVERAGE_ROWS",
    "MISSING",
    "STREAM_DIAGNOSTICS",
    "cluster_balance",
    "coverage",
    "coverage_rows",
    "diagnostics",
    "exact_duplicates",
    "facility_location",
    "mix_counts",
    "near_duplicate_mask",
    "near_duplicates",
    "normalize_prompt",
    "prompt_key",
    "prompt_keys",
    "quantiles",
    "vendi_score",
]
