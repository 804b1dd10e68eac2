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
import pyarrow.compute as pc
import pyarrow.json as pj

from kmq.data.formats import COMPLETION_FIELDS, MESSAGE_ROLES, PROMPT_FIELDS, SHAREGPT_ROLES, detect_format
from kmq.data.pool import _BIG, MAX_NUMBER_COLUMNS, JsonlStore, Pool, PoolBuilder
from kmq.errors import KmqError

logger = logging.getLogger(__name__)

#: False: every JSON Lines file is read by the ``json.loads`` reader (benchmarks and tests compare the two).
ENABLED = True
#: bytes of whole lines per pyarrow table (the last line of a chunk is completed from the next read)
CHUNK = 1 << 24
#: pyarrow's block size (its unit of parallel parsing); raised to fit the longest line of a chunk
BLOCK = 1 << 20

#: Python's ``str.strip()`` whitespace (every ``c`` with ``c.isspace()``), for ``pc.utf8_trim``
PY_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + (
    "\u2028\u2029\u202f\u205f\u3000"
)
_CODE = {role: i for i, role in enumerate(MESSAGE_ROLES)}
_USER, _ASSISTANT, _SYSTEM = _CODE["user"], _CODE["assistant"], _CODE["system"]
_SPEAKERS = pa.array(list(SHAREGPT_ROLES))
_SPEAKER_CODES = np.array([_CODE[r] for r in SHAREGPT_ROLES.values()], dtype=np.int8)
_ROLE_SET = pa.array(list(MESSAGE_ROLES))
# literals pyarrow reads as numbers and json.loads rejects (a false hit inside a string only costs the fast path)
_NONSTANDARD = (re.compile(rb"Inf[ \t\r\n]*[,}\]]"), re.compile(rb"-NaN[ \t\r\n]*[,}\]]"))  # literal first: fast
_VALUE_START = re.compile(rb"[:,\[][ \t\r\n]*-?\Z")
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')  # JSON strings (skipped) and brackets
#: lines nested deeper go to json.loads
MAX_DEPTH = 64


class Fallback(Exception):
    """The records need the ``json.loads`` reader (the message says why, for the debug log)."""


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
    """Fallback when a line nests deeper than :data:`MAX_DEPTH` (pyarrow's parser crashes near 100,000 levels;
    json.loads stops near 1,000): counted exactly only on lines with that many ``[`` and ``{`` bytes."""
    if not len(starts):
        return
    opening = np.add.reduceat((a == ord("[")) | (a == ord("{")), starts, dtype=np.int64)
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
    table = pj.read_json(pa.BufferReader(buf), read_options=pj.ReadOptions(use_threads=True, block_size=block))
    if table.num_rows != len(sizes):  # e.g. two objects on one line
        raise Fallback(f"{table.num_rows} records in {len(sizes)} lines")
    return table


# ----------------------------------------------------------------------------------------------- columns


def _add_table(fast: PoolBuilder, table: pa.Table, fmt: str) -> None:
    """Append the chunk's turns, fields, numbers and ids to ``fast`` as :meth:`PoolBuilder.add` would."""
    n = table.num_rows
    row0 = len(fast.messages)
    columns = {name: table.column(name).combine_chunks() for name in table.column_names}
    counts, roles, contents = _assemble(n, _SEGMENTS[fmt](columns, n))
    fast.messages.extend(counts, roles, contents)
    _note_numbers(fast, columns, row0)
    _note_ids(fast, columns.get("id"))


def _note_numbers(fast: PoolBuilder, columns: dict[str, pa.Array], row0: int) -> None:
    numbers = fast._numbers
    for key, col in columns.items():
        if key not in fast.fields:
            fast.fields[key] = None
            if len(numbers) < MAX_NUMBER_COLUMNS:
                numbers[key] = array("d")
        values = numbers.get(key)
        if values is None or pa.types.is_null(col.type):
            continue
        if not (pa.types.is_int64(col.type) or pa.types.is_float64(col.type)):
            numbers[key] = None  # strings, bools, lists: not a number column (all-null columns are typed null)
            continue
        x = col.to_numpy(zero_copy_only=False).astype(np.float64)
        if pa.types.is_float64(col.type):
            real = x[col.is_valid().to_numpy(zero_copy_only=False)]
            if not np.all(np.abs(real[~np.isnan(real)]) < _BIG):  # an int beyond 2**1023 or a float: unknown
                raise Fallback(f"field {key!r} holds a number beyond 2**1023")
        if len(values) < row0:
            values.extend(array("d", [float("nan")]) * (row0 - len(values)))
        values.frombytes(x.tobytes())  # nulls came out as NaN


