"""The report's sections that come from the run's tables: cluster bars, the map, quality, cluster cards.

The map is one ``<canvas>``: the points (at most :data:`MAP_MAX` of ``map.parquet``) are embedded as one
base64 block of little-endian uint16 x, y, cluster and a uint8 pick flag (7 bytes a point), and
:data:`MAP_JS` draws them into an ImageData buffer (pool rows) and as squares (picks) when the page loads.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import numpy as np

from kmq.report import _svg
from kmq.report._html import esc, json_block, missing, num, section, value
from kmq.report._rundir import RunData
from kmq.report._terms import top_terms

MAP_MAX = 100_000
MAP_W, MAP_H = 760, 520
CARDS_MAX = 200
TERMS_SAMPLE = 200_000
NONE = 65535


class PoolView:
    """Aligned NumPy columns of ``pool.parquet`` (previews stay in Arrow and are taken by row).

    Attributes
    ----------
    n : int
    cluster : ndarray (n,), int64, -1 where null
    quality : ndarray (n,), float64, NaN where null
    selected : ndarray (n,), bool
    rank : ndarray (n,), int64, -1 where null
    removed : ndarray (n,), bool, a duplicate or contaminated row (never a candidate)
    """

    def __init__(self, pool: Any) -> None:
        self.table = pool
        self.n = pool.num_rows
        self.pool_index = _ints(pool, "pool_index", np.arange(self.n))
        self.cluster = _ints(pool, "cluster", -1)
        self.rank = _ints(pool, "rank", -1)
        self.quality = _floats(pool, "quality")
        self.selected = _bools(pool, "selected")
        self.removed = _valid(pool, "duplicate_of") | _valid(pool, "contaminated")

    def previews(self, rows: np.ndarray) -> list[str]:
        if "preview" not in self.table.column_names:
            return [""] * len(rows)
        return [p or "" for p in self.table.column("preview").take(np.asarray(rows, dtype=np.int64)).to_pylist()]

    def ids(self, rows: np.ndarray) -> list[str]:
        return [str(i) for i in self.table.column("id").take(np.asarray(rows, dtype=np.int64)).to_pylist()]


def _col(table: Any, name: str) -> Any:
    return table.column(name) if name in table.column_names else None


def _ints(table: Any, name: str, fill: Any) -> np.ndarray:
    col = _col(table, name)
    if col is None:
        return np.broadcast_to(np.asarray(fill, dtype=np.int64), (table.num_rows,)).copy()
    return np.asarray(col.fill_null(-1).to_numpy(), dtype=np.int64)


def _floats(table: Any, name: str) -> np.ndarray:
    col = _col(table, name)
    if col is None:
        return np.full(table.num_rows, np.nan)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _bools(table: Any, name: str) -> np.ndarray:
    col = _col(table, name)
    return np.zeros(table.num_rows, bool) if col is None else np.asarray(col.fill_null(False).to_numpy(), dtype=bool)


def _valid(table: Any, name: str) -> np.ndarray:
    col = _col(table, name)
    return np.zeros(table.num_rows, bool) if col is None else np.asarray(col.is_valid().to_numpy(), dtype=bool)


# ------------------------------------------------------------------------------------------------ sections


def cluster_bars(run: RunData) -> str:
    cl = run.clusters
    if cl is None or cl.num_rows == 0:
        return section("clusters", "Clusters: size, quota and picks", missing(
            "clusters", f"No clusters: the method {run.manifest.get('method', {}).get('name', '?')} used none "
            "(clusters.parquet absent or empty)."))  # fmt: skip
    cols = {c: np.asarray(cl.column(c).fill_null(0).to_numpy(), dtype=np.int64)
            for c in ("cluster", "size", "quota", "picks") if c in cl.column_names}  # fmt: skip
    order = np.argsort(cols["cluster"], kind="stable")
    labels = [str(c) for c in cols["cluster"][order]]
    size = cols["size"][order].tolist()
    picks = cols.get("picks", np.zeros(len(order), np.int64))[order].tolist()
    quota = cols.get("quota", np.zeros(len(order), np.int64))[order].tolist()
    body = _svg.bars("cluster-size", size, color=_svg.POOL, title="pool rows per cluster", ylabel="pool rows",
                     labels=labels, keys=[("pool rows", _svg.POOL)])  # fmt: skip
    body += _svg.bars("cluster-picks", picks, color=_svg.PICKS, outline=quota, labels=labels,
                      title="quota (outline) and picks (filled) per cluster", ylabel="picks",
                      keys=[("quota", _svg.QUOTA), ("picks", _svg.PICKS)])  # fmt: skip
    total = int(np.sum(picks))
    body += (f'<p class="mute">{len(labels)} clusters, {num(int(np.sum(size)))} pool rows, '
             f"{num(int(np.sum(quota)))} allocated, {num(total)} picked; "
             f"{num(int(np.sum(np.asarray(picks) == 0)))} clusters without picks.</p>")  # fmt: skip
    return section("clusters", "Clusters: size, quota and picks", body)


def map_section(run: RunData, pv: PoolView | None) -> tuple[str, str | None]:
    """The map section and the JSON text of its data block (None without a map)."""
    mp = run.map
    title = "Map of the pool (2-D projection of the clustering embeddings)"
    if mp is None or mp.num_rows == 0:
        name = run.manifest.get("method", {}).get("name", "?")
        return section("map", title, missing(
            "map", f"No map: the method {name} used no embeddings (map.parquet absent or empty).")), None  # fmt: skip
    idx = np.asarray(mp.column("pool_index").to_numpy(), dtype=np.int64)
    xy = np.stack([np.asarray(mp.column(c).to_numpy(), dtype=np.float64) for c in ("x", "y")], axis=1)
    sel, cl = _map_labels(run, pv, idx)
    order = np.lexsort((idx, sel))  # picks drawn last, in pool order
    shown = len(order)
    if shown > MAP_MAX:  # a seeded sample keeps every pick it can
        rng = np.random.default_rng(0)
        order = np.sort(rng.choice(order, size=MAP_MAX, replace=False))
        order = order[np.lexsort((idx[order], sel[order]))]
    xy, sel, cl = xy[order], sel[order], cl[order]
    finite = np.isfinite(xy).all(axis=1)
    xy, sel, cl = xy[finite], sel[finite], cl[finite]
    lo, hi = _view(xy)
    span = np.maximum(hi - lo, 1e-12)
    q = np.round(np.clip((xy - lo) / span, 0.0, 1.0) * 65534).astype("<u2")
    cq = np.where(cl < 0, NONE, cl % NONE).astype("<u2")
    blob = q[:, 0].tobytes() + q[:, 1].tobytes() + cq.tobytes() + sel.astype(np.uint8).tobytes()
    data = {"n": int(len(q)), "span": [float(span[0]), float(span[1])], "palette": list(_svg.PALETTE),
            "b64": base64.b64encode(blob).decode("ascii")}  # fmt: skip
    note = f"{num(int(len(q)))} points ({num(int(sel.sum()))} picks)"
    if shown > len(q):
        note += f", a seeded sample of the {num(shown)} rows of map.parquet"
    body = (f'<canvas class="plot" data-plot="map" id="kmq-map" width="{MAP_W}" height="{MAP_H}"></canvas>'
            '<p class="legend"><span><i class="sw pool"></i>pool rows, coloured by cluster</span>'
            f'<span><i class="sw pick"></i>picks</span><span class="mute">{note}</span></p>')  # fmt: skip
    return section("map", title, body), json_block(data)


def _view(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The map's bounds: every point, but at most a third of the 0.5-99.5th percentile range beyond it on each
    side (a few far outliers would squash the map; they are drawn on its edge)."""
    if not len(xy):
        return np.zeros(2), np.ones(2)
    q_lo, q_hi = np.quantile(xy, [0.005, 0.995], axis=0)
    reach = (q_hi - q_lo) / 3
    return np.maximum(xy.min(axis=0), q_lo - reach), np.minimum(xy.max(axis=0), q_hi + reach)


