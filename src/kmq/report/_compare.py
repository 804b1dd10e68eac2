"""``kmq compare``: the diagnostics of several runs side by side (CSV, Markdown and an HTML page)."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

from kmq.errors import InvalidParameterError, OutputConflictError
from kmq.report._html import dig, esc, num, page, table, value
from kmq.report._rundir import RunData
from kmq.report._sections import params_text, stage

#: diagnostics compared, each with its random reference (``<name>_random``)
METRICS = ("vendi", "coverage_mean", "coverage_p95", "facility_location", "cluster_kl", "cluster_entropy",
           "empty_clusters", "duplicates_exact", "duplicates_near", "quality_mean")  # fmt: skip
HEAD = ("run", "command", "method", "params", "budget", "k", "n",
        *(c for m in METRICS for c in (m, f"{m}_random")))  # fmt: skip
MD_MARK = "<!-- kmq compare -->"
GENERATOR = "kmq compare"


def _metric(block: Any, name: str) -> Any:
    return dig(block, "quality.mean") if name == "quality_mean" else dig(block, name)


def compare_runs(run_dirs: list[str | os.PathLike]) -> list[dict[str, Any]]:
    """One row per run directory: method, params, budget, k and each diagnostic with its random reference.

    Raises
    ------
    InvalidParameterError
        Fewer than one run directory.
    MissingArtifactError
        A path is not a kmq run directory (the message names it).
    """
    if not run_dirs:
        raise InvalidParameterError("kmq compare needs at least one run directory. Got none.")
    rows = []
    for path in run_dirs:
        run = RunData(path)
        m = run.manifest
        row: dict[str, Any] = {
            "run": str(path),
            "command": run.command,
            "method": dig(m, "method.name"),
            "params": params_text(dig(m, "method.params")),
            "budget": dig(m, "budget.resolved"),
            "k": stage(m, "cluster")[1].get("n_clusters"),
            **diagnostic_columns(m),
        }
        rows.append(row)
    return rows


def diagnostic_columns(manifest: dict[str, Any]) -> dict[str, Any]:
    """``n`` and each of :data:`METRICS` with its random reference (``<name>_random``) from a run's manifest."""
    diag = manifest.get("diagnostics") or {}
    row: dict[str, Any] = {"n": dig(diag, "selected.n") if diag else dig(manifest, "counts.selected")}
    for name in METRICS:
        row[name] = _metric(diag.get("selected"), name)
        row[f"{name}_random"] = _metric(diag.get("random"), name)
    return row


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HEAD)
    for r in rows:
        w.writerow(["" if r[c] is None else repr(r[c]) if isinstance(r[c], float) else r[c] for c in HEAD])
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The table as Markdown, each metric as ``value (random value)``."""
    head = ["run", "method", "params", "budget", "k", "n", *METRICS]
    lines = [MD_MARK, "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_md(r["run"]), _md(r["method"]), _md(r["params"]), num(r["budget"]), num(r["k"]), num(r["n"])]
        cells += [f"{num(r[m])} ({num(r[f'{m}_random'])})" for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Each metric: the run's picks (a seeded random subset of the same size from the same candidates).")
    return "\n".join(lines) + "\n"


def _md(text: Any) -> str:
    return str(text if text is not None else "–").replace("|", "\\|").replace("\n", " ")


def to_html(rows: list[dict[str, Any]]) -> str:
    cells = []
    for i, r in enumerate(rows):
        row = [esc(r["run"]), esc(r["method"]), f"<code>{esc(r['params'])}</code>", num(r["budget"]), num(r["k"]),
               num(r["n"])]  # fmt: skip
        for m in METRICS:
            row.append(value((str(i), m), r[m]) + f' <span class="mute">({value((str(i), f"{m}_random"), r[f"{m}_random"])})</span>')  # noqa: E501
        cells.append(row)
    body = ("<header><h1>kmq compare</h1><p class=\"mute\">Each metric: the run's picks (in brackets: a seeded random "
            "subset of the same size from the same candidates). Lower is better for coverage, KL, empty clusters "
            "and duplicates; higher for Vendi, facility location, entropy and quality.</p></header>"
            + table(["run", "method", "params", "budget", "k", "n", *METRICS], cells, cls="compare"))  # fmt: skip
    return page("kmq compare", body).replace('content="kmq report"', f'content="{GENERATOR}"', 1)


def _targets(out: str | os.PathLike) -> dict[str, Path]:
    out = Path(out).expanduser()
    if out.suffix.lower() in (".csv", ".md", ".html"):
        stem = out.with_suffix("")
        return {ext: stem.with_name(f"{stem.name}.{ext}") for ext in ("csv", "md", "html")}
    return {ext: out / f"compare.{ext}" for ext in ("csv", "md", "html")}


def _ours(path: Path, ext: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    if ext == "html":
        return f'<meta name="generator" content="{GENERATOR}">' in head
    if ext == "md":
        return head.startswith(MD_MARK)
    return head.startswith(",".join(HEAD) + "\n")


def write_compare(run_dirs: list[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False,
                  rows: list[dict[str, Any]] | None = None) -> list[Path]:  # fmt: skip
    """Write ``compare.csv``, ``compare.md`` and ``compare.html`` into folder ``out`` (or beside file ``out``).

    An existing file is replaced only when kmq compare wrote it, or with ``overwrite``. No file may be a
    file of one of the runs.
    """
    from kmq.publish import check_not_input, resolved
    from kmq.report._report import write_page

    rows = compare_runs(run_dirs) if rows is None else rows
    targets = _targets(out)
    inputs = [resolved(p) for d in run_dirs for p in RunData(d).owned_paths() if p.exists()]
    for ext, path in targets.items():
        check_not_input("--out", path, inputs)
        if path.is_dir():
            raise OutputConflictError(f"--out: {path} is a folder; pass another --out.")
        if (path.exists() or path.is_symlink()) and not overwrite and not _ours(path, ext):
            raise OutputConflictError(
                f"--out: {path} exists and kmq compare did not write it. Pass another --out, or --overwrite."
            )
    texts = {"csv": to_csv(rows), "md": to_markdown(rows), "html": to_html(rows)}
    for ext, path in targets.items():
        write_page(path, texts[ext])
    return list(targets.values())
