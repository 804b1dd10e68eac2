"""Read pools from files, folders and hub names; write subsets back in the input's own container.

Reading (:func:`read_pool`), by what ``source`` is:

- ``.jsonl`` / ``.ndjson`` (and ``.gz``): one JSON object per line; blank lines are skipped.
- ``.json`` (and ``.json.gz``): a JSON array of objects, an object with a single list-valued key
  (``{"data": [...]}``, also on one line), or JSON Lines when the first line is a complete record.
- ``.parquet``; ``.csv`` (header row, every value a string).
- a directory with ``dataset_info.json``/``state.json`` or ``dataset_dict.json``: a Hugging Face
  ``save_to_disk`` folder (a DatasetDict needs ``split``, default ``"train"``).
- a string that is not an existing path and looks like ``owner/name``: a Hugging Face hub dataset,
  loaded with ``datasets.load_dataset(name, split=split or "train")``.

Writing (:func:`write_subset`): the container follows ``out``'s extension (``.jsonl``, ``.ndjson``,
``.json``, ``.parquet``, ``.csv``, optionally ``.gz`` after a JSON one); an ``out`` with the input's own
extension, or an unknown one, keeps the input's container. JSON Lines to JSON Lines copies the original
line bytes; every other path writes each record as an equal JSON value. Writes are atomic.

What a container cannot hold is refused with the record, its field and the fix, and nothing is written:
JSON output is strict (``allow_nan=False``: no ``NaN``/``Infinity``, which ``1e400`` becomes when read);
a lone surrogate (``"\\ud800"``) stays a ``\\uXXXX`` escape in JSON but is refused by Parquet and CSV,
whose strings are UTF-8.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import secrets
import sys
import zlib
from array import array
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from kmq._deps import require
from kmq.data.formats import FORMATS, LONE_SURROGATE, detect_format
from kmq.data.pool import ArrowStore, JsonlStore, ListStore, Pool, PoolBuilder, check_indices
from kmq.errors import DataFormatError, EmptyPoolError, InvalidParameterError, MissingArtifactError

__all__ = ["FORMATS", "read_pool", "write_subset"]

logger = logging.getLogger(__name__)

_BASES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv")
_SUPPORTED = ".jsonl, .ndjson, .json (each optionally .gz), .parquet, .csv, a Hugging Face save_to_disk folder"
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_CHUNK = 1 << 24
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # JSON strings (skipped) and brackets


# ----------------------------------------------------------------------------------------------- reading


def read_pool(source: str | os.PathLike, *, format: str = "auto", split: str | None = None) -> Pool:
    """Read an instruction pool and normalize every record to chat messages.

    Parameters
    ----------
    source : str or PathLike
        A file (see the module docstring for the containers), a Hugging Face ``save_to_disk`` folder,
        or a hub dataset name ``owner/name``.
    format : {"auto", "messages", "sharegpt", "alpaca", "prompt_completion"}, default "auto"
        Record format; "auto" detects it from the fields of the first record (see :mod:`kmq.data.formats`).
    split : str or None, default None
        Split of a DatasetDict folder or hub dataset; None means ``"train"``. Ignored for files.

    Returns
    -------
    Pool
        With ``len(pool)`` records aligned with ``pool.ids`` and ``pool.messages``.

    Raises
    ------
    MissingArtifactError
        ``source`` does not exist (or the hub dataset cannot be loaded).
    DataFormatError
        Unsupported extension, malformed JSON (file and line), a record that does not fit the format
        (file, line or record, field, what was expected), or an undetectable format.
    EmptyPoolError
        The input has no records.
    """
    builder = PoolBuilder(str(source), format)
    path = Path(source)
    if path.is_dir():
        return _read_hf_disk(path, builder, split)
    if path.is_file():
        return _read_file(path, builder)
    base, _ = _split_suffix(path.name)
    if isinstance(source, str) and base is None and _HUB_NAME.match(source):
        return _read_hf_hub(source, builder, split)
    raise MissingArtifactError(
        f"Pool not found: {source}. Pass an existing file ({_SUPPORTED}) or a hub dataset name like owner/name."
    )


def _split_suffix(name: str) -> tuple[str | None, bool]:
    """Return (base extension among _BASES or None, whether the name ends with .gz)."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    stem = lower[:-3] if gz else lower
    return next((b for b in _BASES if stem.endswith(b)), None), gz


