"""Convert a subset's records to a training format: ``messages``, ``sharegpt``, ``alpaca`` or ``prompt-completion``.

A conversion starts from the conversation kmq already holds for each record (:attr:`~kmq.data.Pool.messages`,
the turns the embedder sees), never from a second parse. It keeps every field the source format did not
consume (``id``, ``source``, ``category``, TruthfulQA's ``Correct Answers``...) in the record's own order, the
converted fields standing where the first consumed field stood. The targets (``out_format``):

``same``
    The input's own records, byte-identical where the container allows (:func:`~kmq.data.write_subset`).
``messages``
    ``{"messages": [{"role", "content"}, ...]}``: what TRL's SFTTrainer, open-instruct and most trainers
    read. Lossless. A messages pool keeps its own turn objects (with any other keys, such as ``name``).
``sharegpt``
    ``{"conversations": [{"from": "system" | "human" | "gpt", "value"}, ...]}`` (FastChat, LLaMA-Factory,
    axolotl). Lossless. TRL renames ``from``/``value`` but keeps the roles ``human``/``gpt``: use
    ``messages`` for TRL.
``alpaca``
    ``instruction``, ``input``, ``output``, plus ``system`` (the leading system turns) and ``history`` (the
    earlier exchanges, ``[[user, assistant], ...]``) when there are any: LLaMA-Factory's alpaca format,
    which kmq reads back as the same conversation. The last user turn is the instruction and the final
    assistant turn the output; ``input`` is ``""``, except that an alpaca pool keeps its own
    instruction/input split. Trainers that read only instruction/input/output see the last exchange alone,
    without the system prompt: such records are counted under ``kept`` (``history``, ``system``).
    What alpaca cannot hold is counted under ``lossy``: consecutive turns of one role (or several leading
    system turns) are joined with a blank line (``merged_turns``); a system turn inside the conversation
    becomes user text (``system_turn_as_user``); a conversation that opens with the assistant gets an empty
    first user turn (``starts_with_assistant``).
``prompt-completion``
    TRL's conversational prompt-completion: ``prompt`` = the turns before the final assistant turn,
    ``completion`` = ``[final assistant turn]``. Lossless (prompt + completion is the conversation).

A conversation that does not end with an assistant turn (prompt-only data such as an eval set, or a chat
that ends with the user) gets an empty response where the target needs one: alpaca ``"output": ""``,
prompt-completion ``prompt`` = every turn and ``completion = [{"role": "assistant", "content": ""}]``,
counted as lossy ``no_response`` with the ids. It is not an error because the selection is already made
when the subset is written, prompt-only selections are a normal input to response generation, and the
counts and ids tell which records to fill or drop (a trainer would learn an empty answer from them).
messages and sharegpt need no response.

An extra field that a reader would take for part of the conversation (:data:`RESERVED`: ``prompt`` next to
``messages`` makes TRL read prompt-completion, ``messages`` next to ``conversations`` makes kmq read
messages, ``history`` next to ``instruction`` is alpaca's history) is kept as ``<name>_original`` and counted
under ``kept`` (``renamed_field``). The record's ``id`` is kept as it is; records without one get none.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from kmq.data.formats import COMPLETION_FIELDS, PROMPT_FIELDS, Turn
from kmq.data.pool import Pool, check_indices
from kmq.errors import invalid_parameter

__all__ = [
    "OUT_FORMATS",
    "RESERVED",
    "TARGET_FIELDS",
    "OutFormat",
    "check_out_format",
    "conversion_stats",
    "convert_subset",
    "csv_cells",
]

OutFormat = Literal["same", "messages", "sharegpt", "alpaca", "prompt-completion"]

#: What :func:`kmq.data.write_subset` can write (``--out-format``).
OUT_FORMATS = ("same", "messages", "sharegpt", "alpaca", "prompt-completion")

#: The fields each target always writes (alpaca adds ``system`` and ``history`` where a record needs them).
TARGET_FIELDS = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "input", "output"),
    "prompt-completion": ("prompt", "completion"),
}

#: Per target, the fields a reader would take instead of (or on top of) the converted ones: the target's own,
#: those kmq's format detection tries first, and those that switch TRL's SFTTrainer to another dataset type.
#: An extra field of such a name is renamed.
_TRL = {"prompt", "completion", "chosen", "rejected"}
RESERVED = {
    "messages": frozenset({"messages", "conversations"} | _TRL),
    "sharegpt": frozenset({"conversations", "messages"} | _TRL),
    "alpaca": frozenset({"instruction", "input", "output", "system", "history", "messages", "conversations"}),
    "prompt-completion": frozenset({"messages", "conversations", "instruction"} | _TRL),
}

#: How many ids each reason lists (the count covers all records).
SHOWN_IDS = 5

#: What each reason means, as the stats say it.
LOSSY = {
    "no_response": 'no final assistant turn: the response is empty (alpaca output "", an empty completion)',
    "merged_turns": "consecutive turns of one role (or several leading system turns) joined with a blank line",
    "system_turn_as_user": "a system turn inside the conversation became user text",
    "starts_with_assistant": "an empty user turn was put before the opening assistant turn",
}
KEPT = {
    "history": "earlier exchanges are in 'history' (LLaMA-Factory and kmq read it; plain alpaca trainers do not)",
    "system": "the system prompt is in 'system' (LLaMA-Factory and kmq read it; plain alpaca trainers do not)",
    "renamed_field": "an extra field named like a format field was kept as '<name>_original'",
}
_SHAREGPT_FROM = {"system": "system", "user": "human", "assistant": "gpt"}


def check_out_format(out_format: str, owner: str = "write_subset") -> str:
    """Return ``out_format`` when it is one of :data:`OUT_FORMATS`, else raise InvalidParameterError."""
    if out_format not in OUT_FORMATS:
        raise invalid_parameter("out_format", owner, f"one of {list(OUT_FORMATS)}", out_format)
    return out_format


def convert_subset(
    pool: Pool, indices: Iterable[int], out_format: OutFormat
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Convert the records of ``pool`` at ``indices`` (in that order) to ``out_format``.

    Parameters
    ----------
    pool : Pool
        The pool the indices refer to.
    indices : sequence or ndarray of shape (m,), int
        Row indices in [0, len(pool)).
    out_format : {"messages", "sharegpt", "alpaca", "prompt-completion", "same"}
        The target (see the module docstring); ``"same"`` returns the raw records themselves.

    Returns
    -------
    records : list of dict, length m
        New dicts; their values (a messages pool's turn list, extra fields) may be the pool's own objects:
        do not mutate them.
    stats : dict
        ``out_format``, ``source_format``, ``records`` (m), ``lossy_records`` (records with at least one lossy
        reason), and ``lossy`` / ``kept``: ``{reason: {"count", "ids" (the first few), "what"}}``.

    Examples
    --------
    >>> pool = Pool.from_records([{"id": "a", "conversations": [{"from": "human", "value": "Hi"},
    ...                                                         {"from": "gpt", "value": "Hello!"}]}])
    >>> records, stats = convert_subset(pool, [0], "messages")
    >>> records[0]
    {'id': 'a', 'messages': [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Hello!'}]}
    >>> convert_subset(pool, [0], "prompt-completion")[0][0]["completion"]
    [{'role': 'assistant', 'content': 'Hello!'}]
    """
    check_out_format(out_format, "convert_subset")
    rows = check_indices(indices, len(pool), owner="convert_subset")
    stats: dict[str, Any] = {
        "out_format": out_format, "source_format": pool.format, "records": len(rows), "lossy_records": 0,
        "lossy": {}, "kept": {},
    }  # fmt: skip
    if out_format == "same":
        return pool.records(rows), stats
    convert = _TARGETS[out_format]
    records = []
    for start in range(0, len(rows), 65536):
        chunk = rows[start : start + 65536]
        for i, raw in zip(chunk, pool.records(chunk), strict=True):
            fields, reasons = convert(pool.messages[i], raw, pool.format)
            record, renamed = _assemble(raw, fields, _consumed(raw, pool), RESERVED[out_format])
            records.append(record)
            _count(stats, pool.ids[i], reasons + (["renamed_field"] if renamed else []))
    return records, stats