def _map_labels(run: RunData, pv: PoolView | None, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if pv is not None and pv.n:
        order = np.argsort(pv.pool_index, kind="stable")  # pool order already: a no-op pass
        pos = order[np.clip(np.searchsorted(pv.pool_index[order], idx), 0, pv.n - 1)]
        ok = pv.pool_index[pos] == idx
        return np.where(ok, pv.selected[pos], False), np.where(ok, pv.cluster[pos], -1)
    sel = np.zeros(len(idx), bool)
    cl = np.full(len(idx), -1, np.int64)
    if run.selection is not None:
        picks = np.asarray(run.selection.column("pool_index").to_numpy(), dtype=np.int64)
        sel = np.isin(idx, picks)
    return sel, cl


MAP_JS = """(function(){
var el=document.getElementById('kmq-map-data'),cv=document.getElementById('kmq-map');
if(!el||!cv)return;
var d=JSON.parse(el.textContent),n=d.n,s=atob(d.b64),b=new Uint8Array(s.length);
for(var i=0;i<s.length;i++)b[i]=s.charCodeAt(i);
var X=new Uint16Array(b.buffer,0,n),Y=new Uint16Array(b.buffer,2*n,n),C=new Uint16Array(b.buffer,4*n,n),
S=new Uint8Array(b.buffer,6*n,n),W=cv.width,H=cv.height,P=12;
var k=Math.min((W-2*P)/d.span[0],(H-2*P)/d.span[1]),ox=(W-k*d.span[0])/2,oy=(H-k*d.span[1])/2;
var fx=k*d.span[0]/65534,fy=k*d.span[1]/65534,g=cv.getContext('2d'),img=g.createImageData(W,H),px=img.data;
var pal=d.palette.map(function(h){var v=parseInt(h.slice(1),16);
return [(v>>16)&255,(v>>8)&255,v&255].map(function(c){return Math.round(c+(255-c)*0.45);});});
for(i=0;i<px.length;i+=4){px[i]=px[i+1]=px[i+2]=255;px[i+3]=255;}
for(i=0;i<n;i++){if(S[i])continue;var x=Math.round(ox+X[i]*fx),y=Math.round(H-oy-Y[i]*fy),
c=C[i]===65535?[184,193,204]:pal[C[i]%pal.length];
for(var dy=0;dy<2;dy++)for(var dx=0;dx<2;dx++){var p=((y+dy)*W+x+dx)*4;if(p>=0&&p<px.length-3){
px[p]=c[0];px[p+1]=c[1];px[p+2]=c[2];}}}
g.putImageData(img,0,0);g.fillStyle='#111';
for(i=0;i<n;i++){if(!S[i])continue;g.fillRect(Math.round(ox+X[i]*fx)-1,Math.round(H-oy-Y[i]*fy)-1,3,3);}
cv.setAttribute('data-drawn',String(n));
})();"""


def quality_section(run: RunData, pv: PoolView | None) -> str:
    title = "Quality: picks vs pool"
    if pv is None or not np.isfinite(pv.quality).any():
        sel_q = None
        if pv is None and run.selection is not None and "quality" in run.selection.column_names:
            sel_q = _floats(run.selection, "quality")
        if sel_q is None or not np.isfinite(sel_q).any():
            return section("quality", title, missing(
                "quality", "No quality scores in this run (no scorer, or no pool.parquet): no histogram."))
        pool_q, picks_q = None, sel_q
    else:
        pool_q, picks_q = pv.quality, pv.quality[pv.selected]
    ref = pool_q if pool_q is not None else picks_q
    ref = ref[np.isfinite(ref)]
    lo, hi = float(ref.min()), float(ref.max())
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, 31)
    series = []
    for label, q, color in (("pool", pool_q, _svg.POOL), ("picks", picks_q, _svg.PICKS)):
        if q is None:
            continue
        q = q[np.isfinite(q)]
        h = np.histogram(q, bins=edges)[0]
        series.append((label, (h / max(len(q), 1)).tolist(), color))
    chart = _svg.histogram("quality", edges.tolist(), series, title="quality histogram", xlabel="quality score")
    note = "" if pool_q is not None else missing("quality-pool", "No pool.parquet: only the picks are shown.")
    return section("quality", title, chart + note)


