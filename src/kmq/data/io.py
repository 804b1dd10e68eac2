"""Read pools from files, folders, hub names and in-memory records.

Reading (:func:`read_pool`), by what ``source`` is:

- ``.jsonl`` / ``.ndjson`` (and ``.gz``): one JSON object per line; blank lines are skipped.
- ``.json`` (and ``.json.gz``): a JSON array of objects, an object with a single list-valued key
  (``{"data": [...]}``, also on one line), or JSON Lines when the first line is a complete record.
- ``.parquet``; ``.csv`` and ``.tsv`` (header row, every value a string, read by Python's ``csv`` module:
  comma- or tab-separated, quoted as in CSV; the line ending is kept for writing). The columns the format
  reads as lists hold JSON text, as kmq's converted CSV output writes them, and are decoded for the chat
  view (an empty cell is null; a cell that is not JSON is an error naming the line and column):
  ``messages``, ``conversations``, alpaca's ``history``, and ``prompt`` and ``completion`` when the first
  row's prompt is a JSON list of turns (TRL's conversational prompt-completion). Every other column stays
  text, and the raw records keep the cells as read, so a subset in the input's own format is written back
  unchanged.
- ``.zip`` holding one such file (JSON Lines, JSON, CSV, TSV or Parquet; folders, dot files and
  ``__MACOSX/`` entries are ignored), as the datakit's ``mbpp.test.zip``: it is read as that file, its
  container is the inner one plus ``.zip`` (``"jsonl.zip"``), and a subset is written in the inner file's
  format (:mod:`kmq.data.write`). A zip with several candidate files, or none, is an error listing them.
- a directory with ``dataset_info.json``/``state.json`` or ``dataset_dict.json``: a Hugging Face
  ``save_to_disk`` folder (a DatasetDict needs ``split``, default ``"train"``).
- a string that is not an existing path and looks like ``owner/name``: a Hugging Face hub dataset,
  loaded with ``datasets.load_dataset(name, split=split or "train")``.
- a list or tuple of dicts, a pandas DataFrame, a ``datasets.Dataset`` or ``DatasetDict``: an in-memory
  pool (:mod:`kmq.data.memory`).

Writing is :mod:`kmq.data.write`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import json
import logging
import os
import re
import sys
import zipfile
import zlib
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from kmq._deps import require
from kmq.data._cells import decode_cells, json_columns
from kmq.data._jsonl_arrow import read_jsonl_arrow
from kmq.data.formats import FORMATS, detect_format
from kmq.data.memory import add_table, is_in_memory, read_memory
from kmq.data.pool import ArrowStore, JsonlStore, ListStore, Pool, PoolBuilder
from kmq.errors import DataFormatError, EmptyPoolError, InvalidParameterError, MissingArtifactError

__all__ = ["FORMATS", "in_memory", "load_pool", "read_pool", "read_records", "source_container"]

logger = logging.getLogger(__name__)

BASES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv")
_SUPPORTED = (
    ".jsonl, .ndjson, .json (each optionally .gz), .parquet, .csv, .tsv, a .zip holding one of those, "
    "a Hugging Face save_to_disk folder"
)
_NO_GZIP = (".parquet", ".csv", ".tsv")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_IN_MEMORY_NAME = re.compile(r"<(list|tuple) of \d+ records>|<DataFrame \d+x\d+>|<datasets\.Dataset.*>|<records>")
HF_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_CHUNK = 1 << 24
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # JSON strings (skipped) and brackets


# ----------------------------------------------------------------------------------------------- reading


def in_memory(pool: Any) -> bool:
    """Whether an API caller passed the pool itself (a Pool, records, a DataFrame, a Dataset), not a path or name."""
    return not isinstance(pool, (str, os.PathLike))


def load_pool(cfg: Any, given: Any = None) -> Pool:
    """The pool a run reads: ``given`` when it is a :class:`Pool`, in-memory records read as one, else
    ``cfg.pool`` (a path or hub name) read with the config's ``format``, ``split`` and ``fields``."""
    if isinstance(given, Pool):
        return given
    if given is None:
        if not cfg.pool:
            raise InvalidParameterError("No pool given: pass a path or a Hugging Face dataset name.")
        given = cfg.pool
    return read_pool(given, format=cfg.format, split=cfg.split, fields=cfg.fields)


