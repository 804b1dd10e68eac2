"""The experiment's tables: ``results.csv`` (one row per cell and task) and ``results.md`` (the paper's table).

``results.md`` has one row per pool x method x budget and one column per task: the task's primary metric,
mean ± standard deviation over the seeds (x100 when every value of the task lies in [0, 1]); then the
average column (the unweighted mean of the tasks per seed, as in paper.md's tables), the training tokens
per cell and, in a second table, the difference of each method to ``random`` with a paired 95% interval
over seeds: a t-interval on the per-seed differences (same pool, budget and seed), "n/a" below two seeds.
Failed and unfinished cells are listed under the tables. Nothing depends on timings, so a resumed run
writes the same bytes as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

CSV_COLUMNS = (
    "cell", "pool", "method", "params", "budget", "seed", "task", "metric", "value", "stderr", "n", "limited",
    "train_tokens", "status", "failed_step", "error",
)  # fmt: skip
BASELINE = "random"
#: two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
_T975 = (
    12.706204736174698, 4.302652729749464, 3.182446305284263, 2.7764451051977934, 2.5705818356363146,
    2.4469118511449692, 2.3646242515927844, 2.306004135204166, 2.262157162798205, 2.2281388519862744,
    2.200985160082949, 2.1788128296634177, 2.1603686564627917, 2.1447866879169273, 2.131449545559323,
    2.1199052992210112, 2.1098155778331806, 2.10092204024096, 2.093024054408263, 2.0859634472658364,
    2.079613844727662, 2.0738730679040147, 2.068657610419041, 2.0638985616280205, 2.059538552753294,
    2.055529438642871, 2.0518305164802833, 2.048407141795244, 2.045229642132703, 2.0422724563012373,
)  # fmt: skip
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (exact table to 30, then Cornish-Fisher).

    >>> round(t_quantile_975(2), 4), round(t_quantile_975(1000), 4)
    (4.3027, 1.9623)
    """
    if df < 1:
        raise ValueError(f"df={df} should be >= 1.")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for one value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def paired_interval(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float, int] | None:
    """Mean of ``a[s] - b[s]`` over the seeds both have, and its 95% t-interval; None below two seeds.

    Returns
    -------
    (mean, low, high, n) or None
    """
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    d = [a[s] - b[s] for s in seeds]
    mean, sd = mean_std(d)
    half = t_quantile_975(len(d) - 1) * sd / math.sqrt(len(d))
    return mean, mean - half, mean + half, len(d)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``results.csv``: the rows in the grid's order, floats written as their shortest exact repr."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, separators=(",", ":")) if v else ""
    return str(v)


def _fmt(x: float, scale: float | None) -> str:
    """A value for the table: x100 with 2 decimals, as it is (4 significant digits), or already scaled (None)."""
    if scale is None:
        return f"{x:.2f}"
    return f"{x * scale:.2f}" if scale == 100 else f"{x * scale:.4g}"