def _read_file(path: Path, builder: PoolBuilder) -> Pool:
    base, gz = _split_suffix(path.name)
    if base is None or (gz and base in (".parquet", ".csv")):
        kind = "".join(path.suffixes) or "(no extension)"
        raise DataFormatError(f"{path}: unsupported file type {kind}; supported: {_SUPPORTED}.")
    suffix = base + (".gz" if gz else "")
    if base == ".parquet":
        return _read_parquet(path, builder)
    if base == ".csv":
        return _read_csv(path, builder)
    if base == ".json" and not _looks_like_jsonl(path, gz):
        return _read_json(path, builder, gz, suffix)
    return _read_jsonl(path, builder, gz, suffix)


@contextmanager
def _open(path: Path, gz: bool) -> Iterator[BinaryIO]:
    """Open for reading; a ``.gz`` that is not gzip, or is truncated or corrupt, is a DataFormatError."""
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            yield fh
    except gzip.BadGzipFile as err:
        with open(path, "rb") as raw:
            head = raw.read(2)
        if head != b"\x1f\x8b":
            raise DataFormatError(
                f"{path} is not gzip-compressed (it starts with {head!r}), but its name ends in .gz. "
                f"Rename it to {path.name[:-3]}, or compress it with gzip."
            ) from err
        raise DataFormatError(f"{path}: corrupt gzip data ({err}). Recompress or download the file again.") from err
    except (EOFError, zlib.error) as err:
        what = "is truncated (the gzip stream ends early)" if isinstance(err, EOFError) else f"is corrupt ({err})"
        raise DataFormatError(f"{path} {what}. Recompress or download the file again.") from err


def _looks_like_jsonl(path: Path, gz: bool) -> bool:
    """A ``.json`` file holds JSON Lines when its first line is a complete object that is a record.

    A first line that is an object with a single list-valued key and no record format (``{"data": [...]}``
    written on one line) is a wrapped array, read as one JSON document.
    """
    with _open(path, gz) as fh:
        line = fh.readline()
        while line and not line.strip():
            line = fh.readline()
    line = line.removeprefix(codecs.BOM_UTF8).strip()
    if not line.startswith(b"{"):
        return False
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return False
    wrapper = len(value) == 1 and isinstance(next(iter(value.values())), list) and detect_format(value) is None
    return not wrapper


def _too_deep(path: Path, data: bytes, lineno: int | None = None) -> DataFormatError:
    """The error for JSON nested deeper than Python's parser goes: names the line (of the file or the JSONL line)."""
    depth, line = _max_depth(data)
    return DataFormatError(
        f"{path} line {lineno or line}: JSON nested {depth} levels deep, more than kmq's JSON reader supports "
        f"(about {sys.getrecursionlimit()} levels). Flatten that record or remove it."
    )


def _max_depth(data: bytes) -> tuple[int, int]:
    """Return (deepest nesting of ``[``/``{`` outside strings, 1-based line where it is first reached)."""
    depth = best = best_at = 0
    for match in _TOKENS.finditer(data):
        token = match.group()
        if token == b"[" or token == b"{":
            depth += 1
            if depth > best:
                best, best_at = depth, match.start()
        elif token == b"]" or token == b"}":
            depth -= 1
    return best, data.count(b"\n", 0, best_at) + 1


def _read_jsonl(path: Path, builder: PoolBuilder, gz: bool, suffix: str) -> Pool:
    builder.unit = "line"
    digest, offsets, lengths = hashlib.sha256(), array("q"), array("q")
    with _open(path, gz) as fh:
        for offset, lineno, line in _lines(fh, digest):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"))  # JSON Lines is UTF-8; str skips encoding sniffing
            except ValueError as err:  # UnicodeDecodeError included
                raise DataFormatError(_bad_line(path, lineno, line, err)) from err
            except RecursionError:
                raise _too_deep(path, line, lineno) from None
            builder.add(record, lineno)
            offsets.append(offset)
            lengths.append(len(line))
    store = JsonlStore(path, compressed=gz, offsets=offsets, lengths=lengths, fields=list(builder.fields))
    container = "jsonl.gz" if gz else "jsonl"
    return builder.build(container=container, content_hash=digest, store=store, layout={"suffix": suffix})