def read_pool(source: Any, *, format: str = "auto", split: str | None = None, fields: Any = None) -> Pool:
    """Read an instruction pool and normalize every record to chat messages.

    Parameters
    ----------
    source : str, PathLike, list of dict, pandas.DataFrame or datasets.Dataset
        A file (see the module docstring for the containers), a Hugging Face ``save_to_disk`` folder,
        a hub dataset name ``owner/name``, or records in memory (:mod:`kmq.data.memory`): a list or tuple
        of dicts, a DataFrame, a ``datasets.Dataset`` or ``DatasetDict``.
    format : {"auto", "messages", "sharegpt", "alpaca", "prompt_completion"}, default "auto"
        Record format; "auto" detects it from the fields of the first record (see :mod:`kmq.data.formats`).
    split : str or None, default None
        Split of a DatasetDict (folder, hub dataset or in memory); None means ``"train"``. Ignored otherwise.
    fields : FieldMap, mapping or None, default None
        Which record fields hold the prompt, response, system prompt or turns, for records no format fits:
        ``FieldMap(prompt="Question", response="Best Answer")``, the same as a mapping, or the config's
        ``fields`` section (see :mod:`kmq.data.fields`). It replaces format detection (``format`` must stay
        "auto"); the records are kept and written unchanged.

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
        (file, line or record, field, what was expected), an undetectable format, or a mapped field that no
        record has (the file and the fields it does have).
    EmptyPoolError
        The input has no records.
    InvalidParameterError
        ``source`` is none of the types above, or ``fields`` is malformed or given with a ``format``.
    """
    if not isinstance(source, (str, os.PathLike)):
        if is_in_memory(source):
            return read_memory(source, format=format, split=split, fields=fields)
        raise InvalidParameterError(
            f"The 'source' parameter of read_pool must be a path, a hub dataset name, a list of dicts, a pandas "
            f"DataFrame or a datasets.Dataset. Got {type(source).__module__}.{type(source).__qualname__} instead."
        )
    builder = PoolBuilder(str(source), format, fields=fields)
    path = Path(source)
    if path.is_dir():
        return _read_hf_disk(path, builder, split)
    if path.is_file():
        return _read_file(path, builder)
    base, _ = split_suffix(path.name)
    if isinstance(source, str) and base is None and _HUB_NAME.match(source):
        return _read_hf_hub(source, builder, split)
    if isinstance(source, str) and _IN_MEMORY_NAME.fullmatch(source):
        raise MissingArtifactError(
            f"Pool not found: {source} names an in-memory pool (records, a DataFrame or a datasets.Dataset given "
            "to the Python API), which cannot be read again from its name. Pass the pool itself, or save it to a "
            "file and pass that."
        )
    raise MissingArtifactError(
        f"Pool not found: {source}. Pass an existing file ({_SUPPORTED}) or a hub dataset name like owner/name."
    )


def read_records(path: str | os.PathLike) -> Pool:
    """Read the file ``path`` as raw records: no format detection, no conversion to chat messages.

    Every file container :func:`read_pool` takes is read (JSON Lines, JSON, Parquet, CSV, TSV, ``.gz``, a
    ``.zip`` holding one); folders and hub names are not. The pool has the records' ids (their ``id`` field
    when every record has a unique one, else their 0-based positions), their fields (:meth:`Pool.columns`,
    :meth:`Pool.column`) and empty ``messages``; eval sets (:func:`kmq.shape.load_eval_set`) are read so.

    Raises
    ------
    MissingArtifactError
        ``path`` is not an existing file.
    DataFormatError
        Unsupported extension, malformed JSON (file and line), or a record that is not a JSON object.
    EmptyPoolError
        The file has no records.
    """
    file = Path(path)
    if not file.is_file():
        raise MissingArtifactError(
            f"File not found: {path}. Pass an existing .jsonl, .ndjson, .json (each optionally .gz), .parquet, .csv "
            "or .tsv file, or a .zip holding one."
        )
    return _read_file(file, _RawRecords(str(path)))


class _RawRecords(PoolBuilder):
    """A :class:`PoolBuilder` that keeps the records as read: no format detection, only ids and field names."""

    def add(self, record: Any, at: int) -> None:
        if not isinstance(record, dict):
            raise DataFormatError(
                f"{self.source} {self.unit} {at}: the record is {type(record).__name__}; expected a JSON object."
            )
        self.messages.append([])
        self._note_fields(record)


def source_container(source: Any) -> str | None:
    """The :attr:`~kmq.data.Pool.container` that :func:`read_pool` will give ``source``, guessed without reading it.

    None when it cannot be told (a missing path, an unknown extension, a folder that is not a dataset): then
    :func:`read_pool` itself raises. A ``.json`` file is guessed ``"json"`` though it may hold JSON Lines.
    """
    if not isinstance(source, (str, os.PathLike)):
        return "memory" if is_in_memory(source) else None
    path = Path(source)
    if path.is_dir():
        return "hf_disk" if any((path / m).is_file() for m in HF_MARKERS) else None
    base, gz = split_suffix(path.name)
    if path.is_file():
        if path.name.lower().endswith(".zip"):
            try:
                base = split_suffix(_zip_member(path))[0]
            except DataFormatError:
                return None
            return {".ndjson": "jsonl"}.get(base, base[1:]) + ".zip"
        if base is None or (gz and base in _NO_GZIP):
            return None
        return {".ndjson": "jsonl"}.get(base, base[1:]) + (".gz" if gz else "")
    return "hf_hub" if isinstance(source, str) and base is None and _HUB_NAME.match(source) else None


