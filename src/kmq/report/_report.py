"""``write_report``: one self-contained HTML page of a run directory."""

from __future__ import annotations

import os
from pathlib import Path

from kmq.errors import OutputConflictError
from kmq.report import _pool, _sections
from kmq.report._html import GENERATOR, esc, page
from kmq.report._rundir import RunData

REPORT = "report.html"

NAV = (("summary", "Run"), ("diagnostics", "Diagnostics"), ("clusters", "Clusters"), ("map", "Map"),
       ("quality", "Quality"), ("mix", "Mix"), ("silhouette", "k"), ("rounds", "Rounds"),
       ("cards", "Cards"))  # fmt: skip


def render_report(run_dir: str | os.PathLike | RunData) -> str:
    """The report page of a run directory, as text (same run directory, same text).

    Parameters
    ----------
    run_dir : path-like or RunData

    Returns
    -------
    str
        A complete HTML document with every asset inline; it loads nothing.
    """
    run = run_dir if isinstance(run_dir, RunData) else RunData(run_dir)
    m = run.manifest
    pv = _pool.PoolView(run.pool) if run.pool is not None else None
    map_html, map_data = _pool.map_section(run, pv)
    iterate = run.command == "iterate" or bool(m.get("rounds"))
    parts = [
        _sections.summary(m, run.command),
        _sections.diagnostics(m),
        _pool.cluster_bars(run),
        map_html,
        _pool.quality_section(run, pv),
        _sections.mix(m),
        _sections.silhouette(m),
    ]
    if iterate:
        parts.append(_sections.rounds(m, run.rounds))
    parts.append(_pool.cards(run, pv))
    method = (m.get("method") or {}).get("name", "?")
    source = (m.get("input") or {}).get("source", "?")
    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in NAV if iterate or k != "rounds")
    head = (f"<header><h1>kmq report: {esc(method)}</h1><p class=\"mute\">{esc(source)} · "
            f"{esc(m.get('created_utc', ''))}</p><nav>{nav}</nav></header>")  # fmt: skip
    body = head + "\n".join(parts)
    data = {"kmq-map-data": map_data} if map_data is not None else None
    return page(f"kmq report: {method} on {Path(str(source)).name}", body,
                script=_pool.MAP_JS if map_data is not None else "", data=data)  # fmt: skip


def write_report(run_dir: str | os.PathLike, *, out: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Write ``report.html`` for a run directory (atomically) and return its path.

    Parameters
    ----------
    run_dir : path-like
        A kmq run directory (it holds ``kmq-run.json``).
    out : path-like, optional
        Where to write instead of ``RUN_DIR/report.html`` (a folder gets ``report.html`` inside it). It may
        not be a file of the run directory or an input of the run.
    overwrite : bool
        Replace an existing ``out`` that kmq did not write.

    Raises
    ------
    MissingArtifactError
        ``run_dir`` is not a kmq run directory.
    OutputConflictError
        ``out`` is one of the run's files or inputs, or an existing file kmq did not write.
    """
    run = RunData(run_dir)
    target = _target(run, out, overwrite=overwrite)
    write_page(target, render_report(run))
    return target


def write_page(target: Path, text: str) -> None:
    """Write a page atomically; an environment failure names the path (exit 1 in the CLI)."""
    from kmq.cache import atomic_path
    from kmq.errors import OutputWriteError
    from kmq.publish import _env_message

    try:
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OSError as err:
        raise OutputWriteError(_env_message(target, err)) from err


def _target(run: RunData, out: str | os.PathLike | None, *, overwrite: bool) -> Path:
    from kmq.publish import check_not_input, input_paths, resolved

    target = run.path / REPORT if out is None else Path(out).expanduser()
    if out is not None and target.is_dir():
        target = target / REPORT
    inputs = [resolved(p) for p in run.owned_paths() if p.exists() and p.name != REPORT]
    inputs += input_paths((run.manifest.get("input") or {}).get("source"))
    subset = ((run.manifest.get("outputs") or {}).get("subset") or {}).get("path")
    inputs += input_paths(subset)
    if resolved(target) == resolved(run.path):
        raise OutputConflictError(f"--out {out} is the run directory itself; pass a file such as {target / REPORT}.")
    check_not_input("--out", target, [i for i in inputs if not i.is_dir() or i != resolved(run.path)])
    if (target.exists() or target.is_symlink()) and not overwrite and not is_kmq_page(target):
        raise OutputConflictError(
            f"--out {target} exists and kmq did not write it. Pass another --out, or --overwrite to replace it."
        )
    return target


def is_kmq_page(path: Path, generator: str = GENERATOR) -> bool:
    """Whether ``path`` is a page kmq wrote (its head names ``generator``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return f'<meta name="generator" content="{generator}">' in head
