"""A chunk of JSON Lines records, as pyarrow columns, to normalized turns with Arrow compute (no per-record Python).

:func:`record_turns` does what :func:`kmq.data.formats.to_messages` does record by record, for the four formats,
or raises :class:`Fallback` where it cannot promise the same turns: anything that would be an error, and a
null that may stand for an absent field (Arrow reads both as null; the formats tell them apart in a few
places, such as ``turn.get("from", turn.get("role"))``). Each format builds *segments*, one part of every
record's turns in order (a system turn, the history, the user turn, ...), which :func:`_assemble` interleaves.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kmq.data.formats import COMPLETION_FIELDS, MESSAGE_ROLES, PROMPT_FIELDS, SHAREGPT_ROLES

#: Python's ``str.strip()`` whitespace (every ``c`` with ``c.isspace()``), for ``pc.utf8_trim``
PY_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + (
    "\u2028\u2029\u202f\u205f\u3000"
)
_CODE = {role: i for i, role in enumerate(MESSAGE_ROLES)}
_USER, _ASSISTANT, _SYSTEM = _CODE["user"], _CODE["assistant"], _CODE["system"]
_SPEAKERS = pa.array(list(SHAREGPT_ROLES))
_SPEAKER_CODES = np.array([_CODE[r] for r in SHAREGPT_ROLES.values()], dtype=np.int8)
_ROLE_SET = pa.array(list(MESSAGE_ROLES))


class Fallback(Exception):
    """The records need the ``json.loads`` reader (the message says why, for the debug log)."""


def record_turns(columns: dict[str, pa.Array], n: int, fmt: str) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """The turns of ``n`` records of format ``fmt`` given as their top-level columns: (turns per record, shape
    (n,) int64; role codes into ``MESSAGE_ROLES``, (turns,) int8; contents, a LargeBinaryArray of UTF-8)."""
    return _assemble(n, _SEGMENTS[fmt](columns, n))


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
