"""The :class:`Pool`: stable ids, normalized messages, text views and access to the raw records.

Text views (no role tags are added):

- ``conversation``: the contents of all turns joined with ``"\\n\\n"``;
- ``prompt``: the contents of the system and user turns joined with ``"\\n\\n"``;
- ``response``: the contents of the assistant turns joined with ``"\\n\\n"``, ``""`` when there is none
  (instruction-only data).

The raw records stay where they are cheapest: for JSON Lines only the byte offset and length of each
line are kept and the selected lines are re-read on demand; a Parquet or Hugging Face pool keeps its
Arrow table (and the ``datasets.Dataset``, whose rows a ``save_to_disk`` output selects); JSON arrays,
CSV files and in-memory lists keep the parsed records in memory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import zipfile
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import numpy as np

from kmq.data._ids import Ids, IdsBuilder
from kmq.data.fields import FieldMap, MissingFieldError
from kmq.data.formats import FORMATS, Turn, detect_format, to_messages, undetectable
from kmq.data.messages import Messages, MessagesBuilder
from kmq.errors import DataFormatError, EmptyPoolError, InvalidParameterError, invalid_parameter

logger = logging.getLogger(__name__)

VIEWS = ("conversation", "prompt", "response")
#: how many top-level fields the reader watches for all-number values (:meth:`Pool.numbers`)
MAX_NUMBER_COLUMNS = 8
_NAN = array("d", [float("nan")])
_BIG = 2**1023  # ints float() can hold


class Pool:
    """An instruction pool: one normalized conversation per raw record, aligned by row index.

    Build one with :func:`kmq.data.read_pool` (files, folders, hub names, records, DataFrames and
    ``datasets.Dataset`` objects in memory) or :meth:`Pool.from_records`.

    Attributes
    ----------
    ids : sequence of str, length n
        The records' own ``id`` field (as str) when every record has one, they are unique and valid text
        (no lone surrogate), else the 0-based positions as str: an :class:`~kmq.data._ids.Ids` (held in
        Arrow; slices are lists of str) for a pool that was read, or the list given to the constructor.
    id_source : {"field", "position"}
        Where ``ids`` came from.
    messages : Messages, length n
        Normalized turns ``{"role": "system" | "user" | "assistant", "content": str}`` per record: a read-only
        sequence whose item i is record i's list of turn dicts, held in Arrow (:mod:`kmq.data.messages`).
    format : {"messages", "sharegpt", "alpaca", "prompt_completion", "fields"}
        The record format that was detected or forced; ``"fields"`` when the turns come from mapped fields.
    field_map : FieldMap or None
        The mapped fields (:mod:`kmq.data.fields`), None when a format was detected or forced.
    container : str
        ``"jsonl"``, ``"jsonl.gz"``, ``"json"``, ``"json.gz"``, ``"parquet"``, ``"csv"``, ``"hf_disk"``,
        ``"hf_hub"``, ``"tsv"``, the inner file's container plus ``".zip"`` for a zip (``"jsonl.zip"``), or
        ``"memory"`` (records, a DataFrame or a ``datasets.Dataset`` given in memory, and
        :meth:`from_records`).
    source : str
        The path or hub name the pool was read from; for an in-memory pool, what it was
        (``"<list of 300 records>"``, ``"<DataFrame 300x4>"``, ``"<datasets.Dataset 300 rows>"``).
    fingerprint : str
        Hex sha256 of the input content (file bytes, after gzip decompression; the dataset fingerprint of a
        Hugging Face folder or hub dataset; the records themselves, as canonical JSON, for an in-memory pool)
        and the format. The same input gives the same fingerprint, so equal in-memory pools share caches.

    Examples
    --------
    >>> pool = Pool.from_records([{"instruction": "Add 2 and 3.", "output": "5"}, {"instruction": "Say hi."}])
    >>> pool.format, len(pool), pool.ids
    ('alpaca', 2, ['0', '1'])
    >>> pool.texts("response")
    ['5', '']
    """

    def __init__(
        self,
        *,
        ids: list[str],
        messages: Sequence[list[Turn]],
        format: str,
        container: str,
        source: str,
        fingerprint: str,
        store: RecordStore,
        id_source: str = "position",
        layout: dict[str, Any] | None = None,
        field_map: FieldMap | None = None,
        numbers: dict[str, np.ndarray] | None = None,
    ) -> None:
        self.ids = ids
        self.messages = Messages.from_turns(messages)
        self.format = format
        self.container = container
        self.source = source
        self.fingerprint = fingerprint
        self.id_source = id_source
        self.field_map = field_map
        self._store = store
        self._layout = layout or {}
        self._numbers = numbers or {}

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        *,
        format: str = "auto",
        source: str = "<records>",
        fields: FieldMap | Mapping[str, str | None] | None = None,
    ) -> Pool:
        """Build an in-memory pool from raw records (JSON values), detecting their format like :func:`read_pool`.

        Parameters
        ----------
        records : sequence of dict
            Raw records; they are kept as given (not copied).
        format : {"auto", "messages", "sharegpt", "alpaca", "prompt_completion"}, default "auto"
            Force a format instead of detecting it from the first record.
        source : str, default "<records>"
            Name used in error messages.
        fields : FieldMap or mapping, optional
            Which fields hold the prompt, response, system prompt or turns, instead of a format.
        """
        builder = PoolBuilder(source, format, fields=fields)
        digest = hashlib.sha256()
        for i, record in enumerate(records):
            builder.add(record, i)
            digest.update(canonical_bytes(record))
        return builder.build(container="memory", content_hash=digest, store=ListStore(list(records)))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"Pool(n={len(self)}, format={self.format!r}, container={self.container!r}, source={self.source!r})"

    def texts(self, view: str) -> list[str]:
        """Return one text per record for ``view`` in :data:`VIEWS` (see the module docstring for the rule).

        Decoded on the first call and kept: later calls return the same list (do not mutate it).
        :meth:`release_texts` drops it; :meth:`iter_texts` and :meth:`text_array` keep no Python strings.
        """
        return self.messages.texts(_check_view(view, "Pool.texts"))

    def release_texts(self, *views: str) -> None:
        """Drop the strings :meth:`texts` keeps for ``views`` (every view when none is given)."""
        self.messages.release_texts(*(_check_view(view, "Pool.release_texts") for view in views))

    def iter_texts(self, view: str, batch_size: int = 8192) -> Iterator[list[str]]:
        """Yield :meth:`texts` of ``view`` ``batch_size`` records at a time (no list of all n texts)."""
        return self.messages.iter_texts(_check_view(view, "Pool.iter_texts"), batch_size)

    def text_array(self, view: str, lo: int = 0, hi: int | None = None) -> Any:
        """The texts of ``view`` for records ``lo:hi`` (all by default) as one Arrow array
        (``pyarrow.LargeStringArray``; a ``LargeBinaryArray`` of ``surrogatepass`` bytes when some text holds a
        lone surrogate), computed on each call and not kept."""
        return self.messages.text_array(_check_view(view, "Pool.text_array"), lo, hi)

    def text_batches(self, view: str, batch_size: int = 8192) -> Iterator[Any]:
        """Yield :meth:`text_array` of ``view`` ``batch_size`` records at a time."""
        return self.messages.text_batches(_check_view(view, "Pool.text_batches"), batch_size)

    def records(self, indices: Iterable[int]) -> list[dict[str, Any]]:
        """Return the raw input records at ``indices``, in that order, as JSON values exactly as read.

        For in-memory containers the returned dicts are the pool's own objects: do not mutate them.
        """
        return self._store.get(check_indices(indices, len(self), owner="Pool.records"))

    def columns(self) -> list[str]:
        """Return the top-level field names seen in the raw records, in first-seen order."""
        return self._store.columns()

    def column(self, name: str) -> list[Any]:
        """Return the raw value of top-level field ``name`` for every record (None where a record lacks it)."""
        if name not in self.columns():
            raise InvalidParameterError(f"Field {name!r} is not in {self.source}; fields found: {self.columns()}.")
        return self._store.column(name)

    def numbers(self, name: str) -> np.ndarray | None:
        """Field ``name`` as float64 values of shape (n,), kept from the one read of the records, or None.

        NaN where a record lacks the field or holds null (or NaN). None when some record holds a value that
        is not a JSON number (a string, a bool, a list) or the field was not kept (only the first
        :data:`MAX_NUMBER_COLUMNS` fields are watched): use :meth:`column` then. Ints beyond 2**53 are rounded.
        """
        values = self._numbers.get(name)
        return None if values is None else values


def _check_view(view: str, owner: str) -> str:
    if view not in VIEWS:
        raise invalid_parameter("view", owner, f"one of {list(VIEWS)}", view)
    return view


def canonical_bytes(record: Any) -> bytes:
    """One record as canonical bytes for content digests: sorted-key JSON, non-JSON values tagged by type."""
    try:
        text = json.dumps(record, ensure_ascii=False, sort_keys=True, default=_tagged)
    except (TypeError, ValueError, RecursionError):  # keys of mixed types, or nesting too deep
        text = repr(record)
    return text.encode("utf-8", "surrogatepass") + b"\n"


def _tagged(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return {"__type__": type(value).__name__, "value": value.tolist()}
    if isinstance(value, (bytes, bytearray)):
        return {"__type__": "bytes", "value": value.hex()}
    return {"__type__": f"{type(value).__module__}.{type(value).__qualname__}", "value": repr(value)}


def check_indices(indices: Iterable[int], n: int, *, owner: str) -> list[int]:
    """Validate row indices (1-D ints in [0, n)) and return them as a list of int; duplicates are kept."""
    arr = np.asarray(indices if not isinstance(indices, (set, frozenset)) else sorted(indices))
    if arr.size == 0:
        return []
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise invalid_parameter("indices", owner, "a 1-D sequence of ints", f"array of shape {arr.shape}, {arr.dtype}")
    bad = arr[(arr < 0) | (arr >= n)]
    if bad.size:
        raise invalid_parameter("indices", owner, f"ints in [0, {n}) (the pool has {n} records)", int(bad[0]))
    return arr.tolist()


class RecordStore(Protocol):
    """Where a pool's raw records live; stores are internal to :mod:`kmq.data`."""

    def get(self, indices: list[int]) -> list[dict[str, Any]]: ...

    def columns(self) -> list[str]: ...

    def column(self, name: str) -> list[Any]: ...