def split_suffix(name: str) -> tuple[str | None, bool]:
    """Return (base extension among _BASES or None, whether the name ends with .gz)."""
    lower = name.lower()
    gz = lower.endswith(".gz")
    stem = lower[:-3] if gz else lower
    return next((b for b in BASES if stem.endswith(b)), None), gz


@dataclass(frozen=True)
class Src:
    """A file to read: ``path`` on disk, gzip-compressed or not, or the ``member`` of the zip file ``path``.

    Its ``str`` names it in messages: ``pool.jsonl``, or ``mbpp.test.zip (mbpp.test.jsonl)``.
    """

    path: Path
    gz: bool = False
    member: str | None = None

    def __str__(self) -> str:
        return str(self.path) if self.member is None else f"{self.path} ({self.member})"

    @property
    def name(self) -> str:
        return self.path.name


def _read_file(path: Path, builder: PoolBuilder) -> Pool:
    if path.name.lower().endswith(".zip"):
        member = _zip_member(path)
        base, _ = split_suffix(member)
        src, container, suffix = Src(path, member=member), {".ndjson": "jsonl"}.get(base, base[1:]) + ".zip", ".zip"
    else:
        base, gz = split_suffix(path.name)
        if base is None or (gz and base in _NO_GZIP):
            kind = "".join(path.suffixes) or "(no extension)"
            raise DataFormatError(f"{path}: unsupported file type {kind}; supported: {_SUPPORTED}.")
        src, container, suffix = Src(path, gz), None, base + (".gz" if gz else "")
    if base == ".parquet":
        return _read_parquet(src, builder, container)
    if base in (".csv", ".tsv"):
        return _read_csv(src, builder, container, delimiter="\t" if base == ".tsv" else ",")
    if base == ".json" and not _looks_like_jsonl(src):
        return _read_json(src, builder, suffix, container)
    return _read_jsonl(src, builder, suffix, container)