def _note_ids(fast: PoolBuilder, col: pa.Array | None) -> None:
    if fast.raw_ids is None:
        return
    if col is None or col.null_count:
        fast.raw_ids = None
    elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        fast.raw_ids.extend(col.to_pylist())
    elif pa.types.is_int64(col.type):
        fast.raw_ids.extend(col.cast(pa.string()).to_pylist())
    else:
        raise Fallback(f"ids of type {col.type}")  # str() of floats, bools and lists is Python's own


# ----------------------------------------------------------------------------------------------- turns
# A segment is one part of every record's turns, in order: (counts (n,) int64, roles (m,) int8, contents (m,)).


def _assemble(n: int, segments: list[tuple]) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Interleave the segments record by record: (turns per record, roles, contents as LargeBinary)."""
    counts = np.zeros(n, dtype=np.int64)
    for seg in segments:
        counts += seg[0]
    starts = np.cumsum(counts) - counts
    dest, done = [], np.zeros(n, dtype=np.int64)
    for seg_counts, _, _ in segments:
        first = np.cumsum(seg_counts) - seg_counts  # each record's first turn within the segment
        dest.append(np.repeat(starts + done - first, seg_counts) + np.arange(int(seg_counts.sum())))
        done += seg_counts
    where = np.concatenate(dest) if dest else np.empty(0, np.int64)
    order = np.empty(len(where), dtype=np.int64)
    order[where] = np.arange(len(where))
    roles = np.concatenate([seg[1] for seg in segments])[order] if segments else np.empty(0, np.int8)
    parts = [seg[2].cast(pa.large_string()) for seg in segments]
    contents = pa.concat_arrays(parts).take(pa.array(order)) if parts else pa.array([], pa.large_string())
    return counts, roles.astype(np.int8), contents.view(pa.large_binary())


def _strings(columns: dict[str, pa.Array], name: str) -> pa.Array | None:
    """Column ``name`` when it holds strings (and nulls); None when absent or all null; Fallback otherwise."""
    col = columns.get(name)
    if col is None or pa.types.is_null(col.type):
        return None
    if not pa.types.is_string(col.type):
        raise Fallback(f"field {name!r} of type {col.type}")
    return col


def _one(values: pa.Array, mask: np.ndarray, role: int) -> tuple:
    """A segment of at most one turn per record: ``values`` where ``mask``."""
    taken = values.filter(pa.array(mask))
    return mask.astype(np.int64), np.full(len(taken), role, np.int8), taken


def _system(columns: dict[str, pa.Array], n: int) -> list[tuple]:
    system = _strings(columns, "system")
    if system is None:
        return []
    mask = pc.fill_null(pc.greater(pc.binary_length(system), 0), False).to_numpy(zero_copy_only=False)
    return [_one(system, mask, _SYSTEM)]


def _lengths(lists: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _field(structs: pa.Array, name: str) -> pa.Array | None:
    t = structs.type
    if t.get_field_index(name) < 0:
        return None
    return pc.struct_field(structs, name)


def _chat_turns(lists: pa.Array, *, empty_ok: bool = False) -> tuple:
    """A segment from a list of ``{role, content}`` turns per record (null lists: no turns, else Fallback)."""
    valid = lists.is_valid().to_numpy(zero_copy_only=False)
    if not pa.types.is_list(lists.type) or (not empty_ok and np.any(_lengths(lists)[valid] == 0)):
        raise Fallback("turns that are not a non-empty list")
    flat = pc.list_flatten(lists)
    if pa.types.is_null(flat.type) and not len(flat):
        return _lengths(lists), np.empty(0, np.int8), pa.array([], pa.string())
    if not pa.types.is_struct(flat.type) or flat.null_count:
        raise Fallback("a turn that is not an object")
    role, content = _field(flat, "role"), _field(flat, "content")
    if role is None or content is None or not pa.types.is_string(content.type) or content.null_count:
        raise Fallback("a turn without a string role or content")
    if not pa.types.is_string(role.type):
        raise Fallback("a role that is not a string")
    codes = pc.index_in(role, value_set=_ROLE_SET)
    if codes.null_count:
        raise Fallback("an unknown role")
    return _lengths(lists), codes.to_numpy(zero_copy_only=False).astype(np.int8), content


def _messages(columns: dict[str, pa.Array], n: int) -> list[tuple]:
    turns = columns.get("messages")
    if turns is None or turns.null_count:
        raise Fallback("a record without messages")
    return [_chat_turns(turns)]


def _sharegpt(columns: dict[str, pa.Array], n: int) -> list[tuple]:
    turns = columns.get("conversations")
    if turns is None or turns.null_count or not pa.types.is_list(turns.type) or np.any(_lengths(turns) == 0):
        raise Fallback("a record without conversations")
    flat, counts = pc.list_flatten(turns), _lengths(turns)
    if pa.types.is_string(flat.type):  # LIMA: user, assistant, user...
        if flat.null_count:
            raise Fallback("a null turn")
        position = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
        roles = np.where(position % 2 == 0, _USER, _ASSISTANT).astype(np.int8)
        return [*_system(columns, n), (counts, roles, flat)]
    if not pa.types.is_struct(flat.type) or flat.null_count:
        raise Fallback("a turn that is not an object")
    speaker = _either(flat, "from", "role")
    content = _either(flat, "value", "content")
    if not pc.all(pc.string_is_ascii(speaker)).as_py():
        raise Fallback("a non-ASCII speaker")
    codes = pc.index_in(pc.ascii_lower(speaker), value_set=_SPEAKERS)
    if codes.null_count:
        raise Fallback("an unknown speaker")
    roles = _SPEAKER_CODES[codes.to_numpy(zero_copy_only=False)]
    return [*_system(columns, n), (counts, roles, content)]


def _either(structs: pa.Array, name: str, other: str) -> pa.Array:
    """``turn.get(name, turn.get(other))`` when it is never null (an absent key reads as null in Arrow)."""
    value = _field(structs, name)
    if value is None:
        value = _field(structs, other)
    if value is None or not pa.types.is_string(value.type) or value.null_count:
        raise Fallback(f"turns whose {name!r} is null or not a string")
    return value


def _alpaca(columns: dict[str, pa.Array], n: int) -> list[tuple]:
    instruction = _strings(columns, "instruction")
    if instruction is None or instruction.null_count:
        raise Fallback("a record without an instruction")
    user = pc.utf8_trim(instruction, characters=PY_WHITESPACE)
    extra = _strings(columns, "input")
    if extra is not None:
        extra = pc.utf8_trim(pc.fill_null(extra, ""), characters=PY_WHITESPACE)
        joined = pc.binary_join_element_wise(user, extra, "\n\n")
        user = pc.if_else(pc.greater(pc.binary_length(extra), 0), joined, user)
    answers = [c for c in (_strings(columns, "output"), _strings(columns, "response")) if c is not None]
    segments = [*_system(columns, n), *_history(columns.get("history"), n)]
    segments.append((np.ones(n, np.int64), np.full(n, _USER, np.int8), user))
    if answers:
        answer = pc.coalesce(*answers) if len(answers) > 1 else answers[0]
        segments.append(_one(answer, answer.is_valid().to_numpy(zero_copy_only=False), _ASSISTANT))
    return segments


def _history(history: pa.Array | None, n: int) -> list[tuple]:
    if history is None or pa.types.is_null(history.type):
        return []
    if not pa.types.is_list(history.type):
        raise Fallback("history that is not a list")
    pairs = pc.list_flatten(history)
    if pa.types.is_null(pairs.type) and not len(pairs):
        return []
    if not pa.types.is_list(pairs.type) or pairs.null_count or np.any(_lengths(pairs) != 2):
        raise Fallback("history that is not [user, assistant] pairs")
    texts = pc.list_flatten(pairs)
    if not pa.types.is_string(texts.type) or texts.null_count:
        raise Fallback("history that is not strings")
    roles = np.tile(np.array([_USER, _ASSISTANT], np.int8), len(pairs))
    return [(2 * _lengths(history), roles, texts)]


def _prompt_completion(columns: dict[str, pa.Array], n: int) -> list[tuple]:
    name = next((f for f in PROMPT_FIELDS if f in columns), None)
    prompt = columns.get(name) if name else None
    if prompt is None or prompt.null_count:  # a null prompt: an error, or an absent one next to a question
        raise Fallback("a record without a prompt")
    answers = [columns[f] for f in COMPLETION_FIELDS if f in columns and not pa.types.is_null(columns[f].type)]
    if pa.types.is_string(prompt.type):
        if any(not pa.types.is_string(a.type) for a in answers):
            raise Fallback("a response that is not a string")
        segments = [*_system(columns, n), (np.ones(n, np.int64), np.full(n, _USER, np.int8), prompt)]
        if answers:
            answer = pc.coalesce(*answers) if len(answers) > 1 else answers[0]
            segments.append(_one(answer, answer.is_valid().to_numpy(zero_copy_only=False), _ASSISTANT))
        return segments
    segments = [*_system(columns, n), _chat_turns(prompt)]
    left = np.ones(n, dtype=bool)  # records whose completion is not found yet: the first non-null field's turns
    for answer in answers:
        valid = answer.is_valid().to_numpy(zero_copy_only=False) & left
        if valid.any():
            segments.append(_chat_turns(pc.if_else(pa.array(valid), answer, pa.nulls(n, answer.type)), empty_ok=True))
        left &= ~valid
    return segments


_SEGMENTS = {"messages": _messages, "sharegpt": _sharegpt, "alpaca": _alpaca, "prompt_completion": _prompt_completion}
