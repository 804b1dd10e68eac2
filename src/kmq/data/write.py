"""Write a subset of a pool; ``out`` decides the container (:func:`output_container`).

- By extension: ``.jsonl`` / ``.ndjson`` -> ``"jsonl"``, ``.json`` -> ``"json"`` (each optionally followed by
  ``.gz``: ``"jsonl.gz"``, ``"json.gz"``), ``.parquet`` -> ``"parquet"``, ``.csv`` -> ``"csv"``, ``.tsv`` -> ``"tsv"``.
- A folder, named by an ``out`` that ends with ``/`` or that is an existing folder -> ``"hf_disk"``, a
  Hugging Face ``save_to_disk`` folder that ``datasets.load_from_disk`` reads.
- No extension (``subset``, ``dolly_v1.5``): the pool's own container, where a ``save_to_disk`` folder or a
  hub dataset gives a ``save_to_disk`` folder, and a ``.zip`` pool gives its inner file's format (a zip of
  JSON Lines gives ``.jsonl`` content); an in-memory pool has none, so that is an error.
- kmq writes no ``.zip``: such an ``out`` is an error that names the inner format to use.
- ``out`` with the extension of the pool's own file keeps its container: a ``.json`` file of JSON Lines
  gives JSON Lines again.
- Any other extension (``.txt``) is an error that lists the supported ones.

An explicit ``container=`` (one of :data:`OUTPUT_CONTAINERS`) overrides the name, but may not contradict
its extension. :func:`check_output_path` runs the same checks before a pool is read, so a command can
refuse a bad ``--out`` before any work.

JSON Lines to JSON Lines copies the original line bytes; every other path writes each record as an equal
JSON value; a ``save_to_disk`` pool (or an in-memory ``datasets.Dataset``) written as a folder keeps its
features. CSV keeps the input's line endings (``\\n`` from any other container). Writes are atomic.

``out_format`` other than ``"same"`` converts the records first (:mod:`kmq.data.convert`) and writes them
as plain JSON values in the same containers: a ``.json`` file holds a list, and a CSV/TSV cell holds the
JSON text of each value that is not a string (the turns, ``history``, numbers).

What a container cannot hold is refused with the record, its field and the fix, and nothing is written:
JSON output is strict (``allow_nan=False``: no ``NaN``/``Infinity``, which ``1e400`` becomes when read);
a lone surrogate (``"\\ud800"``) stays a ``\\uXXXX`` escape in JSON but is refused by Parquet and CSV,
whose strings are UTF-8.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import os
import re
import secrets
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from kmq._deps import require
from kmq.data.convert import TARGET_FIELDS, OutFormat, check_out_format, convert_subset, csv_cells
from kmq.data.formats import LONE_SURROGATE
from kmq.data.io import HF_MARKERS, split_suffix
from kmq.data.pool import ArrowStore, JsonlStore, ListStore, Pool, check_indices
from kmq.errors import DataFormatError, InvalidParameterError, invalid_parameter

__all__ = ["OUTPUT_CONTAINERS", "check_output_path", "output_container", "write_subset"]

logger = logging.getLogger(__name__)

#: What :func:`write_subset` can write.
OUTPUT_CONTAINERS = ("jsonl", "jsonl.gz", "json", "json.gz", "parquet", "csv", "tsv", "hf_disk")
_BY_EXTENSION = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
}
_SUPPORTED_OUT = (
    ".jsonl, .ndjson, .json (each optionally .gz), .parquet, .csv, .tsv, or a folder (a name ending in /) "
    "for a Hugging Face save_to_disk dataset"
)
_EXTENSION = re.compile(r"\.[A-Za-z][A-Za-z0-9]{0,7}")  # "x.txt" has one; "dolly_v1.5" and "run.2024-01" do not


# ----------------------------------------------------------------------------------------------- the container


def _names_folder(out: str | os.PathLike) -> bool:
    text = os.fspath(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def check_output_path(
    pool_container: str | None, out: str | os.PathLike, *, container: str | None = None
) -> str | None:
    """Check ``out`` before any work and return the container it will get (see the module docstring).

    Parameters
    ----------
    pool_container : str or None
        The pool's :attr:`~kmq.data.Pool.container` (``"memory"`` for an in-memory pool), or None when it
        is not known yet (see :func:`kmq.data.source_container`).
    out : str or PathLike
        The output path as the user gave it (a trailing ``/`` asks for a folder).
    container : str, optional
        An explicit choice among :data:`OUTPUT_CONTAINERS`.

    Returns
    -------
    str or None
        One of :data:`OUTPUT_CONTAINERS`; None when ``out`` has no extension and ``pool_container`` is None
        (the pool decides).

    Raises
    ------
    InvalidParameterError
        Unknown extension, gzip after ``.parquet``/``.csv``, no extension for an in-memory pool, or a
        ``container`` that is unknown or contradicts ``out``.
    """
    text = os.fspath(out)
    name = Path(text).name
    base, gz = split_suffix(name)
    by_name = _BY_EXTENSION[base] + (".gz" if gz else "") if base is not None else None
    if by_name in ("parquet.gz", "csv.gz", "tsv.gz"):
        raise InvalidParameterError(f"Cannot write {text}: gzip is supported for .jsonl.gz and .json.gz only.")
    if container is not None:
        return _explicit(container, text, by_name)
    if _names_folder(text):
        return "hf_disk"
    if by_name is not None:
        return by_name
    suffix = Path(name).suffix
    inner = pool_container.removesuffix(".zip") if pool_container else None
    if suffix.lower() == ".zip":
        ext = {"jsonl": ".jsonl", "json": ".json", "csv": ".csv", "tsv": ".tsv", "parquet": ".parquet"}
        instead = f"{Path(name).stem}{ext.get(inner or '', '.jsonl')}"
        raise InvalidParameterError(
            f"Cannot write {text}: kmq writes no .zip archives. Name the subset {instead} (or drop the extension "
            "to write a zip pool's inner format), and zip it afterwards if you need to."
        )
    if suffix and _EXTENSION.fullmatch(suffix):
        raise InvalidParameterError(f"Cannot write {text}: unknown extension {suffix!r}; supported: {_SUPPORTED_OUT}.")
    if pool_container is None:
        return None
    if pool_container in ("hf_disk", "hf_hub"):
        return "hf_disk"
    if pool_container in OUTPUT_CONTAINERS:
        return pool_container
    if inner in OUTPUT_CONTAINERS:  # a zip pool: its inner file's format
        return inner
    raise InvalidParameterError(
        f"Cannot write {text}: it has no extension, and an in-memory pool has no file format of its own to "
        f"follow. Name the format with the extension: {_SUPPORTED_OUT}."
    )


def _explicit(container: str, text: str, by_name: str | None) -> str:
    if container not in OUTPUT_CONTAINERS:
        raise invalid_parameter("container", "write_subset", f"one of {list(OUTPUT_CONTAINERS)}", container)
    if container == "hf_disk":
        return container
    if _names_folder(text):
        raise InvalidParameterError(
            f"Cannot write {text} as {container}: it names a folder, which holds a save_to_disk dataset "
            "(container 'hf_disk'); pass a file path."
        )
    if by_name is not None and by_name != container:
        raise InvalidParameterError(
            f"Cannot write {text} as {container}: its extension says {by_name}. Pass a matching name or container."
        )
    return container


def output_container(pool: Pool, out: str | os.PathLike, *, container: str | None = None) -> str:
    """The container :func:`write_subset` writes for ``pool`` at ``out``: one of :data:`OUTPUT_CONTAINERS`.

    Raises :class:`~kmq.errors.InvalidParameterError` as :func:`check_output_path` does.
    """
    if container is None and not _names_folder(out):
        base, gz = split_suffix(Path(os.fspath(out)).name)
        own = pool._layout.get("suffix")
        if base is not None and own and base + (".gz" if gz else "") == own and pool.container in OUTPUT_CONTAINERS:
            return pool.container
    found = check_output_path(pool.container, out, container=container)
    assert found is not None  # a known pool container always decides
    return found


# ----------------------------------------------------------------------------------------------- writing


def write_subset(
    pool: Pool,
    indices: Iterable[int],
    out: str | os.PathLike,
    *,
    container: str | None = None,
    out_format: OutFormat = "same",
) -> Path:
    """Write the records of ``pool`` at ``indices`` (in that order) to ``out``, atomically.

    Parameters
    ----------
    pool : Pool
        The pool the indices refer to.
    indices : sequence or ndarray of shape (m,), int
        Row indices in [0, len(pool)); duplicates are written as many times as they occur.
    out : str or PathLike
        Output file, or folder for a ``save_to_disk`` dataset; its name picks the container (see the
        module docstring). Parent folders are created. Everything is written beside ``out`` first and
        renamed over it at the end, so a failed write leaves nothing behind. An existing folder is replaced
        only when it is a ``save_to_disk`` folder.
    container : str, optional
        One of :data:`OUTPUT_CONTAINERS`, instead of what ``out``'s name says (:func:`output_container`).
    out_format : {"same", "messages", "sharegpt", "alpaca", "prompt-completion"}, default "same"
        ``"same"`` writes the input's own records; any other converts them (:mod:`kmq.data.convert`, whose
        :func:`~kmq.data.conversion_stats` gives the counts of what each conversion kept and lost). Converted
        records are written as plain JSON values (a ``.json`` file holds a list), and in CSV/TSV every value that
        is not a string is JSON-encoded into its cell (``messages``, ``history``, numbers), null as ``""``.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    InvalidParameterError
        ``out`` names no container kmq writes (see :func:`check_output_path`), or it is the pool's own file
        or folder, or an existing folder that a file (or a non-dataset folder) would replace.
    DataFormatError
        A record that the container cannot hold (the record, its field and the fix).
    """
    check_out_format(out_format)
    rows = check_indices(indices, len(pool), owner="write_subset")
    kind = output_container(pool, out, container=container)
    out = Path(out)
    _check_target(pool, out)
    if out_format != "same":
        pool, rows = _converted(pool, rows, out_format, kind), list(range(len(rows)))
    writer, gz = _WRITERS[kind.removesuffix(".gz")], kind.endswith(".gz")
    with _atomic(out) as tmp:
        writer(pool, rows, tmp, gz)
    logger.info("Wrote %d records (%s, %s) to %s", len(rows), kind, out_format, out)
    return out


def _converted(pool: Pool, rows: list[int], out_format: str, kind: str) -> Pool:
    """A pool of the converted records (in ``rows`` order) that the writers write like any other."""
    records, stats = convert_subset(pool, rows, out_format)
    if stats["lossy_records"]:
        logger.warning(
            "Converting %d records to %s lost something in %d: %s (the ids are in the conversion stats).",
            len(rows), out_format, stats["lossy_records"],
            "; ".join(f"{reason}: {e['count']}" for reason, e in stats["lossy"].items()),
        )  # fmt: skip
    layout: dict[str, Any] = {"indent": pool._layout.get("indent", 2), "newline": pool._layout.get("newline", "\n")}
    if kind.removesuffix(".gz") in ("csv", "tsv"):
        records, layout["fieldnames"], _ = csv_cells(records)
    if not records:  # an empty subset still has the target's columns
        layout["fieldnames"] = list(TARGET_FIELDS[out_format])
    return Pool(
        ids=[pool.ids[i] for i in rows],
        messages=[pool.messages[i] for i in rows],
        format=pool.format,
        container="memory",
        source=f"the {out_format} conversion of {pool.source}",
        fingerprint=pool.fingerprint,
        store=ListStore(records),
        layout=layout,
    )


def _check_target(pool: Pool, out: Path) -> None:
    """Refuse the pool's own file or folder, and a folder that ``kind`` may not replace."""
    if pool.container not in ("memory", "hf_hub"):
        src, target = Path(pool.source).resolve(), out.resolve()
        if target == src:
            what = "folder" if src.is_dir() else "file"
            raise InvalidParameterError(
                f"write_subset would overwrite the pool's own {what} {out}; choose another `out`."
            )
        if src in target.parents or target in src.parents:
            raise InvalidParameterError(
                f"write_subset would write {out}, and the pool {pool.source} lies inside it or it inside the pool; "
                "choose an `out` outside the pool."
            )
    # an existing folder always means hf_disk (output_container): replace only a dataset folder
    if out.is_dir() and not out.is_symlink() and not any((out / marker).is_file() for marker in HF_MARKERS):
        raise InvalidParameterError(
            f"Cannot write a save_to_disk dataset to {out}: it is an existing folder that is not one "
            "(kmq replaces only a dataset folder). Pass a new folder."
        )