def _zip_member(path: Path) -> str:
    """The one file of the zip ``path`` kmq can read; an error lists the members when there are several or none."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [info.filename for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, OSError) as err:
        raise DataFormatError(f"{path}: not a readable zip file ({err}). Fetch it again, or unzip it.") from err
    usable = [
        name
        for name in names
        if not name.startswith("__MACOSX/")
        and not name.rsplit("/", 1)[-1].startswith(".")
        and split_suffix(name)[0] is not None
        and not split_suffix(name)[1]
    ]
    if len(usable) == 1:
        return usable[0]
    if usable:
        raise DataFormatError(
            f"{path} holds {len(usable)} files kmq could read: {usable}. kmq reads a zip with one data file: "
            "unzip it and pass the file you mean."
        )
    raise DataFormatError(
        f"{path} holds no file kmq can read (members: {names[:20]}{' ...' if len(names) > 20 else ''}); a zip pool "
        "holds one .jsonl, .ndjson, .json, .csv, .tsv or .parquet file."
    )


@contextmanager
def _open(src: Src) -> Iterator[BinaryIO]:
    """Open for reading; a ``.gz`` that is not gzip, or is truncated or corrupt, is a DataFormatError."""
    path, gz = src.path, src.gz
    try:
        if src.member is not None:
            with zipfile.ZipFile(path) as archive, archive.open(src.member) as fh:
                yield fh
            return
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            yield fh
    except zipfile.BadZipFile as err:
        raise DataFormatError(f"{src}: corrupt zip data ({err}). Fetch the file again.") from err
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
        stream = "zip member" if src.member is not None else "gzip stream"
        what = f"is truncated (the {stream} ends early)" if isinstance(err, EOFError) else f"is corrupt ({err})"
        raise DataFormatError(f"{src} {what}. Recompress or download the file again.") from err


def _looks_like_jsonl(src: Src) -> bool:
    """A ``.json`` file holds JSON Lines when its first line is a complete object that is a record.

    A first line that is an object with a single list-valued key and no record format (``{"data": [...]}``
    written on one line) is a wrapped array, read as one JSON document.
    """
    with _open(src) as fh:
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


def _too_deep(path: Src, data: bytes, lineno: int | None = None) -> DataFormatError:
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


def _read_jsonl(path: Src, builder: PoolBuilder, suffix: str, container: str | None) -> Pool:
    pool = read_jsonl_arrow(path, builder, _open, suffix, container)  # None: the records need json.loads
    return pool if pool is not None else _read_jsonl_lines(path, builder, suffix, container)


def _read_jsonl_lines(path: Src, builder: PoolBuilder, suffix: str, container: str | None) -> Pool:
    builder.unit = "line"
    digest, offsets, lengths = hashlib.sha256(), array("q"), array("q")
    with _open(path) as fh:
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
    fields = list(builder.fields)
    store = JsonlStore(
        path.path, compressed=path.gz, member=path.member, offsets=offsets, lengths=lengths, fields=fields
    )
    container = container or ("jsonl.gz" if path.gz else "jsonl")
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


def _bad_line(path: Src, lineno: int, line: bytes, err: ValueError) -> str:
    if isinstance(err, json.JSONDecodeError):
        hint = " (the file looks like a JSON array: name it .json)" if lineno == 1 and line.strip() == b"[" else ""
        return f"{path} line {lineno}, column {err.colno}: invalid JSON ({err.msg}){hint}. Fix or remove that line."
    return f"{path} line {lineno}: not valid UTF-8 JSON ({err}). Fix or remove that line."


def _read_json(path: Src, builder: PoolBuilder, suffix: str, container: str | None) -> Pool:
    with _open(path) as fh:
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
    container = container or ("json.gz" if path.gz else "json")
    return builder.build(container=container, content_hash=digest, store=ListStore(value), layout=layout)


def _unwrap(path: Src, value: dict) -> tuple[str, list]:
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


def _read_csv(path: Src, builder: PoolBuilder, container: str | None, *, delimiter: str = ",") -> Pool:
    builder.unit = "line"
    kind = "TSV" if delimiter == "\t" else "CSV"
    with _open(path) as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataFormatError(f"{path}: not UTF-8 text ({err}). Save the {kind} as UTF-8.") from err
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    fields = reader.fieldnames
    if not fields:
        raise EmptyPoolError(f"{path} is empty; a {kind} pool needs a header row and at least one record.")
    if len(set(fields)) != len(fields):
        raise DataFormatError(f"{path} line 1: the header repeats a column name: {fields}. Make the names unique.")
    records = []
    columns: dict[str, tuple[str, str]] | None = None
    try:
        for row in reader:
            if None in row or None in row.values():
                raise DataFormatError(
                    f"{path} line {reader.line_num}: the row has a different number of cells than the header "
                    f"({len(fields)} columns). Quote cells that contain {'tabs' if kind == 'TSV' else 'commas'} "
                    "or newlines."
                )
            if columns is None:  # decided on the first row, as the format is
                columns = json_columns(row, builder.format)
            builder.add(decode_cells(row, columns, str(path), reader.line_num, kind), reader.line_num)
            records.append(row)  # the raw cells: what a subset in the input's own format writes back
    except csv.Error as err:
        raise DataFormatError(f"{path} line {reader.line_num}: malformed {kind} ({err}).") from err
    own = kind.lower()
    layout = {"suffix": f".{own}" if container is None else ".zip", "fieldnames": fields, "newline": _newline(data)}
    return builder.build(
        container=container or own, content_hash=hashlib.sha256(data), store=ListStore(records), layout=layout
    )


def _newline(data: bytes) -> str:
    """The line ending of a CSV file's header row: ``"\\r\\n"``, ``"\\n"`` or (old Mac files) ``"\\r"``."""
    end = data.find(b"\n")
    if end < 0:
        return "\r" if b"\r" in data else "\n"
    return "\r\n" if data[end - 1 : end] == b"\r" else "\n"


def _read_parquet(path: Src, builder: PoolBuilder, container: str | None) -> Pool:
    digest = hashlib.sha256()
    data = None if path.member is None else bytearray()
    with _open(path) as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            if data is not None:
                data += chunk
    try:
        table = pq.read_table(path.path if data is None else pa.BufferReader(bytes(data)))
    except (pa.ArrowException, OSError) as err:
        raise DataFormatError(f"{path}: not a readable Parquet file ({err}).") from err
    add_table(table, builder)
    layout = {"suffix": ".parquet" if container is None else ".zip"}
    return builder.build(container=container or "parquet", content_hash=digest, store=ArrowStore(table), layout=layout)


def _read_hf_disk(path: Path, builder: PoolBuilder, split: str | None) -> Pool:
    if not any((path / marker).is_file() for marker in HF_MARKERS):
        raise DataFormatError(
            f"{path} is a directory but not a Hugging Face save_to_disk folder (no {', '.join(HF_MARKERS)}). "
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
    add_table(table, builder)
    ident = getattr(dataset, "_fingerprint", None) or json.dumps(dataset.info.to_dict(), sort_keys=True, default=str)
    digest = hashlib.sha256(f"hf:{ident}:{split}:{dataset.num_rows}".encode())
    store = ArrowStore(table, dataset)
    return builder.build(container=container, content_hash=digest, store=store, layout={"suffix": ""})