def _lines(fh: BinaryIO, digest: Any) -> Iterator[tuple[int, int, bytes]]:
    """Yield (byte offset, 1-based line number, line without ``\\n``) and feed every byte to ``digest``."""
    offset, lineno, rest = 0, 0, b""
    while chunk := fh.read(_CHUNK):
        digest.update(chunk)
        if lineno == 0 and not rest and chunk.startswith(codecs.BOM_UTF8):
            chunk, offset = chunk[3:], 3
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            lineno += 1
            yield offset, lineno, line
            offset += len(line) + 1
    if rest:
        yield offset, lineno + 1, rest


def _bad_line(path: Path, lineno: int, line: bytes, err: ValueError) -> str:
    if isinstance(err, json.JSONDecodeError):
        hint = " (the file looks like a JSON array: name it .json)" if lineno == 1 and line.strip() == b"[" else ""
        return f"{path} line {lineno}, column {err.colno}: invalid JSON ({err.msg}){hint}. Fix or remove that line."
    return f"{path} line {lineno}: not valid UTF-8 JSON ({err}). Fix or remove that line."


def _read_json(path: Path, builder: PoolBuilder, gz: bool, suffix: str) -> Pool:
    with _open(path, gz) as fh:
        data = fh.read()
    digest = hashlib.sha256(data)
    data = data.removeprefix(codecs.BOM_UTF8)
    if not data.strip():
        raise EmptyPoolError(f"{path} is empty; a pool needs at least one record.")
    try:
        value = json.loads(data)
    except ValueError as err:
        where = f"line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else "?"
        raise DataFormatError(f"{path}: invalid JSON at {where} ({getattr(err, 'msg', err)}).") from err
    except RecursionError:
        raise _too_deep(path, data) from None
    key = None
    if isinstance(value, dict):
        key, value = _unwrap(path, value)
    if not isinstance(value, list):
        raise DataFormatError(f"{path}: top-level JSON value is {type(value).__name__}; expected an array of records.")
    for i, record in enumerate(value):
        builder.add(record, i)
    layout = {"suffix": suffix, "indent": _json_indent(data), "key": key}
    container = "json.gz" if gz else "json"
    return builder.build(container=container, content_hash=digest, store=ListStore(value), layout=layout)


def _unwrap(path: Path, value: dict) -> tuple[str, list]:
    lists = [k for k, v in value.items() if isinstance(v, list)]
    if len(value) != 1 or not lists:
        raise DataFormatError(
            f"{path} holds a JSON object with keys {list(value)}; kmq reads a JSON array of records, "
            'JSON Lines, or an object with a single list-valued key such as {"data": [...]}.'
        )
    return lists[0], value[lists[0]]


def _json_indent(data: bytes) -> int | str | None:
    """The indent unit of a JSON document: None when compact, else the whitespace before its first member."""
    match = re.match(rb"\s*[\[{]([ \t\r\n]*)", data)
    space = match.group(1) if match else b""
    if b"\n" not in space:
        return None
    unit = space.rsplit(b"\n", 1)[1]
    return "\t" if unit.startswith(b"\t") else len(unit)