class ListStore:
    """Raw records held in memory (JSON arrays, CSV files, :meth:`Pool.from_records`)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def get(self, indices: list[int]) -> list[dict[str, Any]]:
        return [self.records[i] for i in indices]

    def columns(self) -> list[str]:
        return list(dict.fromkeys(key for record in self.records for key in record))

    def column(self, name: str) -> list[Any]:
        return [record.get(name) for record in self.records]


class ArrowStore:
    """Raw records as a pyarrow Table (Parquet files, Hugging Face datasets).

    ``dataset`` is the ``datasets.Dataset`` the table came from, if any: a ``save_to_disk`` output selects
    its rows, so the features and info are the input's own.
    """

    def __init__(self, table: Any, dataset: Any = None) -> None:
        self.table = table
        self.dataset = dataset

    def get(self, indices: list[int]) -> list[dict[str, Any]]:
        return self.table.take(indices).to_pylist() if indices else []

    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def column(self, name: str) -> list[Any]:
        return self.table.column(name).to_pylist()


class JsonlStore:
    """Raw records left in a JSON Lines file: only each record's byte offset and length are kept.

    Offsets are in the decompressed stream for ``.gz`` files and for a ``member`` of a zip file. Access checks
    that the file has not changed (size and modification time) since it was read.
    """

    def __init__(
        self,
        path: Path,
        *,
        compressed: bool,
        offsets: array,
        lengths: array,
        fields: list[str],
        member: str | None = None,
    ) -> None:
        self.path = path
        self.compressed = compressed
        self.member = member
        self.offsets = offsets
        self.lengths = lengths
        self.fields = fields
        self.stat = _stat_key(path)
        self._cache: dict[str, list[Any]] = {}

    def lines(self, indices: list[int]) -> list[bytes]:
        """Return the original bytes of the selected lines (without the final ``\\n``), in ``indices`` order."""
        if _stat_key(self.path) != self.stat:
            raise DataFormatError(f"{self.path} changed since it was read; read the pool again.")
        out: list[bytes] = [b""] * len(indices)
        order = np.argsort(np.asarray(indices, dtype=np.int64), kind="stable")  # forward seeks only
        with self._open() as fh:
            for j in order.tolist():
                i = indices[j]
                fh.seek(self.offsets[i])
                out[j] = fh.read(self.lengths[i])
        return out

    @contextmanager
    def _open(self) -> Iterator[BinaryIO]:
        if self.member is None:
            with gzip.open(self.path, "rb") if self.compressed else open(self.path, "rb") as fh:
                yield fh
            return
        with zipfile.ZipFile(self.path) as archive, archive.open(self.member) as fh:
            yield fh

    def get(self, indices: list[int]) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines(indices)]

    def columns(self) -> list[str]:
        return list(self.fields)

    def column(self, name: str) -> list[Any]:
        if name not in self._cache:
            n, chunk, values = len(self.offsets), 65536, []
            for start in range(0, n, chunk):
                values.extend(record.get(name) for record in self.get(list(range(start, min(n, start + chunk)))))
            self._cache[name] = values
        return self._cache[name]


def _stat_key(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


class PoolBuilder:
    """Accumulate records one by one: detect the format once, convert and validate each, collect ids and fields."""

    def __init__(self, source: str, format: str = "auto", *, unit: str = "record", fields: Any = None) -> None:
        if format != "auto" and format not in FORMATS:
            raise invalid_parameter("format", "read_pool", f"one of {['auto', *FORMATS]}", format)
        self.field_map = FieldMap.coerce(fields)
        if self.field_map is not None and format != "auto":
            raise InvalidParameterError(
                f"format={format!r} (--format) and mapped fields ({self.field_map}) both say how to read the "
                "records; pass one of them."
            )
        self.source = source
        self.unit = unit
        self.format = "fields" if self.field_map is not None else None if format == "auto" else format
        self.messages = MessagesBuilder()
        self.ids = IdsBuilder()
        self.fields: dict[str, None] = {}
        self._missing: tuple[str, MissingFieldError] | None = None  # the first record without its mapped field
        self._numbers: dict[str, array | None] = {}  # top-level fields whose values are all numbers (or absent)

    def add(self, record: Any, at: int) -> None:
        """Convert one raw record; ``at`` is its 1-based line (unit "line") or 0-based index (unit "record")."""
        if not isinstance(record, dict):
            raise DataFormatError(
                f"{self.source} {self.unit} {at}: the record is {type(record).__name__}; expected a JSON object."
            )
        if self.format is None:
            self.format = detect_format(record)
            if self.format is None:
                raise undetectable(self.source, record)
        try:
            if self.field_map is not None:
                self.messages.append(self.field_map.to_messages(record))
            else:
                self.messages.append(to_messages(record, self.format))
        except MissingFieldError as err:
            if err.name in self.fields:  # other records have it: this one is at fault
                raise self._record_error(record, at, err) from err
            if self._missing is None:  # perhaps no record has it: decided in build
                self._missing = (self._record_error(record, at, err), err)
            self.messages.append([])
        except DataFormatError as err:
            raise self._record_error(record, at, err) from err
        self._note_fields(record)

    def _record_error(self, record: dict[str, Any], at: int, err: DataFormatError) -> DataFormatError:
        rid = record.get("id")
        where = f"{self.source} {self.unit} {at}" + ("" if rid is None else f" (id {rid!r})")
        how = f"mapped fields {self.field_map}" if self.field_map is not None else f"{self.format} format"
        return DataFormatError(f"{where}, {how}: {err}")

    def number_column(self, key: str, row: int) -> array | None:
        """Note the top-level field ``key``; its numbers so far, padded with NaN to ``row`` values, or None when
        it is not watched (:data:`MAX_NUMBER_COLUMNS`) or some value was not a number. The record readers
        (this builder's :meth:`add`, the pyarrow.json reader's columns) append to it."""
        if key not in self.fields:
            self.fields[key] = None
            if len(self._numbers) < MAX_NUMBER_COLUMNS:
                self._numbers[key] = array("d")
        col = self._numbers.get(key)
        if col is not None and len(col) < row:
            col.extend(_NAN * (row - len(col)))
        return col

    def _note_fields(self, record: dict[str, Any]) -> None:
        row = len(self.messages) - 1
        for key, value in record.items():
            col = self.number_column(key, row)
            if col is None:
                continue
            kind = type(value)
            if kind is float or (kind is int and -_BIG < value < _BIG):
                col.append(value)
            elif value is not None:  # a string, bool, list...: not a number column (its values stay in the store)
                self._numbers[key] = None
        if self.ids.ok:
            rid = record.get("id")
            if rid is None:
                self.ids.drop()
            else:
                self.ids.append(str(rid))

    def build(self, *, container: str, content_hash: Any, store: RecordStore, layout: dict | None = None) -> Pool:
        """Return the :class:`Pool`; ``content_hash`` is a hashlib sha256 object fed with the input content."""
        n = len(self.messages)
        if n == 0:
            raise EmptyPoolError(f"{self.source} has no records; a pool needs at least one.")
        if self.field_map is not None:
            self.field_map.check_seen(self.source, self.fields)
            if self._missing is not None:
                raise self._missing[0] from self._missing[1]
        ids, id_source = self._ids(n)
        numbers = {}
        for key, col in self._numbers.items():
            if col is not None:
                values = np.frombuffer(col, dtype=np.float64) if len(col) else np.empty(0)
                if len(values) < n:
                    values = np.concatenate([values, np.full(n - len(values), np.nan)])
                numbers[key] = values
        self._numbers = {}
        content_hash.update(f"\0format={self.format}".encode())
        if self.field_map is not None:
            content_hash.update(f"\0fields={self.field_map}".encode())
        return Pool(
            ids=ids,
            messages=self.messages.build(),
            format=self.format,
            container=container,
            source=self.source,
            fingerprint=content_hash.hexdigest(),
            store=store,
            id_source=id_source,
            layout=layout,
            field_map=self.field_map,
            numbers=numbers,
        )

    def _ids(self, n: int) -> tuple[Ids, str]:
        ids = self.ids.build(n)
        if ids is not None:
            return ids, "field"
        if self.ids.bad is not None:
            logger.warning(
                "%s: the 'id' value %r is not valid text (a lone surrogate); using 0-based positions as ids.",
                self.source, self.ids.bad,
            )  # fmt: skip
        elif self.ids.ok:
            logger.warning("%s: the 'id' field has duplicate values; using 0-based positions as ids.", self.source)
        return Ids.positions(n), "position"
