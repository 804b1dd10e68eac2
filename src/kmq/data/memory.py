"""Pools given in memory: a list (or tuple) of dicts, a pandas DataFrame, a ``datasets.Dataset`` or ``DatasetDict``.

:func:`kmq.data.read_pool` routes these here. Neither pandas nor datasets is imported by kmq for this: an
object can only be a DataFrame or a Dataset when the caller has imported that library already.

- A list or tuple: the records are the caller's own dicts (not copied: do not mutate them while the pool
  is in use).
- A DataFrame: one record per row, ``{column: value}``; missing values (``NaN``, ``None``, ``NaT``, ``pd.NA``)
  become ``None``, so a column absent from some rows reads as an absent optional field.
- A Dataset: the rows as ``dataset[i]`` gives them; a DatasetDict needs ``split`` (default ``"train"``).

The pool's ``container`` is ``"memory"``, its ``source`` names what it was (``"<list of 300 records>"``,
``"<DataFrame 300x4>"``, ``"<datasets.Dataset 300 rows>"``) and its fingerprint digests the records'
content, so two equal inputs share cache entries. A subset of such a pool has no file of its own to
follow: writing it needs an ``out`` with a known extension (or a folder for ``save_to_disk``).
"""

from __future__ import annotations

import hashlib
import sys
from typing import Any

from kmq.data.pool import ArrowStore, ListStore, Pool, PoolBuilder, canonical_bytes
from kmq.errors import DataFormatError, EmptyPoolError

__all__ = ["add_table", "is_in_memory", "read_memory"]


def _dataset_types() -> tuple[type, ...]:
    datasets = sys.modules.get("datasets")
    return (datasets.Dataset, datasets.DatasetDict) if datasets is not None else ()


def _is_dataframe(source: Any) -> bool:
    pandas = sys.modules.get("pandas")
    return pandas is not None and isinstance(source, pandas.DataFrame)


def is_in_memory(source: Any) -> bool:
    """Whether ``source`` is an in-memory pool :func:`read_memory` reads (list/tuple, DataFrame, Dataset)."""
    return isinstance(source, (list, tuple)) or _is_dataframe(source) or isinstance(source, _dataset_types())


def read_memory(source: Any, *, format: str = "auto", split: str | None = None, fields: Any = None) -> Pool:
    """Build a :class:`Pool` from an in-memory ``source`` (module docstring); ``split`` is for a DatasetDict,
    ``fields`` maps record fields to turns (:class:`~kmq.data.fields.FieldMap`)."""
    if isinstance(source, (list, tuple)):
        return _from_records(source, f"<{type(source).__name__} of {len(source)} records>", format, fields)
    if _is_dataframe(source):
        return _from_dataframe(source, format, fields)
    datasets = sys.modules["datasets"]
    name = f"<datasets.Dataset {source.num_rows} rows>" if isinstance(source, datasets.Dataset) else None
    if name is None:  # a DatasetDict
        split = split or "train"
        if split not in source:
            raise DataFormatError(
                f"The DatasetDict has no split {split!r}; splits: {list(source)}. Pass split=... "
                "(read_pool) or the split itself, such as dataset_dict[name]."
            )
        source = source[split]
        name = f"<datasets.DatasetDict[{split!r}] {source.num_rows} rows>"
    return _from_dataset(source, PoolBuilder(name, format, fields=fields))


def _from_records(records: list | tuple, name: str, format: str, fields: Any = None) -> Pool:
    builder, digest = PoolBuilder(name, format, fields=fields), hashlib.sha256()
    for i, record in enumerate(records):
        builder.add(record, i)
        digest.update(canonical_bytes(record))
    return builder.build(container="memory", content_hash=digest, store=ListStore(list(records)))


def _from_dataframe(frame: Any, format: str, fields: Any = None) -> Pool:
    name = f"<DataFrame {frame.shape[0]}x{frame.shape[1]}>"
    if not frame.columns.is_unique:
        repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
        raise DataFormatError(f"{name}: the columns {repeated} occur more than once; make the column names unique.")
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    return _from_records(records, name, format, fields)


def _from_dataset(dataset: Any, builder: PoolBuilder) -> Pool:
    if dataset.num_rows == 0:
        raise EmptyPoolError(f"{builder.source} has no records; a pool needs at least one.")
    table = dataset.with_format("arrow")[:]
    digest = hashlib.sha256()
    add_table(table, builder, digest)
    return builder.build(container="memory", content_hash=digest, store=ArrowStore(table, dataset))


def add_table(table: Any, builder: PoolBuilder, digest: Any = None) -> None:
    """Feed the rows of a pyarrow Table to ``builder`` (0-based record numbers), and to ``digest`` when given."""
    i = 0
    for batch in table.to_batches(max_chunksize=8192):
        for record in batch.to_pylist():
            builder.add(record, i)
            if digest is not None:
                digest.update(canonical_bytes(record))
            i += 1
