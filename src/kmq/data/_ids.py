"""A pool's record ids held in Arrow (:class:`Ids`), and the builder that collects them while a pool is read.

10M ids as a Python list of str cost about 650 MiB; as one Arrow string array they cost their bytes plus 8 bytes
of offset each (about 170 MiB for ``"r1234567"``-like ids), and positions (``"0"``, ``"1"``, ...) cost nothing
until asked for. :class:`Ids` is a read-only sequence of str: ``len``, ``[i]``, slices (lists of str),
iteration a batch at a time, and ``==`` against any sequence of str.
"""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kmq.data.formats import LONE_SURROGATE

__all__ = ["Ids", "IdsBuilder"]

_BATCH = 65536


class Ids(Sequence):
    """Record ids: an Arrow ``large_string`` array, or the 0-based positions as str when ``array`` is None.

    Examples
    --------
    >>> ids = Ids(None, 3)
    >>> ids[1], ids[-1], ids[:2], ids == ["0", "1", "2"]
    ('1', '2', ['0', '1'], True)
    >>> ids + ["x"], ["x"] + ids
    (['0', '1', '2', 'x'], ['x', '0', '1', '2'])
    """

    def __init__(self, array: pa.Array | None, n: int) -> None:
        if array is not None and len(array) != n:
            raise ValueError(f"{len(array)} ids for {n} records")
        self.array, self._n = array, n

    @classmethod
    def positions(cls, n: int) -> Ids:
        return cls(None, n)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            lo, hi, step = index.indices(self._n)
            if step != 1:
                return [self[i] for i in range(lo, hi, step)]
            hi = max(lo, hi)
            if self.array is None:
                return [str(i) for i in range(lo, hi)]
            return self.array.slice(lo, hi - lo).to_pylist()
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(f"Ids indices must be integers or slices, not {type(index).__name__}") from None
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"id index {index} out of range for {self._n} records")
        return str(i) if self.array is None else self.array[i].as_py()

    def take(self, rows: Any) -> list[str]:
        """The ids at ``rows`` (integers in range), in that order."""
        if self.array is None:
            return [str(i) for i in np.asarray(rows, dtype=np.int64).tolist()]
        return self.array.take(pa.array(np.asarray(rows, dtype=np.int64))).to_pylist()

    def __iter__(self) -> Iterator[str]:
        for lo in range(0, self._n, _BATCH):
            yield from self[lo : lo + _BATCH]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ids) and self.array is None and other.array is None:
            return self._n == other._n
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(other) == self._n and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __add__(self, other: object) -> list[str]:
        """``pool.ids + more_ids`` as a list (what it gave when ids were a list)."""
        if isinstance(other, (list, tuple, Ids)):
            return [*self, *other]
        return NotImplemented

    def __radd__(self, other: object) -> list[str]:
        if isinstance(other, (list, tuple)):
            return [*other, *self]
        return NotImplemented

    def __repr__(self) -> str:
        if self._n <= 20:
            return repr(list(self))
        return f"Ids(n={self._n}, {'positions' if self.array is None else 'field'}: {self[:3]}...)"


class IdsBuilder:
    """Collect the ``id`` values of a pool's records, one str at a time or an Arrow column at a time.

    :attr:`ok` turns False for good when some record has no id (:meth:`drop`); :meth:`build` gives the ids, or
    None when they cannot be used.
    """

    def __init__(self) -> None:
        self.ok = True
        self._chunks: list[pa.Array] = []
        self._pending: list[str] = []
        self.bad: str | None = None  # the first id holding a lone surrogate
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def drop(self) -> None:
        """Some record has no id: the positions will be used."""
        self.ok, self._chunks, self._pending = False, [], []

    def append(self, rid: str) -> None:
        if self.ok:
            self._pending.append(rid)
            self._n += 1
            if len(self._pending) >= _BATCH:
                self._flush()

    def extend(self, col: pa.Array) -> None:
        """Add a column of ids (string or large_string, no nulls)."""
        if self.ok:
            self._flush()
            self._chunks.append(col.cast(pa.large_string()))
            self._n += len(col)

    def _flush(self) -> None:
        if not self._pending:
            return
        if self.bad is None:
            bad = LONE_SURROGATE.search("".join(self._pending))  # ids go to Parquet, CSV and JSON tables
            if bad is not None:
                self.bad = next(rid for rid in self._pending if LONE_SURROGATE.search(rid))
        if self.bad is None:
            self._chunks.append(pa.array(self._pending, pa.large_string()))
        self._pending = []

    def build(self, n: int) -> Ids | None:
        """The ids of the ``n`` records when every record had one, all unique and valid text; else None (then
        :attr:`ok` is False when some record had none, :attr:`bad` is the first id holding a lone surrogate)."""
        if not self.ok:
            return None
        self._flush()
        if self.bad is not None:
            return None
        arr = pa.concat_arrays(self._chunks) if self._chunks else pa.array([], pa.large_string())
        self._chunks = []
        if len(arr) != n or pc.count_distinct(arr).as_py() != n:
            return None
        return Ids(arr, n)