def _read_csv(path: Path, builder: PoolBuilder) -> Pool:
    builder.unit = "line"
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text ({err}). Save the CSV as UTF-8.") from err
    reader = csv.DictReader(io.StringIO(text, newline=""))
    fields = reader.fieldnames
    if not fields:
        raise EmptyPoolError(f"{path} is empty; a CSV pool needs a header row and at least one record.")
    if len(set(fields)) != len(fields):
        raise DataFormatError(f"{path} line 1: the header repeats a column name: {fields}. Make the names unique.")
    records = []
    try:
        for row in reader:
            if None in row or None in row.values():
                raise DataFormatError(
                    f"{path} line {reader.line_num}: the row has a different number of cells than the header "
                    f"({len(fields)} columns). Quote cells that contain commas or newlines."
                )
            builder.add(row, reader.line_num)
            records.append(row)
    except csv.Error as err:
        raise DataFormatError(f"{path} line {reader.line_num}: malformed CSV ({err}).") from err
    layout = {"suffix": ".csv", "fieldnames": fields}
    return builder.build(container="csv", content_hash=hashlib.sha256(data), store=ListStore(records), layout=layout)


def _read_parquet(path: Path, builder: PoolBuilder) -> Pool:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise DataFormatError(f"{path}: not a readable Parquet file ({err}).") from err
    _add_table(table, builder)
    layout = {"suffix": ".parquet"}
    return builder.build(container="parquet", content_hash=digest, store=ArrowStore(table), layout=layout)


def _add_table(table: pa.Table, builder: PoolBuilder) -> None:
    i = 0
    for batch in table.to_batches(max_chunksize=8192):
        for record in batch.to_pylist():
            builder.add(record, i)
            i += 1


def _read_hf_disk(path: Path, builder: PoolBuilder, split: str | None) -> Pool:
    if not any((path / marker).is_file() for marker in _HF_MARKERS):
        raise DataFormatError(
            f"{path} is a directory but not a Hugging Face save_to_disk folder (no {', '.join(_HF_MARKERS)}). "
            f"Pass a file ({_SUPPORTED})."
        )
    datasets = require("datasets", purpose="reading Hugging Face dataset folders")
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        split = split or "train"
        if split not in loaded:
            raise DataFormatError(
                f"{path} has no split {split!r}; splits: {list(loaded)}. Pass split=... (--split on the command line)."
            )
        loaded = loaded[split]
    return _from_dataset(loaded, builder, container="hf_disk", split=split)


def _read_hf_hub(name: str, builder: PoolBuilder, split: str | None) -> Pool:
    datasets = require("datasets", purpose="reading Hugging Face hub datasets")
    split = split or "train"
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as err:  # datasets raises many types (network, missing repo, bad split...)
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise MissingArtifactError(
            f"Could not load the Hugging Face dataset {name!r} (split {split!r}): {reason}. Check the name and "
            "split, and be online (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE unset) or have the dataset cached."
        ) from err
    return _from_dataset(dataset, builder, container="hf_hub", split=split)


def _from_dataset(dataset: Any, builder: PoolBuilder, *, container: str, split: str | None) -> Pool:
    if dataset.num_rows == 0:
        raise EmptyPoolError(f"{builder.source} (split {split!r}) has no records; a pool needs at least one.")
    table = dataset.with_format("arrow")[:]
    _add_table(table, builder)
    ident = getattr(dataset, "_fingerprint", None) or json.dumps(dataset.info.to_dict(), sort_keys=True, default=str)
    digest = hashlib.sha256(f"hf:{ident}:{split}:{dataset.num_rows}".encode())
    return builder.build(container=container, content_hash=digest, store=ArrowStore(table), layout={"suffix": ""})


# ----------------------------------------------------------------------------------------------- writing


def write_subset(pool: Pool, indices: Iterable[int], out: str | os.PathLike) -> Path:
    """Write the records of ``pool`` at ``indices`` (in that order) to ``out``, atomically.

    Parameters
    ----------
    pool : Pool
        The pool the indices refer to.
    indices : sequence or ndarray of shape (m,), int
        Row indices in [0, len(pool)); duplicates are written as many times as they occur.
    out : str or PathLike
        Output file; its extension picks the container (see the module docstring). Parent folders are
        created. A temporary file in the same folder is renamed over ``out`` at the end, so a failed
        write leaves nothing behind.

    Returns
    -------
    Path
        The path written.
    """
    rows = check_indices(indices, len(pool), owner="write_subset")
    out = Path(out)
    if out.exists() and pool._layout.get("suffix") and out.resolve() == Path(pool.source).resolve():
        raise InvalidParameterError(f"write_subset would overwrite the pool's own file {out}; choose another `out`.")
    kind, gz = _target(pool, out)
    with _atomic(out) as tmp:
        _WRITERS[kind](pool, rows, tmp, gz)
    logger.info("Wrote %d records (%s%s) to %s", len(rows), kind, ".gz" if gz else "", out)
    return out


