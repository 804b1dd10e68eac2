"""JSON Lines read by ``pyarrow.json`` into Arrow columns, the turns built with Arrow compute (no per-record Python).

:func:`read_jsonl_arrow` gives the same :class:`~kmq.data.Pool` as the line-by-line ``json.loads`` reader of
:mod:`kmq.data.io` (texts, ids, fields, numbers, format, offsets, fingerprint), or None whenever it cannot
promise that: a line pyarrow rejects (malformed JSON, a lone surrogate, mixed types in a column, a duplicate
key), a line ``json.loads`` would reject but pyarrow takes (``Inf``, ``-NaN``, invalid UTF-8, two objects on
one line), a value the vectorised conversion cannot tell from an error (null where a field may be absent, a
turn with both ``from`` and ``role``), or anything that would be an error. The caller then reads the file with
the ``json.loads`` reader, which gives the user its message with file, line and field.

The file is read in chunks of whole lines (:data:`CHUNK` bytes); each chunk is one ``pyarrow.json.read_json``
table with its own inferred schema (so a field or a type that first appears late in the file is no error), is
converted to turns and dropped. No explicit schema is passed: pyarrow adds every field of an explicit schema to
every table, present in the records or not, and the fields a pool's records hold (:meth:`Pool.columns`) could
no longer be told; inference is as strict (a number where a string was is an error, not a conversion).

Vectorised: ``messages``, ``sharegpt`` (turn objects or LIMA's plain strings, the top-level ``system``),
``alpaca`` (``input``, ``output``/``response``, ``system``, ``history``) and ``prompt_completion`` (string
prompts, and TRL's conversational lists of turns). Mapped fields (``fields=``) use the ``json.loads`` reader.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from array import array
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from kmq.data._arrow_turns import Fallback, record_turns
from kmq.data.formats import detect_format
from kmq.data.pool import _BIG, JsonlStore, Pool, PoolBuilder
from kmq.errors import KmqError

logger = logging.getLogger(__name__)

#: False: every JSON Lines file is read by the ``json.loads`` reader (benchmarks and tests compare the two).
ENABLED = True
#: bytes of whole lines per pyarrow table (the last line of a chunk is completed from the next read)
CHUNK = 1 << 24
#: pyarrow's block size (its unit of parallel parsing); raised to fit the longest line of a chunk
BLOCK = 1 << 20
#: whether pyarrow parses the blocks of a chunk on its thread pool
THREADS = True

# literals pyarrow reads as numbers and json.loads rejects (a false hit inside a string only costs the fast path)
_NONSTANDARD = (re.compile(rb"Inf[ \t\r\n]*[,}\]]"), re.compile(rb"-NaN[ \t\r\n]*[,}\]]"))  # literal first: fast
_VALUE_START = re.compile(rb"[:,\[][ \t\r\n]*-?\Z")
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # JSON strings (skipped) and brackets
#: lines nested deeper go to json.loads (which stops near 1,000 levels, less the caller's stack)
MAX_DEPTH = 256


def read_jsonl_arrow(src: Any, builder: PoolBuilder, opener: Any, suffix: str, container: str | None) -> Pool | None:
    """Read the JSON Lines ``src`` (an :class:`kmq.data.io.Src`) with pyarrow; None when the caller must read
    it with ``json.loads`` (module docstring). ``builder`` is only read (its source and forced format);
    ``opener(src)`` opens the decompressed byte stream."""
    if not ENABLED or type(builder) is not PoolBuilder or builder.field_map is not None:
        return None
    import hashlib

    fast = PoolBuilder(builder.source, builder.format or "auto", unit="line")
    digest, offsets, lengths = hashlib.sha256(), array("q"), array("q")
    try:
        with opener(src) as fh:
            for buf, starts, sizes in _chunks(fh, digest):
                if not len(starts):
                    continue
                if fast.format is None:
                    fast.format = _detect(buf, int(starts[0]), int(sizes[0]))
                _add_table(fast, _parse(buf, sizes), fast.format)
                offsets.frombytes(starts.astype(np.int64).tobytes())
                lengths.frombytes(sizes.astype(np.int64).tobytes())
    except (Fallback, pa.ArrowException, ValueError, KmqError, OSError, EOFError) as err:
        logger.debug("%s: read with json.loads (%s: %s)", src, type(err).__name__, err)
        return None
    if not len(offsets):
        return None
    store = JsonlStore(
        src.path, compressed=src.gz, member=src.member, offsets=offsets, lengths=lengths, fields=list(fast.fields)
    )
    container = container or ("jsonl.gz" if src.gz else "jsonl")
    return fast.build(container=container, content_hash=digest, store=store, layout={"suffix": suffix})


# ----------------------------------------------------------------------------------------------- lines


def _chunks(fh: Any, digest: Any) -> Any:
    """Yield (bytes of whole lines, absolute byte offsets of their non-blank lines, those lines' lengths)."""
    rest, base, first = b"", 0, True
    while True:
        data = fh.read(CHUNK)
        digest.update(data)
        if first:
            first = False
            if data.startswith(codecs.BOM_UTF8):
                data, base = data[3:], 3
        buf = rest + data if rest else data
        if not data:
            if buf:
                yield _lines(buf, base)
            return
        cut = buf.rfind(b"\n") + 1
        if cut == 0:
            rest = buf
            continue
        rest = buf[cut:]
        out = _lines(buf[:cut], base)
        base += cut
        yield out


def _lines(buf: bytes, base: int) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The non-blank lines of ``buf`` (whole lines) as in the ``json.loads`` reader; Fallback where it fails."""
    _check_bytes(buf)
    a = np.frombuffer(buf, dtype=np.uint8)
    nl = np.flatnonzero(a == 10)
    starts = np.concatenate([[0], nl + 1])
    ends = np.concatenate([nl, [len(a)]])
    if ends[-1] == starts[-1]:  # nothing after the last newline
        starts, ends = starts[:-1], ends[:-1]
    sizes = ends - starts
    keep = sizes > 0
    odd = np.flatnonzero(keep & (a[np.minimum(starts, len(a) - 1)] != ord("{")))
    for i in odd.tolist():  # leading whitespace (rare): blank, or an object after it, or not a record at all
        line = buf[starts[i] : ends[i]].strip()
        if not line:
            keep[i] = False
        elif not line.startswith(b"{"):
            raise Fallback("a line that is not a JSON object")
    starts, sizes = starts[keep], sizes[keep]
    _check_depth(buf, a, starts, sizes)
    return buf, starts + base, sizes


def _check_depth(buf: bytes, a: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> None:
    """Fallback when a line nests deeper than :data:`MAX_DEPTH` (pyarrow's parser crashes near 100,000 levels),
    counted exactly only on lines with more ``[`` and ``{`` bytes than that."""
    if not len(starts):
        return
    brackets = np.flatnonzero((a == ord("[")) | (a == ord("{")))  # few: one or two per turn
    opening = np.diff(np.searchsorted(brackets, np.append(starts, starts[-1] + sizes[-1])))
    for i in np.flatnonzero(opening > MAX_DEPTH).tolist():
        depth = best = 0
        for token in _TOKENS.findall(buf, int(starts[i]), int(starts[i] + sizes[i])):
            if token in (b"[", b"{"):
                depth += 1
                best = max(best, depth)
            elif token in (b"]", b"}"):
                depth -= 1
        if best > MAX_DEPTH:
            raise Fallback("deeply nested")


def _check_bytes(buf: bytes) -> None:
    """Fallback unless ``buf`` is valid UTF-8 (pyarrow does not check) without the literals json.loads rejects."""
    if not buf.isascii():
        offsets = pa.py_buffer(np.array([0, len(buf)], dtype=np.int64).tobytes())
        try:
            pa.LargeStringArray.from_buffers(1, offsets, pa.py_buffer(buf)).validate(full=True)
        except pa.ArrowInvalid:
            raise Fallback("not valid UTF-8") from None
    for literal, pattern in zip((b"Inf", b"-NaN"), _NONSTANDARD, strict=True):
        if literal not in buf:
            continue
        for match in pattern.finditer(buf):
            start = match.start() + (literal == b"-NaN")
            if _VALUE_START.search(buf, max(0, start - 64), start):
                raise Fallback("Inf or -NaN")


def _detect(buf: bytes, start: int, size: int) -> str:
    """The format of the first record (one ``json.loads``, as the other reader detects it)."""
    record = json.loads(buf[start : start + size].decode("utf-8"))
    fmt = detect_format(record) if isinstance(record, dict) else None
    if fmt is None:
        raise Fallback("format not detected")
    return fmt


def _parse(buf: bytes, sizes: np.ndarray) -> pa.Table:
    block = max(BLOCK, 2 * int(sizes.max()) + 64)
    table = pj.read_json(pa.BufferReader(buf), read_options=pj.ReadOptions(use_threads=THREADS, block_size=block))
    if table.num_rows != len(sizes):  # e.g. two objects on one line
        raise Fallback(f"{table.num_rows} records in {len(sizes)} lines")
    return table


# ----------------------------------------------------------------------------------------------- columns


def _add_table(fast: PoolBuilder, table: pa.Table, fmt: str) -> None:
    """Append the chunk's turns, fields, numbers and ids to ``fast`` as :meth:`PoolBuilder.add` would."""
    n = table.num_rows
    row0 = len(fast.messages)
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    counts, roles, contents = record_turns(columns, n, fmt)
    fast.messages.extend(counts, roles, contents)
    _note_numbers(fast, columns, row0)
    _note_ids(fast, columns.get("id"))


def _note_numbers(fast: PoolBuilder, columns: dict[str, pa.Array], row0: int) -> None:
    for key, col in columns.items():
        values = fast.number_column(key, row0)
        if values is None or pa.types.is_null(col.type):
            continue
        if not (pa.types.is_int64(col.type) or pa.types.is_float64(col.type)):
            fast._numbers[key] = None  # strings, bools, lists: not a number column (all-null columns are typed null)
            continue
        x = col.to_numpy(zero_copy_only=False).astype(np.float64)
        if pa.types.is_float64(col.type):
            real = x[col.is_valid().to_numpy(zero_copy_only=False)]
            if not np.all(np.abs(real[~np.isnan(real)]) < _BIG):  # an int beyond 2**1023 or a float: unknown
                raise Fallback(f"field {key!r} holds a number beyond 2**1023")
        values.frombytes(x.tobytes())  # nulls came out as NaN


def _note_ids(fast: PoolBuilder, col: pa.Array | None) -> None:
    if not fast.ids.ok:
        return
    if col is None or col.null_count:
        fast.ids.drop()
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_int64(col.type):
        fast.ids.extend(col.cast(pa.string()))
    else:
        raise Fallback(f"ids of type {col.type}")  # str() of floats, bools and lists is Python's own