@contextmanager
def _atomic(out: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out`` (file or folder) that replaces ``out`` when the block succeeds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield tmp
        if tmp.is_dir() and out.is_dir() and not out.is_symlink():
            old = out.with_name(f".{out.name}.{secrets.token_hex(6)}.old")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if tmp.is_dir() and (out.exists() or out.is_symlink()):
                out.unlink()  # a folder replaces a file of the same name
            os.replace(tmp, out)
    finally:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
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


def _arrow_table(pool: Pool, rows: list[int], container: str) -> pa.Table:
    """The selected records as one Arrow table (every field seen, None where a record lacks it)."""
    store = pool._store
    if isinstance(store, ArrowStore):
        return store.table.take(pa.array(rows, type=pa.int64()))
    records = store.get(rows)
    fields = dict.fromkeys(key for record in records for key in record)  # every field, not the first record's
    if not fields:  # no rows: the columns still make a schema (save_to_disk refuses a table without one)
        fields = dict.fromkeys(pool._layout.get("fieldnames") or pool.columns())
    try:
        return pa.Table.from_pydict({key: [record.get(key) for record in records] for key in fields})
    except UnicodeEncodeError as err:
        raise _unwritable(pool, rows, records, container, err) from None
    except (pa.ArrowException, TypeError) as err:
        raise DataFormatError(
            f"The records of {pool.source} do not fit one {container} schema ({err}); write to .jsonl instead."
        ) from err


def _write_parquet(pool: Pool, rows: list[int], tmp: Path, gz: bool) -> None:
    """An Arrow pool's rows are taken and written a batch at a time (never the whole subset at once)."""
    store = pool._store
    if not isinstance(store, ArrowStore) or not rows:
        pq.write_table(_arrow_table(pool, rows, "Parquet"), tmp)
        return
    with pq.ParquetWriter(tmp, store.table.schema) as writer:
        for chunk in _chunks(rows):
            writer.write_table(store.table.take(pa.array(chunk, type=pa.int64())))


def _write_hf_disk(pool: Pool, rows: list[int], tmp: Path, gz: bool) -> None:
    """``Dataset.save_to_disk`` of the selected rows: the input Dataset's own rows and features when there is one."""
    datasets = require("datasets", purpose="writing Hugging Face save_to_disk folders")
    store = pool._store
    if isinstance(store, ArrowStore) and store.dataset is not None:
        subset = store.dataset.select(rows, keep_in_memory=True)  # never an indices cache file in the input folder
    else:
        subset = datasets.Dataset(_arrow_table(pool, rows, "Arrow"))
    shown = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # kmq logs what it wrote; the bar would break -q and stdout-only output
    try:
        subset.save_to_disk(str(tmp), num_shards=None if rows else 1)  # 0 shards would not load back
    finally:
        if shown:
            datasets.enable_progress_bars()


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
        if container != "JSON":  # Parquet, Arrow and CSV: UTF-8 strings
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


def _write_tsv(pool: Pool, rows: list[int], tmp: Path, gz: bool) -> None:
    _write_csv(pool, rows, tmp, gz, delimiter="\t")


def _write_csv(pool: Pool, rows: list[int], tmp: Path, gz: bool, *, delimiter: str = ",") -> None:
    kind = "TSV" if delimiter == "\t" else "CSV"
    fields = pool._layout.get("fieldnames") or pool.columns()
    records = pool._store.get(rows)
    for i, record in zip(rows, records, strict=True):
        bad = next((k for k in fields if not isinstance(record.get(k), str)), None)
        if bad is not None or len(record) != len(fields):
            what = f"field {bad!r} is {type(record.get(bad)).__name__}" if bad else "it has other fields"
            raise DataFormatError(
                f"Cannot write record {i} ({pool.ids[i]!r}) of {pool.source} to {kind}: {what}, and {kind} holds "
                f"one string per column {fields}. Write to .jsonl or .parquet instead."
            )
        if any(LONE_SURROGATE.search(record[k]) for k in fields):
            raise _unwritable(pool, [i], [record], kind, ValueError("lone surrogate"))
    newline = pool._layout.get("newline", "\n")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        plain = csv.writer(fh, delimiter=delimiter, lineterminator=newline)
        quoted = csv.writer(fh, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_ALL)
        for row in ([str(k) for k in fields], *([record[k] for k in fields] for record in records)):
            # the csv module quotes "\r" and "\n" only when they are in the line terminator: quote such rows whole
            (quoted if any(c in cell for cell in row for c in "\r\n" if c not in newline) else plain).writerow(row)


_WRITERS = {
    "jsonl": _write_jsonl,
    "json": _write_json,
    "parquet": _write_parquet,
    "csv": _write_csv,
    "tsv": _write_tsv,
    "hf_disk": _write_hf_disk,
}