def cards(run: RunData, pv: PoolView | None) -> str:
    title = "Clusters one by one"
    if pv is None or not (pv.cluster >= 0).any():
        why = ("No pool.parquet in this run directory: no per-cluster cards." if pv is None
               else "No clusters in this run: no per-cluster cards.")  # fmt: skip
        return section("cards", title, missing("cards", why))
    k = int(pv.cluster.max()) + 1
    stats = _cluster_stats(run, pv, k)
    order = sorted((c for c in range(k) if stats[c]["size"]), key=lambda c: (-stats[c]["size"], c))[:CARDS_MAX]
    order.sort()
    terms = _terms(pv, k)
    picked, passed = _examples(pv, k)
    out = []
    for c in order:
        st = stats[c]
        meta = " · ".join([f"size {value(('clusters', str(c), 'size'), st['size'], source='clusters.parquet')}",
                           f"quota {value(('clusters', str(c), 'quota'), st['quota'], source='clusters.parquet')}",
                           f"picks {value(('clusters', str(c), 'picks'), st['picks'], source='clusters.parquet')}",
                           "mean quality " + value(("clusters", str(c), "mean_quality"), st["mean_quality"],
                                                   source="clusters.parquet")])  # fmt: skip
        body = [f'<div class="card" data-cluster="{c}"><h3>Cluster {c}</h3><p>{meta}</p>']
        if terms.get(c):
            body.append(f'<p>top terms: <span class="terms">{esc(", ".join(terms[c]))}</span></p>')
        body.append(_examples_list("picked", pv, picked.get(c, []), show_rank=True))
        body.append(_examples_list("not picked", pv, passed.get(c, []), show_rank=False))
        out.append("".join(body) + "</div>")
    note = ""
    if k > len(order):
        note = f'<p class="mute">The {len(order)} largest of {k} clusters, in cluster order.</p>'
    return section("cards", title, note + '<div class="cards">' + "".join(out) + "</div>")


