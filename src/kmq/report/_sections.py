"""The report's sections that come from manifest.json: run summary, diagnostics, mix, silhouette, rounds."""

from __future__ import annotations

import math
from typing import Any

from kmq.report import _svg
from kmq.report._html import dig, esc, missing, num, section, table, value

#: (key in a diagnostics block, label, +1 when higher is better / -1 when lower is better)
METRICS = (
    ("vendi", "Vendi score (effective number of distinct picks)", 1),
    ("coverage_mean", "coverage: mean cosine distance, pool row → nearest pick", -1),
    ("coverage_p95", "coverage: 95th percentile of that distance", -1),
    ("facility_location", "facility location: mean max cosine to a pick", 1),
    ("cluster_entropy", "entropy of picks over clusters (nats)", 1),
    ("cluster_kl", "KL(selected ‖ pool) over clusters (nats)", -1),
    ("empty_clusters", "clusters with no pick", -1),
    ("duplicates_exact", "exact duplicates among picks (first prompt)", -1),
    ("duplicates_near", "near duplicates among picks", -1),
    ("quality.mean", "mean quality of the picks", 1),
)
QUANTS = ("mean", "min", "q05", "q25", "q50", "q75", "q95", "max")


def stage(m: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """The manifest path and stats of a stage: ``stages.<name>`` (select) or ``stages.prepare.<name>`` (iterate)."""
    for path in (f"stages.{name}", f"stages.prepare.{name}"):
        found = dig(m, path)
        if isinstance(found, dict):
            return path, found
    return f"stages.{name}", {}


def params_text(params: Any) -> str:
    if not isinstance(params, dict) or not params:
        return ""
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def summary(m: dict[str, Any], command: str) -> str:
    inp, budget, counts = m.get("input") or {}, m.get("budget") or {}, m.get("counts") or {}
    method = m.get("method") or {}
    cp, cl = stage(m, "cluster")
    dp, dd = stage(m, "dedup")
    rows = [
        ("command", f"<code>kmq {esc(command)}</code>"),
        ("method", f"<b>{esc(method.get('name', '?'))}</b> <code>{esc(params_text(method.get('params')))}</code>"),
        ("pool", f"{esc(inp.get('source', '?'))} ({value('input.records', inp.get('records'))} records, "
                 f"{esc(inp.get('format', '?'))} as {esc(inp.get('container', '?'))})"),  # fmt: skip
        ("budget", f"{value('budget.resolved', budget.get('resolved'))} (asked {esc(budget.get('requested'))})"),
        ("selected", value("counts.selected", counts.get("selected"))),
    ]
    if cl:
        with_picks = value("counts.clusters_with_picks", counts.get("clusters_with_picks"))
        rows.append(("clusters", f"k = {value(f'{cp}.n_clusters', cl.get('n_clusters'))} "
                                 f"({esc(cl.get('k_source', ''))}), {with_picks} with picks"))  # fmt: skip
    if dd:
        removed = num((dd.get("records") or 0) - (dd.get("kept") or 0))
        rows.append(("dedup", f"{esc(dd.get('mode'))}: {removed} duplicates of "
                              f"{value(f'{dp}.records', dd.get('records'))} records removed"))  # fmt: skip
    rows += [("seed", value("seed", m.get("seed"))),
             ("time", f"{value('seconds', m.get('seconds'))} s (" + ", ".join(
                 f"{esc(k)} {num(v.get('seconds'))} s" for k, v in sorted((m.get('stages') or {}).items())
                 if isinstance(v, dict) and isinstance(v.get("seconds"), (int, float))) + ")"),
             ("created", esc(m.get("created_utc", "?"))),
             ("kmq", esc(dig(m, "versions.kmq") or "?"))]  # fmt: skip
    body = table(["", ""], rows, cls="summary")
    warnings = m.get("warnings") or []
    if warnings:
        body += "<h3>Warnings</h3><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings) + "</ul>"
    return section("summary", "Run", body)


def _verdict(sel: Any, rnd: Any, sign: int, method: str) -> str:
    if sel is None or rnd is None:
        return '<span class="mute">not computed for this run (no embeddings, clusters or scores)</span>'
    diff = float(sel) - float(rnd)
    rel = f" ({diff / abs(rnd) * 100:+.1f}%)" if rnd else ""
    if math.isclose(diff, 0.0, abs_tol=1e-12):
        word, cls = "same as random", "mute"
    else:
        better = diff * sign > 0
        word, cls = ("better than random" if better else "worse than random"), ("better" if better else "worse")
    return f'{esc(method)} {num(sel)} vs random {num(rnd)}{rel}: <span class="{cls}">{word}</span>'


def diagnostics(m: dict[str, Any]) -> str:
    diag = m.get("diagnostics")
    if not isinstance(diag, dict):
        return section("diagnostics", "Diagnostics", missing(
            "diagnostics", "manifest.json has no diagnostics (written by a kmq version before them): rerun."
        ))
    method = str(dig(m, "method.name") or "selected")

    def v(path: str) -> str:
        return value(f"diagnostics.{path}", dig(diag, path))

    rows = []
    for key, label, sign in METRICS:
        sel, rnd = dig(diag, f"selected.{key}"), dig(diag, f"random.{key}")
        extra = ""
        if key == "cluster_entropy" and dig(diag, "selected.cluster_entropy_max") is not None:
            extra = f' <span class="mute">(max {v("selected.cluster_entropy_max")})</span>'
        rows.append([esc(label), v(f"selected.{key}") + extra, v(f"random.{key}"), _verdict(sel, rnd, sign, method)])
    note = (f'<p class="mute">random: a seeded uniform subset of the same size ({v("random.n")} picks) from the '
            f"same candidates. Vendi on at most {v('settings.vendi_sample')} picks, coverage on at most "
            f"{v('settings.coverage_sample')} pool rows, near duplicates above cosine {v('settings.near_tau')}; "
            f"computed in {v('seconds')} s.</p>")  # fmt: skip
    body = table(["", esc(method), "random", f"{esc(method)} vs random"], rows, cls="diag") + note
    qrows = []
    for who, path in (("pool", "pool.quality"), (method, "selected.quality"), ("random", "random.quality")):
        q = dig(diag, path)
        if isinstance(q, dict):
            qrows.append([esc(who)] + [value(f"diagnostics.{path}.{k}", q.get(k)) for k in QUANTS])
    if qrows:
        body += "<h3>Quality quantiles</h3>" + table(["", *QUANTS], qrows, cls="quant")
    return section("diagnostics", "Diagnostics: " + method + " vs random", body)


def mix(m: dict[str, Any], *, top: int = 20) -> str:
    diag = m.get("diagnostics") if isinstance(m.get("diagnostics"), dict) else {}
    pool_mix = dig(diag, "pool.mix") or {}
    if not pool_mix:
        per_source = dig(m, "counts.per_source")
        body = missing("mix", "No source or category fields in the pool (or no diagnostics): no mix to show.")
        if per_source:
            body += table(["source", "picks"], [[esc(k), num(v)] for k, v in sorted(per_source.items())])
        return section("mix", "Source and category mix", body)
    method = str(dig(m, "method.name") or "selected")
    parts = []
    for field in sorted(pool_mix):
        counts = {who: dig(diag, f"{who}.mix") or {} for who in ("pool", "selected", "random")}
        counts = {who: c.get(field) or {} if isinstance(c, dict) else {} for who, c in counts.items()}
        order = sorted(counts["pool"], key=lambda v: (-counts["pool"][v], str(v)))
        shown, rest = order[:top], order[top:]
        series = []
        for who, label, color in (("pool", "pool", _svg.POOL), ("selected", method, _svg.PICKS),
                                  ("random", "random", _svg.RANDOM)):  # fmt: skip
            c = counts[who]
            total = sum(c.values())
            if not total:
                continue
            shares = [c.get(v, 0) / total for v in shown]
            if rest:
                shares.append(sum(c.get(v, 0) for v in rest) / total)
            series.append((label, shares, color))
        labels = [str(v) for v in shown] + ([f"({len(rest)} others)"] if rest else [])
        parts.append(f"<h3>{esc(field)}</h3>" + _svg.hbars(f"mix-{field}", labels, series, title=f"{field} mix"))
        rows = [[esc(v), value(("diagnostics", "pool", "mix", field, str(v)), counts["pool"].get(v)),
                 value(("diagnostics", "selected", "mix", field, str(v)), counts["selected"].get(v, 0)),
                 value(("diagnostics", "random", "mix", field, str(v)), counts["random"].get(v, 0))]
                for v in shown]  # fmt: skip
        parts.append(f"<details><summary>{esc(field)} counts</summary>"
                     + table([esc(field), "pool", esc(method), "random"], rows) + "</details>")  # fmt: skip
    return section("mix", "Source and category mix", "".join(parts))


def silhouette(m: dict[str, Any]) -> str:
    cp, cl = stage(m, "cluster")
    rows = cl.get("silhouette")
    if not isinstance(rows, list) or not rows:
        why = ("k was not chosen by silhouette (no --clusters auto): no silhouette curve."
               if cl else "This run used no clustering: no silhouette curve.")  # fmt: skip
        return section("silhouette", "Choice of k", missing("silhouette", why))
    indexed = sorted(((i, r) for i, r in enumerate(rows) if isinstance(r, dict) and "k" in r), key=lambda t: t[1]["k"])
    rows = [r for _, r in indexed]
    ks = [float(r["k"]) for r in rows]
    chart = _svg.lines("silhouette", ks, [("silhouette", [r.get("silhouette") for r in rows], _svg.QUOTA)],
                       title="cosine silhouette per candidate k", xlabel="k", ylabel="silhouette",
                       mark_x=cl.get("n_clusters"), legend=False, xticks=[(k, f"{k:g}") for k in ks])  # fmt: skip
    tab = table(["k", "silhouette", "empty clusters", "seconds"],
                [[value((*cp.split("."), "silhouette", str(i), "k"), r["k"]),
                  value((*cp.split("."), "silhouette", str(i), "silhouette"), r.get("silhouette")),
                  num(r.get("empty_clusters")), num(r.get("seconds"))] for i, r in indexed])  # fmt: skip
    chosen = value(f"{cp}.n_clusters", cl.get("n_clusters"))
    text = f"<p>--clusters auto chose k = {chosen} (dashed line).</p>"
    return section("silhouette", "Choice of k", text + chart + tab)


def rounds(m: dict[str, Any], run_rounds: list[dict[str, Any]]) -> str:
    if not run_rounds:
        return section("rounds", "Rounds", missing("rounds", "This iterate run has no finished round yet."))
    rows = []
    for r in run_rounds:
        st = r.get("stats") or {}
        w = [x for x in (r.get("weights") or []) if isinstance(x, (int, float))]
        rows.append([num(r.get("round")), num(r.get("size")), num(dig(st, "select.clusters_drawn")),
                     num(dig(st, "judge.scored")), num(dig(st, "judge.mean_S")),
                     f"{num(min(w)) if w else '–'} .. {num(max(w)) if w else '–'}"])  # fmt: skip
    body = table(["round", "picks", "clusters drawn", "scored", "mean signal S", "weights (min .. max)"], rows)
    traj = [r.get("weights") for r in run_rounds]
    xs = [float(r.get("round", i + 1)) for i, r in enumerate(run_rounds)]
    if run_rounds[-1].get("weights_after"):
        traj.append(run_rounds[-1]["weights_after"])
        xs.append(xs[-1] + 1)
    k = max((len(t) for t in traj if isinstance(t, list)), default=0)
    if k:
        series = [(f"cluster {c}", [t[c] if isinstance(t, list) and c < len(t) else None for t in traj],
                   _svg.PALETTE[c % len(_svg.PALETTE)]) for c in range(k)]  # fmt: skip
        ticks = [(x, f"r{int(x):02d}" if i < len(run_rounds) else "after") for i, x in enumerate(xs)]
        body += _svg.lines("weights", xs, series, title="cluster weights per round", xlabel="round (weights used)",
                           ylabel="weight", legend=k <= 12, xticks=ticks)  # fmt: skip
    signals = [(r, r.get("signal")) for r in run_rounds if isinstance(r.get("signal"), list)]
    if signals:
        ks = max(len(s) for _, s in signals)
        body += "<h3>Per-round signal per cluster</h3>" + _svg.heatmap(
            "signal", [f"r{int(r.get('round', 0)):02d}" for r, _ in signals], [str(c) for c in range(ks)],
            [[s[c] if c < len(s) else None for c in range(ks)] for _, s in signals], title="reweighting signal")
    else:
        body += missing("signal", "No round has a reweighting signal yet (the last round is not reweighted).")
    return section("rounds", "Rounds: cluster weights and signal", body)
