"""Explicit field mapping: which fields of a record hold the prompt, the response, the system prompt or the turns.

For pools no format of :mod:`kmq.data.formats` fits, such as TruthfulQA (``Question`` / ``Best Answer``),
WizardLM's testset (``Instruction``), MT-Bench (``turns``) or a user's CSV. A :class:`FieldMap` replaces
format detection: the pool's :attr:`~kmq.data.Pool.format` is ``"fields"``, and the records themselves are
kept and written unchanged (the mapping only builds the chat view).

Each record becomes, in this order:

- a system turn from ``system`` when the value is a non-empty string (null or absent: none);
- the turns of ``messages``: a non-empty list whose items are ``{role, content}`` objects (roles ``system``,
  ``user``, ``assistant``), ``{from, value}`` objects (ShareGPT speakers), or plain strings, which are user
  turns (MT-Bench's ``turns``); or else one user turn from ``prompt`` (a string, kept verbatim);
- an assistant turn from ``response`` when the value is a string (null or absent: none, as in
  instruction-only data).

``prompt`` or ``messages`` is required, not both. A mapped field that no record has is an error that
names the file and the fields it does have; a record that lacks the prompt (or messages) field while others
have it is an error naming that record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kmq.data.formats import MESSAGE_ROLES, SHAREGPT_ROLES, Turn
from kmq.errors import DataFormatError, InvalidParameterError

__all__ = ["FIELD_ROLES", "FieldMap"]

#: the mappable roles, each with the command-line flag that sets it
FIELD_ROLES = {
    "prompt": "--prompt-field",
    "response": "--response-field",
    "system": "--system-field",
    "messages": "--messages-field",
}


class MissingFieldError(DataFormatError):
    """A record lacks its required mapped field (the reader decides whether no record has it)."""

    def __init__(self, role: str, name: str) -> None:
        super().__init__(f"the record has no field {name!r} ({_flag(role)})")
        self.role, self.name = role, name


def _flag(role: str) -> str:
    return f"fields.{role}, {FIELD_ROLES[role]} on the command line"


@dataclass(frozen=True)
class FieldMap:
    """Names of the record fields that hold each part of a conversation (see the module docstring).

    Parameters
    ----------
    prompt : str, optional
        Field with the user's turn, a string.
    response : str, optional
        Field with the assistant's answer, a string or null.
    system : str, optional
        Field with a system prompt, a string or null.
    messages : str, optional
        Field with a list of turns (``{role, content}``, ``{from, value}`` or strings = user turns).

    Examples
    --------
    >>> fm = FieldMap(prompt="Question", response="Best Answer")
    >>> fm.to_messages({"Question": "Is the Earth flat?", "Best Answer": "No.", "Type": "Adversarial"})
    [{'role': 'user', 'content': 'Is the Earth flat?'}, {'role': 'assistant', 'content': 'No.'}]
    >>> str(fm)
    'prompt=Question,response=Best Answer'
    """

    prompt: str | None = None
    response: str | None = None
    system: str | None = None
    messages: str | None = None

    def __post_init__(self) -> None:
        for role, name in self.mapped().items():
            if not isinstance(name, str) or not name:
                raise InvalidParameterError(
                    f"The 'fields.{role}' setting ({FIELD_ROLES[role]}) must be a non-empty field name. "
                    f"Got {name!r} instead."
                )
        if self.prompt is not None and self.messages is not None:
            raise InvalidParameterError(
                f"Map either the prompt ({FIELD_ROLES['prompt']} {self.prompt}) or the turns "
                f"({FIELD_ROLES['messages']} {self.messages}), not both: both give the user's turns."
            )
        if self.mapped() and self.prompt is None and self.messages is None:
            raise InvalidParameterError(
                f"{', '.join(FIELD_ROLES[r] for r in self.mapped())} needs {FIELD_ROLES['prompt']} or "
                f"{FIELD_ROLES['messages']} too: name the field that holds the user's turn."
            )
        names = list(self.mapped().values())
        if len(set(names)) != len(names):
            raise InvalidParameterError(f"The mapped fields {self.mapped()} name one field twice; name each once.")

    @classmethod
    def coerce(cls, value: Any) -> FieldMap | None:
        """A FieldMap from a FieldMap, a mapping of roles to names, or an object with those attributes (the
        config's ``fields`` section); None when nothing is mapped."""
        if value is None or isinstance(value, FieldMap):
            return value if value is None or value.mapped() else None
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(FIELD_ROLES))
            if unknown:
                raise InvalidParameterError(
                    f"The 'fields' parameter has unknown key(s) {unknown}; valid: {list(FIELD_ROLES)}."
                )
            data = dict(value)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            data = {role: getattr(value, role, None) for role in FIELD_ROLES}
        else:
            raise InvalidParameterError(
                "The 'fields' parameter of read_pool must be a FieldMap, a mapping like "
                f"{{'prompt': 'Question', 'response': 'Best Answer'}} or None. Got {type(value).__name__} instead."
            )
        fm = cls(**data)
        return fm if fm.mapped() else None

    def mapped(self) -> dict[str, str]:
        """The roles that are mapped, with their field names, in :data:`FIELD_ROLES` order."""
        return {role: getattr(self, role) for role in FIELD_ROLES if getattr(self, role) is not None}

    def __str__(self) -> str:
        return ",".join(f"{role}={name}" for role, name in self.mapped().items())

    def to_messages(self, record: Mapping[str, Any]) -> list[Turn]:
        """The turns of one raw record; raise DataFormatError naming the field when a value does not fit."""
        turns: list[Turn] = []
        system = _optional_str(record, self.system, "system")
        if system:
            turns.append({"role": "system", "content": system})
        if self.messages is not None:
            turns += _turns(record, self.messages)
        else:
            assert self.prompt is not None  # checked in __post_init__
            if self.prompt not in record:
                raise MissingFieldError("prompt", self.prompt)
            prompt = record[self.prompt]
            if not isinstance(prompt, str):
                hint = f" (map a list of turns with {FIELD_ROLES['messages']})" if isinstance(prompt, list) else ""
                raise DataFormatError(f"field {self.prompt!r} is {_type_name(prompt)}; expected a string{hint}.")
            turns.append({"role": "user", "content": prompt})
        response = _optional_str(record, self.response, "response")
        if response is not None:
            turns.append({"role": "assistant", "content": response})
        return turns

    def check_seen(self, source: str, seen: Mapping[str, Any]) -> None:
        """Raise when a mapped field is in no record (``seen``: every field name the reader met)."""
        absent = {role: name for role, name in self.mapped().items() if name not in seen}
        if absent:
            what = ", ".join(f"{name!r} ({_flag(role)})" for role, name in absent.items())
            raise DataFormatError(
                f"{source}: no record has the mapped field {what}; fields found: {list(seen)}. "
                "Field names are case-sensitive: pass one of those."
            )


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _optional_str(record: Mapping[str, Any], name: str | None, role: str) -> str | None:
    if name is None:
        return None
    value = record.get(name)
    if value is not None and not isinstance(value, str):
        raise DataFormatError(f"field {name!r} ({_flag(role)}) is {_type_name(value)}; expected a string or null.")
    return value


