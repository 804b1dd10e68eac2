"""CSV and TSV cells that hold JSON text: the columns a pool's format reads as lists (kmq's converted CSV output).

Which columns are decoded is decided on the first row, as the format is (:func:`json_columns`); every other
column stays text, JSON-looking or not. A cell that is not JSON is an error naming the file, line, record id
and column (:func:`decode_cells`).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from kmq.data.formats import COMPLETION_FIELDS, PROMPT_FIELDS, detect_format
from kmq.errors import DataFormatError

#: The CSV/TSV columns that hold JSON text (as kmq's converted CSV output writes them), by the format that reads
#: them, each with (why it is JSON, an example cell) for the error message.
_JSON_COLUMNS = {
    "messages": {
        "messages": ("the messages format reads it as a list of turns", '[{"role": "user", "content": "Hi"}]')
    },
    "sharegpt": {
        "conversations": ("the sharegpt format reads it as a list of turns", '[{"from": "human", "value": "Hi"}]')
    },
    "alpaca": {"history": ("the alpaca format reads it as [user, assistant] pairs", '[["Hi", "Hello!"]]')},
}
_CONVERSATIONAL = "the first row's prompt is a JSON list of turns (TRL's conversational prompt-completion)"
_PROMPT_TURNS = (_CONVERSATIONAL, '[{"role": "user", "content": "Hi"}]')
_COMPLETION_TURNS = (_CONVERSATIONAL, '[{"role": "assistant", "content": "Hello!"}]')


def json_columns(first: dict[str, str], fmt: str | None) -> dict[str, tuple[str, str]]:
    """The columns of a CSV pool whose cells are decoded as JSON, each with (why, an example cell).

    Only the columns the pool's format reads as lists: ``messages``, ``conversations``, alpaca's ``history``,
    and the prompt and completion of TRL's conversational prompt-completion, told from the plain-string
    shape by the first row (its prompt cell is a JSON list of ``{role, ...}`` objects, TRL's own test). Every
    other column stays text, JSON-looking or not; so does everything of a pool read through mapped fields.
    """
    fmt = fmt or detect_format(first)
    if fmt != "prompt_completion":
        return {name: example for name, example in _JSON_COLUMNS.get(fmt, {}).items() if name in first}
    prompt = next((name for name in PROMPT_FIELDS if name in first), None)
    if prompt is None or not _is_turn_list(first[prompt]):
        return {}
    completion = next((name for name in COMPLETION_FIELDS if name in first), None)
    return {prompt: _PROMPT_TURNS} | ({} if completion is None else {completion: _COMPLETION_TURNS})


def _is_turn_list(text: str) -> bool:
    if not text.lstrip().startswith("["):
        return False
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict) and "role" in value[0]


def decode_cells(
    row: dict[str, str], columns: dict[str, tuple[str, str]], path: str, line: int, kind: str
) -> dict[str, Any]:
    """``row`` with the cells of ``columns`` decoded from JSON text (an empty cell is null); the row itself when
    there are none. A cell that is not JSON is an error naming the file, line, record id and column."""
    if not columns:
        return row
    out: dict[str, Any] = dict(row)
    where = f"{path} line {line}" + (f" (id {row['id']!r})" if row.get("id") else "")
    for name, (reason, example) in columns.items():
        text = row[name]
        if text == "":
            out[name] = None
            continue
        try:
            out[name] = json.loads(text)
        except ValueError as err:
            why = f"{err.msg} at character {err.pos}" if isinstance(err, json.JSONDecodeError) else str(err)
            raise DataFormatError(
                f"{where}, column {name!r}: the cell is not valid JSON ({why}): {_preview(text)}. kmq reads this "
                f"{kind} column as JSON text, as it writes it ({reason}): write the cell as JSON, such as {example}, "
                "or leave it empty for none."
            ) from err
        except RecursionError:
            raise DataFormatError(
                f"{where}, column {name!r}: the cell's JSON is nested deeper than kmq's JSON reader "
                f"supports (about {sys.getrecursionlimit()} levels). Flatten that cell or remove the row."
            ) from None
    return out


def _preview(text: str, width: int = 60) -> str:
    return repr(text if len(text) <= width else text[:width] + "...")
