"""Detect a record's format and convert it to normalized chat messages.

Every record becomes a list of turns ``[{"role": "system" | "user" | "assistant", "content": str}, ...]``.
The raw record itself is never changed; the messages are a derived view.

Formats and the fields they read (detection looks at the first record, in this order):

``messages``
    ``messages: [{"role", "content"}, ...]`` (OpenAI / Tulu). Roles are ``system``, ``user``, ``assistant``;
    content must be a string. Other keys of a turn (``name``...) are ignored.
``sharegpt``
    ``conversations: [{"from", "value"}, ...]`` (FastChat / ShareGPT). ``human``/``user`` -> user,
    ``gpt``/``assistant``/``chatgpt``/``bard``/``bing``/``model`` -> assistant, ``system`` -> system; turns
    written as ``{"role", "content"}`` are accepted too. An optional top-level ``system`` string becomes
    the first turn. The LIMA variant, ``conversations`` as a list of plain strings, alternates user and
    assistant starting with user.
``alpaca``
    ``instruction`` (required) + optional ``input`` + optional ``output`` (or ``response``, as in GPTeacher).
    The user turn is ``instruction.strip() + "\\n\\n" + input.strip()`` when the stripped input is non-empty,
    else the stripped instruction. The response is kept verbatim; no response field (instruction-only data)
    means no assistant turn. Optional ``system`` (string) and ``history`` (``[[user, assistant], ...]``,
    LLaMA-Factory) come first.
``prompt_completion``
    a prompt field, ``prompt`` or else ``question``, plus an optional response field, the first
    non-null of ``completion``, ``response``, ``answer``, ``output`` (so gsm8k's ``question``/``answer``
    works). ``alpaca`` wins over this format when ``instruction`` exists. Optional ``system`` string,
    which becomes the first turn. Each record is one of TRL's two shapes, told apart by the prompt's type:

    - standard: the prompt is a string (the user turn) and the response a string (the assistant turn);
    - conversational: the prompt is a non-empty list of ``{role, content}`` turns, which may hold system
      turns and earlier exchanges, and the response a list of turns (TRL writes
      ``completion = [{"role": "assistant", "content": ...}]``, as kmq's ``--out-format prompt-completion``
      does); the conversation is the prompt's turns then the completion's, checked like ``messages``.

    A record that mixes the shapes (a list prompt with a string completion, or the reverse) is an error:
    TRL cannot read it either.

A ``None`` value counts as absent for optional fields. Errors raised here name the field and what was
expected; the reader adds the file and line or record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kmq.errors import DataFormatError

FORMATS = ("messages", "sharegpt", "alpaca", "prompt_completion")

#: A lone surrogate code point: valid in a JSON escape (``"\\ud800"``) and a Python str, but not UTF-8, so
#: tokenizers, Parquet and CSV cannot take it. Readers keep it; each consumer that needs UTF-8 decides.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")

Turn = dict[str, str]

MESSAGE_ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
}
PROMPT_FIELDS = ("prompt", "question")
COMPLETION_FIELDS = ("completion", "response", "answer", "output")
SUPPORTED = (
    "messages (messages), sharegpt (conversations), alpaca (instruction/input/output), "
    "prompt_completion (prompt/completion|response as strings or lists of turns, question/answer)"
)


def detect_format(record: Mapping[str, Any]) -> str | None:
    """Return the format whose key field ``record`` has, or None when no format matches."""
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record:
        return "alpaca"
    if any(name in record for name in PROMPT_FIELDS):
        return "prompt_completion"
    return None


def undetectable(source: str, record: Mapping[str, Any]) -> DataFormatError:
    """Build the error for a record that matches no format, listing its fields and the supported formats."""
    return DataFormatError(
        f"Cannot detect the format of {source}: fields found: {list(record)}; supported: {SUPPORTED}. "
        "Pass format=... (--format on the command line) to force one."
    )


def to_messages(record: Mapping[str, Any], fmt: str) -> list[Turn]:
    """Convert one raw record of format ``fmt`` to normalized turns; raise DataFormatError when it does not fit."""
    return _CONVERTERS[fmt](record)


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _require(record: Mapping[str, Any], name: str, expected: type, what: str) -> Any:
    if name not in record:
        raise DataFormatError(f"field {name!r} is missing (expected {what}); fields found: {list(record)}.")
    value = record[name]
    if not isinstance(value, expected):
        hint = " (CSV cells are strings: use JSONL or Parquet for nested fields)" if isinstance(value, str) else ""
        raise DataFormatError(f"field {name!r} is {_type_name(value)}; expected {what}{hint}.")
    return value


def _optional_str(record: Mapping[str, Any], name: str) -> str | None:
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise DataFormatError(f"field {name!r} is {_type_name(value)}; expected a string or null.")
    return value


def _system_turn(record: Mapping[str, Any]) -> list[Turn]:
    system = _optional_str(record, "system")
    return [{"role": "system", "content": system}] if system else []


def _from_messages(record: Mapping[str, Any]) -> list[Turn]:
    turns = _require(record, "messages", list, "a non-empty list of {role, content} objects")
    if not turns:
        raise DataFormatError("field 'messages' is an empty list; expected at least one {role, content} turn.")
    return _chat_turns(turns, "messages")


def _chat_turns(turns: list[Any], name: str) -> list[Turn]:
    """Check a list of ``{role, content}`` turns from field ``name`` and return them as normalized turns."""
    out = []
    for k, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise DataFormatError(f"field {name!r}[{k}] is {_type_name(turn)}; expected a {{role, content}} object.")
        role, content = turn.get("role"), turn.get("content")
        if role not in MESSAGE_ROLES:
            raise DataFormatError(f"field {name!r}[{k}].role is {role!r}; expected one of {list(MESSAGE_ROLES)}.")
        if not isinstance(content, str):
            raise DataFormatError(f"field {name!r}[{k}].content is {_type_name(content)}; expected a string.")
        out.append({"role": role, "content": content})
    return out


def _from_sharegpt(record: Mapping[str, Any]) -> list[Turn]:
    turns = _require(record, "conversations", list, "a non-empty list of {from, value} objects or of strings")
    if not turns:
        raise DataFormatError("field 'conversations' is an empty list; expected at least one turn.")
    head = _system_turn(record)
    if all(isinstance(turn, str) for turn in turns):
        return head + [{"role": ("user", "assistant")[k % 2], "content": text} for k, text in enumerate(turns)]
    return head + [_sharegpt_turn(turn, k) for k, turn in enumerate(turns)]


def _sharegpt_turn(turn: object, k: int) -> Turn:
    if not isinstance(turn, dict):
        raise DataFormatError(
            f"field 'conversations'[{k}] is {_type_name(turn)}; expected a {{from, value}} object "
            "(or every turn a plain string, as in LIMA)."
        )
    speaker = turn.get("from", turn.get("role"))
    content = turn.get("value", turn.get("content"))
    role = SHAREGPT_ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
    if role is None:
        raise DataFormatError(
            f"field 'conversations'[{k}].from is {speaker!r}; expected one of {sorted(SHAREGPT_ROLES)}."
        )
    if not isinstance(content, str):
        raise DataFormatError(f"field 'conversations'[{k}].value is {_type_name(content)}; expected a string.")
    return {"role": role, "content": content}


def _from_alpaca(record: Mapping[str, Any]) -> list[Turn]:
    instruction = _require(record, "instruction", str, "a string").strip()
    extra = (_optional_str(record, "input") or "").strip()
    user = f"{instruction}\n\n{extra}" if extra else instruction
    response = _optional_str(record, "output")
    if response is None:
        response = _optional_str(record, "response")
    turns = _system_turn(record) + _alpaca_history(record) + [{"role": "user", "content": user}]
    if response is not None:
        turns.append({"role": "assistant", "content": response})
    return turns


def _alpaca_history(record: Mapping[str, Any]) -> list[Turn]:
    history = record.get("history")
    if history is None:
        return []
    ok = isinstance(history, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(t, str) for t in pair) for pair in history
    )
    if not ok:
        raise DataFormatError("field 'history' must be a list of [user, assistant] string pairs or null.")
    roles = ("user", "assistant")
    return [{"role": role, "content": text} for pair in history for role, text in zip(roles, pair, strict=True)]


def _from_prompt_completion(record: Mapping[str, Any]) -> list[Turn]:
    name = next((f for f in PROMPT_FIELDS if f in record), PROMPT_FIELDS[0])
    if isinstance(record.get(name), list):
        return _system_turn(record) + _conversational(record, name)
    what = "a string or a list of {role, content} turns (prompt_completion reads 'prompt' or 'question')"
    prompt = _require(record, name, str, what)
    turns = _system_turn(record) + [{"role": "user", "content": prompt}]
    field, response = _response(record)
    if isinstance(response, list):
        raise DataFormatError(
            f"field {field!r} is a list, but field {name!r} is a string; expected a string or null (in TRL's "
            f"conversational prompt-completion both are lists of {{role, content}} turns: make {name!r} one too)."
        )
    if response is not None:
        if not isinstance(response, str):
            raise DataFormatError(f"field {field!r} is {_type_name(response)}; expected a string or null.")
        turns.append({"role": "assistant", "content": response})
    return turns


def _conversational(record: Mapping[str, Any], name: str) -> list[Turn]:
    """TRL's conversational shape: the prompt's turns, then the completion's (see the module docstring)."""
    prompt = record[name]
    if not prompt:
        raise DataFormatError(f"field {name!r} is an empty list; expected at least one {{role, content}} turn.")
    turns = _chat_turns(prompt, name)
    field, response = _response(record)
    if response is None:
        return turns
    if not isinstance(response, list):
        raise DataFormatError(
            f"field {field!r} is {_type_name(response)}, but field {name!r} is a list of turns; expected a list of "
            f'{{role, content}} turns or null, as TRL writes it: [{{"role": "assistant", "content": ...}}].'
        )
    return turns + _chat_turns(response, field)


def _response(record: Mapping[str, Any]) -> tuple[str, Any]:
    """(name, value) of the first non-null response field of a prompt_completion record; value None when none."""
    for field in COMPLETION_FIELDS:
        value = record.get(field)
        if value is not None:
            return field, value
    return COMPLETION_FIELDS[0], None


_CONVERTERS = {
    "messages": _from_messages,
    "sharegpt": _from_sharegpt,
    "alpaca": _from_alpaca,
    "prompt_completion": _from_prompt_completion,
}