def _cluster_stats(run: RunData, pv: PoolView, k: int) -> list[dict[str, Any]]:
    ok = pv.cluster >= 0
    size = np.bincount(pv.cluster[ok], minlength=k)
    picks = np.bincount(pv.cluster[ok & pv.selected], minlength=k)
    fq = ok & np.isfinite(pv.quality)
    qsum = np.bincount(pv.cluster[fq], weights=pv.quality[fq], minlength=k)
    qn = np.bincount(pv.cluster[fq], minlength=k)
    stats = [{"size": int(size[c]), "picks": int(picks[c]), "quota": None,
              "mean_quality": float(qsum[c] / qn[c]) if qn[c] else None} for c in range(k)]  # fmt: skip
    cl = run.clusters
    if cl is not None:
        ids = cl.column("cluster").to_pylist()
        for name in ("size", "quota", "picks", "mean_quality"):
            if name in cl.column_names:
                for c, v in zip(ids, cl.column(name).to_pylist(), strict=True):
                    if c is not None and 0 <= c < k:
                        stats[c][name] = v
    return stats


def _terms(pv: PoolView, k: int) -> dict[int, list[str]]:
    rows = np.arange(pv.n)
    if pv.n > TERMS_SAMPLE:
        rows = np.sort(np.random.default_rng(0).choice(pv.n, size=TERMS_SAMPLE, replace=False))
    if "preview" not in pv.table.column_names:
        return {}
    return top_terms(pv.table.column("preview").take(rows).fill_null(""), pv.cluster[rows], k)


def _examples(pv: PoolView, k: int) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Per cluster: its first 3 picks (by rank) and 3 candidates not picked (best, median, worst quality)."""
    picked: dict[int, list[int]] = {}
    rows = np.flatnonzero(pv.selected & (pv.cluster >= 0))
    rows = rows[np.lexsort((pv.rank[rows], pv.cluster[rows]))]  # stable: ties stay in pool order
    for c, grp in _groups(rows, pv.cluster[rows]):
        picked[c] = grp[:3].tolist()
    passed: dict[int, list[int]] = {}
    rows = np.flatnonzero(~pv.selected & ~pv.removed & (pv.cluster >= 0))
    q = pv.quality[rows]
    finite = np.isfinite(q)
    lo, hi = (float(q[finite].min()), float(q[finite].max())) if finite.any() else (0.0, 1.0)
    # one float key: cluster first, then quality descending (unscored last); a single sort, not a lexsort
    key = pv.cluster[rows] * 2.0 + np.where(finite, (hi - q) / max(hi - lo, 1e-300), 1.5)
    rows = rows[np.argsort(key, kind="stable")]
    for c, grp in _groups(rows, pv.cluster[rows]):
        scored = grp[np.isfinite(pv.quality[grp])]
        grp = scored if len(scored) else grp
        m = len(grp)
        passed[c] = grp[sorted({0, m // 2, m - 1})].tolist() if m else []
    return picked, passed


def _groups(rows: np.ndarray, keys: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(key, rows) for each run of equal ``keys`` (rows sorted by key)."""
    if not len(rows):
        return
    cuts = np.flatnonzero(np.diff(keys)) + 1
    for start, grp in zip(np.concatenate([[0], cuts]), np.split(rows, cuts), strict=True):
        yield int(keys[start]), grp


def _examples_list(label: str, pv: PoolView, rows: list[int], *, show_rank: bool) -> str:
    if not rows:
        return f'<p class="mute">{esc(label)}: none</p>'
    arr = np.asarray(rows, dtype=np.int64)
    items = []
    for r, i, text in zip(rows, pv.ids(arr), pv.previews(arr), strict=True):
        tag = f"rank {num(int(pv.rank[r]))}, " if show_rank and pv.rank[r] >= 0 else ""
        items.append(f'<li><span class="mute">{tag}quality {num(float(pv.quality[r]))}, '
                     f'<span class="id">{esc(i)}</span>:</span> {esc(text)}</li>')  # fmt: skip
    return f"<b>{esc(label)}</b><ul>" + "".join(items) + "</ul>"
