"""Scores that are already in the data: ``--scorer column:FIELD``."""

from __future__ import annotations

import math

import numpy as np

from kmq.errors import DataFormatError
from kmq.scorers.base import Scorer


class ColumnScorer(Scorer):
    """Read a numeric top-level field of every record as its quality.

    Parameters
    ----------
    field : str
        The field name; every record must have a finite number (or a numeric string, as CSV gives) there.
        Numbers come from what the pool kept when it read the records (:meth:`~kmq.data.Pool.numbers`); the
        raw column is read only for strings (CSV) or to name the record at fault.
    """

    def __init__(self, field: str) -> None:
        super().__init__()
        self.field = field
        self.name = f"column:{field}"

    def score(self, pool) -> np.ndarray:
        if self.field not in pool.columns():
            raise DataFormatError(
                f"{pool.source}: no field {self.field!r} for --scorer column:{self.field}; fields found: "
                f"{pool.columns()}."
            )
        kept = pool.numbers(self.field) if hasattr(pool, "numbers") else None
        if kept is not None and np.isfinite(kept).all():  # the values the reader kept: no second parse
            out = np.array(kept, dtype=np.float64)
            self.stats_ = {"scorer": self.name, "min": float(out.min()), "max": float(out.max())}
            return out
        out = np.empty(len(pool), dtype=np.float64)
        for i, value in enumerate(pool.column(self.field)):
            try:
                if isinstance(value, bool) or value is None:
                    raise ValueError
                out[i] = float(value)
                if math.isnan(out[i]) or math.isinf(out[i]):
                    raise ValueError
            except (TypeError, ValueError):
                raise DataFormatError(
                    f"{pool.source}: record {pool.ids[i]!r} (row {i}) has {self.field}={value!r}; expected a finite "
                    "number in every record."
                ) from None
        self.stats_ = {"scorer": self.name, "min": float(out.min()), "max": float(out.max())}
        return out
