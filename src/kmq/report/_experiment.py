"""The report of a ``kmq experiment`` folder: its results table and the diagnostics of every cell's selection.

``kmq report DIR`` on an experiment folder (it holds ``experiment.json``) writes ``DIR/report.html``: the
tables of ``results.md`` exactly as ``kmq experiment`` wrote them (mean ± std over seeds, the average, the
paired difference to random, training tokens, failed cells), then one row per cell with the diagnostics of
its selection (``cells/<cell>/select/manifest.json``) next to its random reference, as ``kmq compare``
shows them. The page reads only those files, so it can be rebuilt at any time and is the same for the same
files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from kmq.errors import MissingArtifactError
from kmq.report._compare import METRICS, diagnostic_columns
from kmq.report._html import dig, esc, num, page, section, table, value

MARKER = "experiment.json"
REPORT = "report.html"
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def is_experiment(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder ``kmq experiment`` wrote (its ``experiment.json`` says so)."""
    marker = Path(path) / MARKER
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("command") == "experiment"
    except (OSError, ValueError, AttributeError):
        return False


def render_experiment(path: str | os.PathLike) -> str:
    """The report page of an experiment folder, as text.

    Raises
    ------
    MissingArtifactError
        ``path`` is not an experiment folder, or it has no ``results.md`` yet (no cell has finished a step).
    """
    root = Path(path)
    if not is_experiment(root):
        raise MissingArtifactError(f"{root} is not a kmq experiment folder (no {MARKER} written by kmq experiment).")
    md = root / "results.md"
    if not md.is_file():
        raise MissingArtifactError(f"{md} does not exist yet: run `kmq experiment CONFIG.yaml --out {root}` first.")
    text = md.read_text(encoding="utf-8")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), root.name)
    body = (f"<header><h1>kmq experiment: {esc(title)}</h1><p class=\"mute\">{esc(root)}</p>"
            '<nav><a href="#results">Results</a><a href="#selections">Selections</a></nav></header>'
            + section("results", "Results", markdown_html(text, skip_title=True))
            + section("selections", "Selections", _selections(root)))  # fmt: skip
    return page(f"kmq experiment: {title}", body)


def markdown_html(text: str, *, skip_title: bool = False) -> str:
    """The Markdown that ``results.md`` uses (a title, bullets, paragraphs, pipe tables, bold) as escaped HTML."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            body = [r for r in rows[1:] if not all(set(c) <= {"-", ":"} for c in r)]
            out.append(table([_inline(c) for c in rows[0]], [[_inline(c) for c in r] for r in body],
                             cls="results"))  # fmt: skip
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
            continue
        if line.startswith("# "):
            if not skip_title:
                out.append(f"<h3>{_inline(line[2:])}</h3>")
        elif line.strip():
            out.append(f"<p>{_inline(line)}</p>")
        i += 1
    return "\n".join(out)


def _cells(line: str) -> list[str]:
    """The cells of one pipe-table line (``\\|`` is a literal bar)."""
    parts = re.split(r"(?<!\\)\|", line.strip())
    return [p.strip().replace("\\|", "|") for p in parts[1:-1]]


def _inline(text: str) -> str:
    return _BOLD.sub(r"<strong>\1</strong>", esc(text))


def cell_diagnostics(root: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per cell that finished its select step: the cell, method, budget, k, n and each diagnostic."""
    rows = []
    for folder in sorted((Path(root) / "cells").glob("*/select")):
        try:
            m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rows.append({
            "cell": folder.parent.name,
            "method": dig(m, "method.name"),
            "budget": dig(m, "budget.resolved"),
            "seed": m.get("seed"),
            "k": dig(m, "stages.cluster.n_clusters"),
            **diagnostic_columns(m),
        })  # fmt: skip
    return rows


def _selections(root: Path) -> str:
    rows = cell_diagnostics(root)
    if not rows:
        return '<p class="missing">No cell has finished its select step yet.</p>'
    cells = []
    for r in rows:
        row = [esc(r["cell"]), esc(r["method"]), num(r["budget"]), num(r["seed"]), num(r["k"]), num(r["n"])]
        for m in METRICS:
            ref = value((r["cell"], f"{m}_random"), r[f"{m}_random"])
            row.append(f'{value((r["cell"], m), r[m])} <span class="mute">({ref})</span>')
        cells.append(row)
    note = ('<p class="mute">Each cell\'s picks (in brackets: a seeded random subset of the same size from the same '
            "candidates), from cells/&lt;cell&gt;/select/manifest.json.</p>")  # fmt: skip
    return note + table(["cell", "method", "budget", "seed", "k", "n", *METRICS], cells, cls="compare")


def write_experiment_report(
    path: str | os.PathLike, *, out: str | os.PathLike | None = None, overwrite: bool = False
) -> Path:
    """Write the experiment's report page (``DIR/report.html`` by default, atomically) and return its path.

    ``out`` may not be one of the experiment's own files (results.csv, results.md, config.yaml,
    experiment.json); an existing ``out`` that kmq did not write is replaced only with ``overwrite``.
    """
    from kmq.errors import OutputConflictError
    from kmq.publish import resolved
    from kmq.report._report import is_kmq_page, write_page

    root = Path(path)
    text = render_experiment(root)
    target = root / REPORT if out is None else Path(out).expanduser()
    if out is not None and target.is_dir():
        target = target / REPORT
    own = {resolved(root / name) for name in ("results.csv", "results.md", "config.yaml", MARKER)}
    if resolved(target) in own or resolved(target) == resolved(root):
        raise OutputConflictError(f"--out {target} is a file of the experiment {root}; pass another --out.")
    if (target.exists() or target.is_symlink()) and not overwrite and not is_kmq_page(target):
        raise OutputConflictError(
            f"--out {target} exists and kmq did not write it. Pass another --out, or --overwrite to replace it."
        )
    write_page(target, text)
    return target
