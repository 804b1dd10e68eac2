"""Evaluation sets for decontamination: which file holds the prompts, which field, and how records become text.

An eval set (:func:`load_eval_set`) is a file kmq's readers take (JSON Lines, JSON, Parquet, CSV, TSV, ``.gz``,
``.zip``; read raw by :func:`kmq.data.read_records`) or a folder holding one such file (a datakit eval set),
optionally ``PATH:FIELD``. :mod:`kmq.shape.decontam` matches the pool against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmq.data.io import read_records, split_suffix
from kmq.errors import DataFormatError, MissingArtifactError, invalid_parameter

__all__ = ["PROMPT_FIELDS", "EvalSet", "load_eval_set"]

#: prompt fields tried in this order (exact name first, then ignoring case) when the spec names none
PROMPT_FIELDS = (
    "turns", "messages", "conversations", "question", "prompt", "instruction", "problem", "query", "goal",
    "ctx", "sentence", "text", "input", "content",
)  # fmt: skip
_METADATA = {"source.json", "stats.json"}  # a datakit folder's description files, not data
_USER_SPEAKERS = {"user", "human"}


@dataclass(frozen=True)
class EvalSet:
    """An evaluation set's prompts, aligned with its record ids.

    Attributes
    ----------
    name : str
        The datakit folder's name, or the file name without its data extensions (``HumanEval.jsonl.gz`` ->
        ``HumanEval``).
    ids : list of str, length m
        The records' ``id`` field when every record has a unique one, else their 0-based positions.
    prompts : list of str, length m
        The text matched against the pool (see :func:`load_eval_set` for how it is built).
    source : str
        The file read.
    field : str
        The record field the prompts come from (``"instruction+input"`` for the Alpaca pair).
    """

    name: str
    ids: list[str]
    prompts: list[str]
    source: str
    field: str = ""

    def __len__(self) -> int:
        return len(self.ids)


def load_eval_set(spec: str | Path) -> EvalSet:
    """Read an evaluation set's prompts from ``spec``: a file or datakit folder, optionally ``PATH:FIELD``.

    Without a field the first of :data:`PROMPT_FIELDS` the records have is used (exact name, else ignoring
    case). A value that is a string is the prompt; a list is a conversation whose user turns are joined with
    a newline (plain strings are all user turns, as MT-Bench's ``turns``, except in ``conversations``, where
    they alternate user and assistant, as in LIMA); ``instruction`` is joined with a non-empty ``input`` by a
    blank line, as Alpaca records are. Multiple-choice sets (a ``question`` field next to the choices, as
    the datakit's mmlu and arc) give the question alone: the choices are short generic strings (numbers,
    "True", "None of the above") whose n-grams would match unrelated records, lm-eval's decontamination query
    for ARC is the question too, and a copied question shorter than 13 words is still caught by exact match.

    Raises
    ------
    MissingArtifactError
        ``spec`` names no existing file or folder.
    DataFormatError
        The file cannot be read (see :func:`kmq.data.read_pool`), a folder does not hold exactly one data
        file, no record field holds prompts (the message lists the fields and the ``PATH:FIELD`` fix), or a
        record's prompt is not text.
    """
    path, name = _split_spec(spec)
    if path.is_dir():
        folder, path = path, _data_file(path)
        set_name = folder.name
    else:
        set_name = _stem(path)
    pool = read_records(path)
    columns = pool.columns()
    chosen = name if name is not None else _choose_field(columns)
    if chosen is None:
        raise DataFormatError(
            f"{path}: no prompt field found; the records have fields {columns}, none of {list(PROMPT_FIELDS)}. "
            f"Name the field that holds the prompt: {path}:FIELD (for example {path}:{columns[0]})."
        )
    if chosen not in columns:
        raise DataFormatError(
            f"{path}: no record has the field {chosen!r} given in {str(spec)!r}; fields found: {columns}. "
            f"Pass one of them as {path}:FIELD (names are case-sensitive)."
        )
    prompts = _prompts(pool, path, chosen, columns)
    label = chosen + ("+" + _input_field(columns) if _is_alpaca(chosen, columns) else "")
    return EvalSet(name=set_name, ids=list(pool.ids), prompts=prompts, source=str(path), field=label)


def _split_spec(spec: str | Path) -> tuple[Path, str | None]:
    """``PATH`` or ``PATH:FIELD`` -> (existing path, field or None)."""
    if not isinstance(spec, (str, Path)) or not str(spec):
        raise invalid_parameter("spec", "load_eval_set", "a path, or PATH:FIELD", spec)
    text = str(spec)
    if Path(text).exists():
        return Path(text), None
    head, sep, tail = text.rpartition(":")
    if sep and head and tail and Path(head).exists():
        return Path(head), tail
    raise MissingArtifactError(
        f"Eval set not found: {text}. Pass an existing eval file (JSONL, JSON, Parquet, CSV, TSV, optionally .gz, "
        "or a .zip holding one), a folder holding one such file (a datakit eval set), or PATH:FIELD."
    )


def _data_file(folder: Path) -> Path:
    """The one data file directly inside ``folder`` (a datakit eval set: ``gsm8k_test/gsm8k_test.jsonl``)."""
    found = sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith(".")
        and p.name.lower() not in _METADATA
        and (split_suffix(p.name)[0] is not None or p.name.lower().endswith(".zip"))
    )
    if len(found) != 1:
        what = f"{len(found)} data files ({[p.name for p in found]})" if found else "no data file"
        raise DataFormatError(
            f"{folder} holds {what}; an eval set folder holds exactly one (SOURCE.json and STATS.json aside). "
            "Pass the file itself."
        )
    return found[0]


def _stem(path: Path) -> str:
    name = path.name
    lower = name.lower()
    if lower.endswith(".zip"):
        return name[:-4]
    base, gz = split_suffix(name)
    cut = (len(base) if base else 0) + (3 if gz else 0)
    return name[: len(name) - cut] if cut else path.stem


def _choose_field(columns: list[str]) -> str | None:
    by_case = {}
    for column in columns:
        by_case.setdefault(column.lower(), column)
    for name in PROMPT_FIELDS:
        if name in columns:
            return name
        if name in by_case:
            return by_case[name]
    return None


def _is_alpaca(name: str, columns: list[str]) -> bool:
    return name.lower() == "instruction" and _input_field(columns) is not None


def _input_field(columns: list[str]) -> str | None:
    return next((c for c in columns if c.lower() == "input"), None)


def _prompts(pool: Any, path: Path, name: str, columns: list[str]) -> list[str]:
    values = pool.column(name)
    extra = pool.column(_input_field(columns)) if _is_alpaca(name, columns) else None
    alternate = name.lower() == "conversations"
    out = []
    for i, value in enumerate(values):
        text = _prompt_text(value, alternate)
        if text is None:
            shown = "missing" if value is None else f"{type(value).__name__} {str(value)[:60]!r}"
            raise DataFormatError(
                f"{path} record {i} (id {pool.ids[i]!r}): field {name!r} is {shown}; expected a string or a list "
                f"of turns. Fix the record, or name another field as {path}:FIELD."
            )
        if extra is not None and isinstance(extra[i], str) and extra[i].strip():
            text = f"{text.strip()}\n\n{extra[i].strip()}"
        out.append(text)
    return out


def _prompt_text(value: Any, alternate: bool) -> str | None:
    """A field value as prompt text: a string, or the user turns of a list; None when it is neither."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        return None
    if all(isinstance(turn, str) for turn in value):
        return "\n".join(value[::2] if alternate else value)
    turns = []
    for turn in value:
        if not isinstance(turn, Mapping):
            return None
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if isinstance(role, str) and role.lower() in _USER_SPEAKERS and isinstance(content, str):
            turns.append(content)
    return "\n".join(turns)
