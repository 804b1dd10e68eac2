"""The results of ``kmq eval``: per-task entries from lm-eval's output, the Markdown table, the JSON file.

lm-eval names a metric ``METRIC,FILTER`` (``acc,none``, ``exact_match,strict-match``) and its standard error
``METRIC_stderr,FILTER``; kmq keeps the names, without the ``,none`` of unfiltered metrics (``acc``,
``exact_match,strict-match``), and writes ``None`` where lm-eval has no standard error (``"N/A"``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

from kmq.publish import finite_json

#: keys every results file of ``kmq eval`` holds (how ``--out`` recognises a file kmq wrote)
RESULT_KEYS = ("kmq_version", "lm_eval_version", "model", "tasks")
_NOT_METRICS = ("alias", "name", "sample_len", "samples")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def task_entries(
    res: dict[str, Any], loaded: dict[str, Any], *, limit: int | float | None, data_dir: Path | None
) -> dict[str, Any]:
    """One entry per requested task (a tag gives one per task it names) from lm-eval's results (``evaluate``'s dict).

    ``loaded["top"]`` maps each requested name to the leaf tasks it loaded.
    """
    out = {}
    for name, leaves in loaded["top"].items():
        if name in res["results"]:
            out[name] = _entry(res, name, leaves, limit, data_dir)
        else:  # a tag: its tasks one by one
            out.update({leaf: _entry(res, leaf, [leaf], limit, data_dir) for leaf in leaves})
    return out


def _entry(res: dict[str, Any], name: str, leaves: list[str], limit: int | float | None,
           data_dir: Path | None) -> dict[str, Any]:  # fmt: skip
    metrics, stderr = split_metrics(res["results"][name])
    counts = [res.get("n-samples", {}).get(leaf, {}) for leaf in leaves]
    n = sum(int(c.get("effective", 0)) for c in counts)
    available = sum(int(c.get("original", 0)) for c in counts)
    shots = {res.get("n-shot", {}).get(leaf) for leaf in leaves}
    primary = primary_of(name, metrics, res.get("higher_is_better", {}).get(name, {}))
    return {
        "metrics": metrics, "stderr": stderr, "primary": primary,
        "value": metrics.get(primary) if primary is not None else None,
        "n": n, "available": available, "limited": limit is not None and n < available,
        "num_fewshot": shots.pop() if len(shots) == 1 else sorted(s for s in shots if s is not None),
        "version": res.get("versions", {}).get(name), "settings": _settings(res, name, leaves, data_dir),
        "subtasks": _subtasks(res, leaves, primary) if leaves != [name] else None,
    }  # fmt: skip


def _subtasks(res: dict[str, Any], leaves: list[str], primary: str | None) -> dict[str, Any]:
    """A group's members: the group's primary metric (and n) of each (``mmlu_<subject>`` -> value)."""
    out = {}
    for leaf in leaves:
        metrics = split_metrics(res["results"].get(leaf, {}))[0]
        n = res.get("n-samples", {}).get(leaf, {}).get("effective")
        out[leaf] = {"value": metrics.get(primary) if primary else None, "n": n}
    return out


def split_metrics(row: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """``(metrics, stderr)`` of one row of lm-eval's ``results`` (names as in the module docstring)."""
    metrics, stderr = {}, {}
    for key, value in row.items():
        if key in _NOT_METRICS or "," not in key:
            continue
        metric, _, filt = key.partition(",")
        is_err = metric.endswith("_stderr")
        base = metric[: -len("_stderr")] if is_err else metric
        label = base if filt == "none" else f"{base},{filt}"
        (stderr if is_err else metrics)[label] = _number(value)
    return dict(sorted(metrics.items())), {k: stderr.get(k) for k in sorted(metrics)}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def primary_of(name: str, metrics: dict[str, Any], higher_is_better: dict[str, bool]) -> str | None:
    """The task's primary metric: kmq's choice for its local tasks, else the first metric lm-eval lists."""
    from kmq.evaluate.tasks import primary_metric_key

    try:
        chosen = primary_metric_key(name)
    except (KeyError, ValueError):  # no primary known for this lm-eval task
        chosen = None
    if chosen is not None:
        label = chosen[: -len(",none")] if chosen.endswith(",none") else chosen
        if label in metrics:
            return label
    for base in higher_is_better:
        found = [m for m in metrics if m.partition(",")[0] == base]
        if found:
            return found[0]
    return next(iter(metrics), None)


def _settings(res: dict[str, Any], name: str, leaves: list[str], data_dir: Path | None) -> dict[str, Any]:
    """kmq's description of the task (:func:`kmq.evaluate.tasks.describe`: files and config digests of a local
    task) and, for an lm-eval task, the digest of the configs lm-eval ran."""
    from kmq.evaluate.tasks import describe, is_local

    if is_local(name) and data_dir is not None:
        return describe(name, data_dir)
    configs = [res.get("configs", {}).get(leaf) for leaf in leaves]
    text = _ADDRESS.sub("", json.dumps(configs, sort_keys=True, default=str))  # a function's repr has its address
    return {**describe(name), "config_digest": hashlib.sha256(text.encode()).hexdigest()}


# -- the table ------------------------------------------------------------------------------------------------
def results_table(results: dict[str, Any], *, digits: int = 4) -> str:
    """A Markdown table: task | metric | value ± stderr | n (| a ``limit N`` flag for limited tasks)."""
    tasks = results.get("tasks", {})
    flagged = any(e.get("limited") for e in tasks.values())
    head = ["task", "metric", "value", "n"] + (["flag"] if flagged else [])
    rows = [head, ["---"] * len(head)]
    for name, e in tasks.items():
        metric = e.get("primary")
        value, err = e.get("value"), (e.get("stderr") or {}).get(metric)
        shown = "n/a" if value is None else f"{value:.{digits}f}" + ("" if err is None else f" ± {err:.{digits}f}")
        row = [name, str(metric), shown, str(e.get("n", ""))]
        if flagged:
            row.append(f"limit {_limit(results.get('limit'))}" if e.get("limited") else "")
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"


def _limit(limit: Any) -> str:
    return f"{limit:g}" if isinstance(limit, float) else str(limit)


# -- the file -------------------------------------------------------------------------------------------------
def is_results_file(path: Path) -> bool:
    """Whether ``path`` is a results file of ``kmq eval`` (so ``--out`` may replace it without ``--overwrite``)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(key in data for key in RESULT_KEYS)


def write_results(path: str | os.PathLike, results: dict[str, Any]) -> None:
    """Write ``results`` to exactly ``path`` as JSON with sorted keys (NaN as null); callers stage it."""
    text = json.dumps(finite_json(results), indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text + "\n")
        fh.flush()
        os.fsync(fh.fileno())