def conversion_stats(
    pool: Pool, indices: Iterable[int], out_format: OutFormat, *, container: str | None = None
) -> dict[str, Any]:
    """The ``stats`` of :func:`convert_subset` (for a manifest), without keeping the records.

    With a ``container`` of ``"csv"`` or ``"tsv"`` (what :func:`~kmq.data.output_container` says) the stats also
    list ``csv_json_fields``: the fields whose values :func:`~kmq.data.write_subset` JSON-encodes into cells.
    """
    records, stats = convert_subset(pool, indices, out_format)
    if out_format != "same" and container is not None and container.removesuffix(".gz") in ("csv", "tsv"):
        stats["csv_json_fields"] = csv_cells(records)[2]
    return stats


def csv_cells(records: list[dict[str, Any]]) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """Converted records as CSV rows of strings: (rows, every field in first-seen order, the JSON-encoded fields).

    A string stays as it is, null or a missing field is ``""``, anything else (a list of turns, a number, a
    bool) is its JSON text.
    """
    fields = list(dict.fromkeys(key for record in records for key in record))
    encoded: dict[str, None] = {}
    rows = []
    for record in records:
        row = {}
        for key in fields:
            value = record.get(key)
            if value is None:
                row[key] = ""
            elif isinstance(value, str):
                row[key] = value
            else:
                row[key] = json.dumps(value, ensure_ascii=False, default=str)
                encoded[key] = None
        rows.append(row)
    return rows, fields, list(encoded)