def _signed(x: float, scale: float | None) -> str:
    text = _fmt(x, scale)
    return text if text.startswith("-") else f"+{text}"


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], tasks: list[str]) -> str:
    """``results.md`` from the rows of :func:`csv_text` (see the module docstring); ``meta`` holds name, model,
    trainer and eval descriptions."""
    groups: dict[tuple, dict[str, dict[int, float]]] = {}
    metric: dict[str, str] = {}
    tokens: dict[tuple, list[int]] = {}
    limited = set()
    for r in rows:
        key = (r["pool"], r["method"], str(r["budget"]))
        g = groups.setdefault(key, {t: {} for t in tasks})
        if r["status"] == "ok" and r["value"] is not None:
            g[r["task"]][r["seed"]] = float(r["value"])
            metric.setdefault(r["task"], r["metric"])
            limited.update([r["task"]] if r["limited"] else [])
        if r["train_tokens"] is not None and r["task"] == tasks[0]:
            tokens.setdefault(key, []).append(int(r["train_tokens"]))
    scale = {t: 100.0 if all(0 <= v <= 1 for g in groups.values() for v in g[t].values()) else 1.0 for t in tasks}
    avg = {key: _average(g, tasks, scale) for key, g in groups.items()}
    pools = len({k[0] for k in groups}) > 1
    cells = meta["cells"]
    lines = [f"# {meta['name']}", "", f"- model: {meta['model']}", f"- trainer: {meta['trainer']}",
             f"- evaluation: {meta['eval']}", f"- cells: {meta['summary']}"]  # fmt: skip
    if limited:
        lines.append(
            f"- **limited**: {', '.join(sorted(limited))} ran on a subset (--limit): smoke-test numbers, not results"
        )
    lines += [
        "",
        "Primary metric of each task (x100 where it is a fraction), mean ± std over seeds; Average: the unweighted "
        "mean of the tasks per seed, then over seeds (as in the paper). Seeds: the seeds of finished cells.",
        "",
    ]
    head = (["pool"] if pools else []) + ["method", "budget", "seeds"]
    head += [f"{t} ({metric.get(t, '?')}{' x100' if scale[t] == 100 else ''}){' †' if t in limited else ''}"
             for t in tasks]  # fmt: skip
    head += ["Average", f"Δ Average vs {BASELINE} [95% CI]", "train tokens/cell"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, g in groups.items():
        seeds = sorted({s for t in tasks for s in g[t]})
        row = ([key[0]] if pools else []) + [key[1], key[2], str(len(seeds))]
        row += [_mean_std(list(g[t].values()), scale[t]) for t in tasks]
        row.append(_mean_std(list(avg[key].values()), None))
        base = (key[0], BASELINE, key[2])
        row.append("—" if key[1] == BASELINE or base not in avg else _delta(avg[key], avg[base], None))
        tok = tokens.get(key, [])
        row.append(f"{round(sum(tok) / len(tok)):,}" if tok else "—")
        lines.append("| " + " | ".join(row) + " |")
    if any(k[1] != BASELINE and (k[0], BASELINE, k[2]) in groups for k in groups):
        lines += ["", f"Difference to {BASELINE} (paired over seeds: same pool, budget and seed; mean "
                  "[95% t-interval]; n/a below two seeds):", ""]  # fmt: skip
        head2 = (["pool"] if pools else []) + ["method", "budget", *tasks, "Average"]
        lines += ["| " + " | ".join(head2) + " |", "|" + "---|" * len(head2)]
        for key, g in groups.items():
            base = (key[0], BASELINE, key[2])
            if key[1] == BASELINE or base not in groups:
                continue
            row = ([key[0]] if pools else []) + [key[1], key[2]]
            row += [_delta(g[t], groups[base][t], scale[t]) for t in tasks]
            row.append(_delta(avg[key], avg[base], None))
            lines.append("| " + " | ".join(row) + " |")
    bad = [c for c in cells if c["status"] != "ok"]
    if bad:
        lines += ["", "Cells without results:", ""]
        for c in bad:
            what = f"failed at {c['failed_step']}: {c['error']}" if c["status"] == "failed" else "not run yet"
            lines.append(f"- {c['cell']}: {what}")
    if limited:
        lines += ["", "† evaluated with --limit: a subset of the task's examples."]
    return "\n".join(lines) + "\n"


def _average(g: dict[str, dict[int, float]], tasks: list[str], scale: dict[str, float]) -> dict[int, float]:
    """Per seed, the unweighted mean of the (scaled) task values; seeds missing a task have none."""
    seeds = set.intersection(*(set(g[t]) for t in tasks)) if tasks else set()
    return {s: math.fsum(g[t][s] * scale[t] for t in tasks) / len(tasks) for s in sorted(seeds)}


def _mean_std(values: list[float], scale: float | None) -> str:
    if not values:
        return "—"
    mean, sd = mean_std(values)
    return _fmt(mean, scale) if sd is None else f"{_fmt(mean, scale)} ± {_fmt(sd, scale)}"


def _delta(a: dict[int, float], b: dict[int, float], scale: float | None) -> str:
    iv = paired_interval(a, b)
    if iv is None:
        seeds = sorted(set(a) & set(b))
        if not seeds:
            return "n/a"
        return f"{_signed(a[seeds[0]] - b[seeds[0]], scale)} (n/a: 1 seed)"
    mean, lo, hi, _ = iv
    return f"{_signed(mean, scale)} [{_signed(lo, scale)}, {_signed(hi, scale)}]"