def _target(pool: Pool, out: Path) -> tuple[str, bool]:
    """Return (container to write: jsonl | json | parquet | csv, gzip or not) for ``out``."""
    own, own_gz = pool.container.removesuffix(".gz"), pool.container.endswith(".gz")
    if own not in _WRITERS:
        own, own_gz = "jsonl", False
    base, gz = _split_suffix(out.name)
    if base is None or base + (".gz" if gz else "") == pool._layout.get("suffix"):
        return own, own_gz
    kind = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".parquet": "parquet", ".csv": "csv"}[base]
    if gz and kind in ("parquet", "csv"):
        raise DataFormatError(f"Cannot write {out}: gzip is supported for .jsonl.gz and .json.gz only.")
    return kind, gz


@contextmanager
def _atomic(out: Path) -> Iterator[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _out_stream(path: Path, gz: bool) -> Iterator[BinaryIO]:
    with open(path, "wb") as raw:
        if not gz:
            yield raw
            return
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped:
            yield zipped


def _chunks(rows: list[int], size: int = 65536) -> Iterator[list[int]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def _json_bytes(value: Any, indent: int | str | None = None) -> bytes:
    """Strict JSON (never NaN or Infinity) in UTF-8; a lone surrogate is kept as its ``\\uXXXX`` escape."""
    text = json.dumps(value, ensure_ascii=False, indent=indent, allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # surrogates occur only inside string literals: escaping them is exact
        return LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text).encode()


def _dumps(pool: Pool, rows: list[int], records: list[Any], value: Any, indent: int | str | None = None) -> bytes:
    """:func:`_json_bytes` of ``value`` (built from ``records``, the pool's rows ``rows``) or an error naming one."""
    try:
        return _json_bytes(value, indent)
    except (TypeError, ValueError, RecursionError) as err:
        raise _unwritable(pool, rows, records, "JSON", err) from None


def _write_jsonl(pool: Pool, rows: list[int], tmp: Path, gz: bool) -> None:
    store = pool._store
    with _out_stream(tmp, gz) as fh:
        for chunk in _chunks(rows):
            if isinstance(store, JsonlStore):
                lines = store.lines(chunk)
            else:
                records = store.get(chunk)
                lines = [_dumps(pool, [i], [r], r) for i, r in zip(chunk, records, strict=True)]
            for line in lines:
                fh.write(line + b"\n")


def _write_json(pool: Pool, rows: list[int], tmp: Path, gz: bool) -> None:
    layout = pool._layout
    records = pool._store.get(rows)
    value = {layout["key"]: records} if layout.get("key") else records
    data = _dumps(pool, rows, records, value, indent=layout["indent"] if "indent" in layout else 2)
    with _out_stream(tmp, gz) as fh:
        fh.write(data + b"\n")


def _write_parquet(pool: Pool, rows: list[int], tmp: Path, gz: bool) -> None:
    store = pool._store
    if isinstance(store, ArrowStore):
        table = store.table.take(pa.array(rows, type=pa.int64()))
    else:
        records = store.get(rows)
        fields = dict.fromkeys(key for record in records for key in record)  # every field, not the first record's
        try:
            table = pa.Table.from_pydict({key: [record.get(key) for record in records] for key in fields})
        except UnicodeEncodeError as err:
            raise _unwritable(pool, rows, records, "Parquet", err) from None
        except (pa.ArrowException, TypeError) as err:
            raise DataFormatError(
                f"The records of {pool.source} do not fit one Parquet schema ({err}); write to .jsonl instead."
            ) from err
    pq.write_table(table, tmp)


def _unwritable(pool: Pool, rows: list[int], records: list[Any], container: str, err: Exception) -> DataFormatError:
    """The error for records that ``container`` cannot hold: the first such record, its field and the fix."""
    for i, record in zip(rows, records, strict=True):
        found = _deepest(record) if isinstance(err, RecursionError) else _first_unwritable(record, container)
        if found is not None:
            field, problem, fix = found
            if fix == _FIX_JSON and isinstance(pool._store, JsonlStore):
                fix = _FIX_JSON_FROM_JSONL
            return DataFormatError(
                f"Cannot write record {i} (id {pool.ids[i]!r}) of {pool.source} as {container}: "
                f"field {field} {problem}. {fix}"
            )
    return DataFormatError(f"The records of {pool.source} cannot be written as {container} ({err}).")


_FIX_JSON = "Write to .parquet instead, or fix the value in the input."
_FIX_JSON_FROM_JSONL = (
    "Write to .jsonl (it copies the original lines) or .parquet instead, or fix the value in the input."
)
_FIX_UTF8 = "Write to .jsonl or .json instead (they keep it as a \\uXXXX escape), or fix the text in the input."


def _walk(record: dict[str, Any]) -> Iterator[tuple[str, Any, int]]:
    """Yield (field path like ``'messages'[0].content``, value, nesting depth) of every value and key in ``record``."""
    stack = [(repr(key), value, 1) for key, value in reversed(record.items())]
    stack += [(f"name {key!r}", key, 0) for key in record]
    while stack:
        path, value, depth = stack.pop()
        yield path, value, depth
        if isinstance(value, dict):
            stack += [(f"{path} key {key!r}", key, depth) for key in value]
            stack += [(f"{path}.{key}", item, depth + 1) for key, item in value.items()]
        elif isinstance(value, (list, tuple)):
            stack += [(f"{path}[{j}]", item, depth + 1) for j, item in enumerate(value)]


def _first_unwritable(record: dict[str, Any], container: str) -> tuple[str, str, str] | None:
    """(field, problem, fix) for the first value of ``record`` that ``container`` cannot hold, else None."""
    for path, value, _ in _walk(record):
        if container != "JSON":  # Parquet and CSV: UTF-8 strings
            bad = LONE_SURROGATE.search(value) if isinstance(value, str) else None
            if bad:
                return path, f"holds a lone surrogate {bad.group()!r}, which {container} cannot store", _FIX_UTF8
        elif isinstance(value, float) and not math.isfinite(value):
            return path, f"is {value} (NaN or a number out of float range), and JSON has no NaN or Infinity", _FIX_JSON
        elif not isinstance(value, (str, dict, list, tuple, int, float, type(None))):
            return path, f"is {type(value).__name__}, which JSON cannot hold", _FIX_JSON
    return None


def _deepest(record: dict[str, Any]) -> tuple[str, str, str]:
    path, _, depth = max(_walk(record), key=lambda item: item[2])
    return path, f"is nested {depth} levels deep, too deep for JSON", "Flatten it, or write to .parquet instead."


def _write_csv(pool: Pool, rows: list[int], tmp: Path, gz: bool) -> None:
    fields = pool._layout.get("fieldnames") or pool.columns()
    records = pool._store.get(rows)
    for i, record in zip(rows, records, strict=True):
        bad = next((k for k in fields if not isinstance(record.get(k), str)), None)
        if bad is not None or len(record) != len(fields):
            what = f"field {bad!r} is {type(record.get(bad)).__name__}" if bad else "it has other fields"
            raise DataFormatError(
                f"Cannot write record {i} ({pool.ids[i]!r}) of {pool.source} to CSV: {what}, and CSV holds one "
                f"string per column {fields}. Write to .jsonl or .parquet instead."
            )
        if any(LONE_SURROGATE.search(record[k]) for k in fields):
            raise _unwritable(pool, [i], [record], "CSV", ValueError("lone surrogate"))
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)  # "\r\n" rows: then cells with a lone "\r" are quoted too
        writer.writeheader()
        writer.writerows(records)


_WRITERS = {"jsonl": _write_jsonl, "json": _write_json, "parquet": _write_parquet, "csv": _write_csv}