def _count(stats: dict[str, Any], rid: str, reasons: list[str]) -> None:
    if any(reason in LOSSY for reason in reasons):
        stats["lossy_records"] += 1
    for reason in dict.fromkeys(reasons):
        group, what = ("lossy", LOSSY) if reason in LOSSY else ("kept", KEPT)
        entry = stats[group].setdefault(reason, {"count": 0, "ids": [], "what": what[reason]})
        entry["count"] += 1
        if len(entry["ids"]) < SHOWN_IDS:
            entry["ids"].append(rid)


# ----------------------------------------------------------------------------------------------- fields kept


def _consumed(record: Mapping[str, Any], pool: Pool) -> set[str]:
    """The fields of ``record`` that the pool's format (or field map) read into the conversation."""
    if pool.field_map is not None:
        return set(pool.field_map.mapped().values())
    if pool.format == "messages":
        return {"messages"}
    if pool.format == "sharegpt":
        return {"conversations", "system"}
    if pool.format == "alpaca":
        return {"instruction", "input", "system", "history"} | _first_answer(record, ("output", "response"))
    name = next((f for f in PROMPT_FIELDS if f in record), PROMPT_FIELDS[0])
    return {name, "system"} | _first_answer(record, COMPLETION_FIELDS)


def _first_answer(record: Mapping[str, Any], names: tuple[str, ...]) -> set[str]:
    """The answer fields the reader looked at: each present one up to the first that is not null."""
    seen = set()
    for name in names:
        if name in record:
            seen.add(name)
            if record[name] is not None:
                break
    return seen


def _assemble(
    raw: Mapping[str, Any], fields: dict[str, Any], consumed: set[str], reserved: frozenset[str]
) -> tuple[dict[str, Any], bool]:
    """``raw``'s extra fields in order, with ``fields`` where the first consumed one was, those in ``reserved``
    renamed; (record, whether any was renamed)."""
    out: dict[str, Any] = {}
    taken = set(raw) | set(fields)
    renamed = placed = False
    for key, value in raw.items():
        if key in consumed:
            if not placed:
                out.update(fields)
                placed = True
        elif key in reserved:
            name = f"{key}_original"
            while name in taken:
                name += "_"
            taken.add(name)
            out[name] = value
            renamed = True
        else:
            out[key] = value
    if not placed:
        out.update(fields)
    return out, renamed


# ----------------------------------------------------------------------------------------------- the targets


def _to_messages(turns: list[Turn], raw: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    if source == "messages" and isinstance(raw["messages"], list):  # its own turn objects: other keys (name...) stay
        # (a CSV pool holds its messages as JSON text: those records take the parsed turns below)
        return {"messages": raw["messages"]}, []
    return {"messages": [dict(turn) for turn in turns]}, []


def _to_sharegpt(turns: list[Turn], raw: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    return {"conversations": [{"from": _SHAREGPT_FROM[t["role"]], "value": t["content"]} for t in turns]}, []


def _to_prompt_completion(turns: list[Turn], raw: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    prompt = [dict(turn) for turn in turns]
    if prompt and prompt[-1]["role"] == "assistant":
        return {"prompt": prompt[:-1], "completion": prompt[-1:]}, []
    return {"prompt": prompt, "completion": [{"role": "assistant", "content": ""}]}, ["no_response"]


def _to_alpaca(turns: list[Turn], raw: Mapping[str, Any], source: str) -> tuple[dict[str, Any], list[str]]:
    reasons: list[str] = []
    head = 0
    while head < len(turns) and turns[head]["role"] == "system":
        head += 1
    system = [t["content"] for t in turns[:head]]
    if len(system) > 1:
        reasons.append("merged_turns")
    body = _alternating(turns[head:], reasons)
    if body and body[-1][0] == "assistant":
        output = body.pop()[1]
    else:
        output = ""
        reasons.append("no_response")
    instruction = body.pop()[1] if body else ""
    fields: dict[str, Any] = {"instruction": instruction, "input": "", "output": output}
    if source == "alpaca":  # the record's own split of the last user turn
        fields["instruction"], fields["input"] = raw["instruction"], raw.get("input") or ""
    if system:
        fields["system"] = "\n\n".join(system)
        reasons.append("system")
    if body:
        fields["history"] = [[body[k][1], body[k + 1][1]] for k in range(0, len(body), 2)]
        reasons.append("history")
    return fields, reasons


def _alternating(turns: list[Turn], reasons: list[str]) -> list[list[str]]:
    """``[role, content]`` pairs that alternate user, assistant, ... starting with user (noting what it took)."""
    out: list[list[str]] = []
    for turn in turns:
        role = turn["role"]
        if role == "system":
            role = "user"
            reasons.append("system_turn_as_user")
        if out and out[-1][0] == role:
            out[-1][1] += "\n\n" + turn["content"]
            reasons.append("merged_turns")
        else:
            out.append([role, turn["content"]])
    if out and out[0][0] == "assistant":
        out.insert(0, ["user", ""])
        reasons.append("starts_with_assistant")
    return out


_TARGETS = {
    "messages": _to_messages,
    "sharegpt": _to_sharegpt,
    "alpaca": _to_alpaca,
    "prompt-completion": _to_prompt_completion,
}