def _turns(record: Mapping[str, Any], name: str) -> list[Turn]:
    if name not in record:
        raise MissingFieldError("messages", name)
    items = record[name]
    what = "a non-empty list of {role, content} or {from, value} objects, or of strings (user turns)"
    if isinstance(items, str):
        raise DataFormatError(
            f"field {name!r} is a string; expected {what} (CSV cells are strings: use JSONL or Parquet for lists, "
            f"or map a single prompt with {FIELD_ROLES['prompt']})."
        )
    if not isinstance(items, list) or not items:
        shown = "an empty list" if isinstance(items, list) else _type_name(items)
        raise DataFormatError(f"field {name!r} is {shown}; expected {what}.")
    return [_turn(item, name, k) for k, item in enumerate(items)]


def _turn(item: Any, name: str, k: int) -> Turn:
    if isinstance(item, str):
        return {"role": "user", "content": item}
    if not isinstance(item, dict):
        raise DataFormatError(f"field {name!r}[{k}] is {_type_name(item)}; expected an object or a string.")
    if "role" in item:
        role, content = item.get("role"), item.get("content")
        if role not in MESSAGE_ROLES:
            raise DataFormatError(f"field {name!r}[{k}].role is {role!r}; expected one of {list(MESSAGE_ROLES)}.")
    else:
        speaker, content = item.get("from"), item.get("value")
        role = SHAREGPT_ROLES.get(speaker.lower()) if isinstance(speaker, str) else None
        if role is None:
            raise DataFormatError(
                f"field {name!r}[{k}] has from {speaker!r}; expected a 'role' in {list(MESSAGE_ROLES)} or a 'from' "
                f"in {sorted(SHAREGPT_ROLES)}."
            )
    if not isinstance(content, str):
        raise DataFormatError(f"field {name!r}[{k}] has content {_type_name(content)}; expected a string.")
    return {"role": role, "content": content}
