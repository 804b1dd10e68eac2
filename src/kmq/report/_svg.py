"""Small static charts as inline SVG strings: bars, histograms, lines and a heat map.

No plotting library: each chart is a few hundred bytes to a few tens of kilobytes of markup, renders
without script and prints well. Coordinates are rounded to 0.1 px so the same data always gives the
same bytes. Every label passes through :func:`esc` (cluster names and mix values come from the pool).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kmq.report._html import esc, num

POOL, PICKS, RANDOM, QUOTA = "#8d99ae", "#d1495b", "#edae49", "#00798c"
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#2ca02c")  # fmt: skip

W, H = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 22, 36


def _f(v: float) -> str:
    return f"{round(v, 1):g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], start
    while v <= hi + step * 1e-6:
        ticks.append(round(v, 12))
        v += step
    return ticks


class Frame:
    """A plot area with linear x and y scales, axes, ticks and a legend; ``svg()`` closes it."""

    def __init__(self, name: str, x: tuple[float, float], y: tuple[float, float], *, width: int = W,
                 height: int = H, title: str = "", xlabel: str = "", ylabel: str = "") -> None:  # fmt: skip
        self.name, self.width, self.height = name, width, height
        self.x0, self.x1 = x if x[1] > x[0] else (x[0] - 0.5, x[0] + 0.5)
        self.y0, self.y1 = y if y[1] > y[0] else (y[0], y[0] + 1.0)
        self.parts: list[str] = []
        self.legend: list[tuple[str, str]] = []
        self.title, self.xlabel, self.ylabel = title, xlabel, ylabel

    def px(self, x: float) -> float:
        return LEFT + (x - self.x0) / (self.x1 - self.x0) * (self.width - LEFT - RIGHT)

    def py(self, y: float) -> float:
        return self.height - BOTTOM - (y - self.y0) / (self.y1 - self.y0) * (self.height - TOP - BOTTOM)

    def axes(self, *, xticks: Sequence[tuple[float, str]] | None = None, yfmt: str = "g") -> None:
        b, t = self.height - BOTTOM, TOP
        out = [f'<line class="ax" x1="{LEFT}" y1="{b}" x2="{self.width - RIGHT}" y2="{b}"/>',
               f'<line class="ax" x1="{LEFT}" y1="{t}" x2="{LEFT}" y2="{b}"/>']  # fmt: skip
        for v in nice_ticks(self.y0, self.y1):
            y = _f(self.py(v))
            out.append(f'<line class="grid" x1="{LEFT}" y1="{y}" x2="{self.width - RIGHT}" y2="{y}"/>'
                       f'<text class="tick" x="{LEFT - 4}" y="{y}" text-anchor="end" dy="0.32em">'
                       f"{esc(format(v, yfmt))}</text>")  # fmt: skip
        if xticks is None:
            xticks = [(v, format(v, "g")) for v in nice_ticks(self.x0, self.x1, 8)]
        for v, label in xticks:
            x = _f(self.px(v))
            out.append(f'<text class="tick" x="{x}" y="{b + 14}" text-anchor="middle">{esc(label)}</text>')
        if self.xlabel:
            out.append(f'<text class="lab" x="{_f((LEFT + self.width - RIGHT) / 2)}" y="{self.height - 4}" '
                       f'text-anchor="middle">{esc(self.xlabel)}</text>')  # fmt: skip
        if self.ylabel:
            out.append(f'<text class="lab" x="4" y="{TOP - 8}">{esc(self.ylabel)}</text>')
        self.parts[:0] = out

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def key(self, label: str, color: str) -> None:
        self.legend.append((label, color))

    def svg(self) -> str:
        legend, x = [], self.width - RIGHT
        for label, color in reversed(self.legend):
            x -= 24 + 7 * len(label)
            legend.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{color}"/>'
                          f'<text class="tick" x="{x + 13}" y="13">{esc(label)}</text>')  # fmt: skip
        title = f"<title>{esc(self.title)}</title>" if self.title else ""
        return (f'<svg class="plot" data-plot="{esc(self.name)}" viewBox="0 0 {self.width} {self.height}" '
                f'width="{self.width}" height="{self.height}" role="img">{title}'
                + "".join(self.parts) + "".join(legend) + "</svg>")  # fmt: skip


def bars(name: str, values: Sequence[float], *, color: str, title: str, ylabel: str, labels: Sequence[str],
         outline: Sequence[float] | None = None, outline_color: str = QUOTA, keys: Sequence[tuple[str, str]] = (),
         height: int = 200) -> str:  # fmt: skip
    """Vertical bars (one per label), optionally with an outline bar behind each (quota behind picks)."""
    n = len(values)
    top = max([*values, *(outline or []), 1.0])
    fr = Frame(name, (-0.5, n - 0.5), (0.0, top * 1.05), title=title, ylabel=ylabel, height=height)
    step = (fr.width - LEFT - RIGHT) / max(n, 1)
    bw = max(step * 0.8, 0.6)
    every = max(1, math.ceil(n / 30))
    fr.axes(xticks=[(i, labels[i]) for i in range(0, n, every)], yfmt="g")
    base = fr.py(0)
    for i, v in enumerate(values):
        x = fr.px(i) - bw / 2
        y = fr.py(v)
        fr.add(f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(bw)}" height="{_f(base - y)}" fill="{color}"/>')
        if outline is not None:  # drawn over the bar, so a full quota still shows its outline
            y = fr.py(outline[i])
            fr.add(f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(bw)}" height="{_f(base - y)}" fill="none" '
                   f'stroke="{outline_color}" stroke-width="1.5"/>')  # fmt: skip
    for label, c in keys:
        fr.key(label, c)
    return fr.svg()


def histogram(name: str, edges: Sequence[float], series: Sequence[tuple[str, Sequence[float], str]], *,
              title: str, xlabel: str) -> str:  # fmt: skip
    """Overlaid density histograms (each series a share per bin), drawn as filled steps."""
    top = max([max(s, default=0.0) for _, s, _ in series] + [1e-9])
    fr = Frame(name, (edges[0], edges[-1]), (0.0, top * 1.1), title=title, xlabel=xlabel, ylabel="share of rows")
    fr.axes(yfmt=".2g")
    for label, shares, color in series:
        pts = [f"{_f(fr.px(edges[0]))},{_f(fr.py(0))}"]
        for i, s in enumerate(shares):
            pts += [f"{_f(fr.px(edges[i]))},{_f(fr.py(s))}", f"{_f(fr.px(edges[i + 1]))},{_f(fr.py(s))}"]
        pts.append(f"{_f(fr.px(edges[-1]))},{_f(fr.py(0))}")
        fr.add(f'<polygon points="{" ".join(pts)}" fill="{color}" fill-opacity="0.35" stroke="{color}"/>')
        fr.key(label, color)
    return fr.svg()


def lines(name: str, x: Sequence[float], series: Sequence[tuple[str, Sequence[float | None], str]], *, title: str,
          xlabel: str, ylabel: str, mark_x: float | None = None, legend: bool = True,
          xticks: Sequence[tuple[float, str]] | None = None) -> str:  # fmt: skip
    """Line chart with dots; ``None`` values break a line; ``mark_x`` draws a vertical marker (the chosen k)."""
    ys = [v for _, s, _ in series for v in s if v is not None and math.isfinite(v)]
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 0.1
    fr = Frame(name, (min(x), max(x)), (lo - pad, hi + pad), title=title, xlabel=xlabel, ylabel=ylabel)
    fr.axes(xticks=xticks, yfmt=".3g")
    if mark_x is not None:
        mx = _f(fr.px(mark_x))
        fr.add(f'<line x1="{mx}" y1="{TOP}" x2="{mx}" y2="{fr.height - BOTTOM}" stroke="{PICKS}" '
               'stroke-dasharray="4 3"/>')  # fmt: skip
    for label, s, color in series:
        segs, cur = [], []
        for xi, v in zip(x, s, strict=True):
            if v is None or not math.isfinite(v):
                segs, cur = segs + [cur] if cur else segs, []
                continue
            cur.append(f"{_f(fr.px(xi))},{_f(fr.py(v))}")
        segs += [cur] if cur else []
        for seg in segs:
            fr.add(f'<polyline points="{" ".join(seg)}" fill="none" stroke="{color}" stroke-width="1.6"/>')
            fr.add("".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.4" fill="{color}"/>'
                           for p in seg))  # fmt: skip
        if legend:
            fr.key(label, color)
    return fr.svg()


def hbars(name: str, labels: Sequence[str], series: Sequence[tuple[str, Sequence[float], str]], *, title: str) -> str:
    """Grouped horizontal bars of shares (0..1) per label: the source/category mix of pool, picks and random."""
    rows, groups = len(labels), len(series)
    bar_h, gap, label_w = 7, 6, 190
    height = TOP + rows * (groups * bar_h + gap) + 24
    top = max([max(s, default=0.0) for _, s, _ in series] + [1e-9])
    width = W
    scale = (width - label_w - 60) / top
    out = []
    for i, label in enumerate(labels):
        y0 = TOP + i * (groups * bar_h + gap)
        text = label if len(label) <= 28 else label[:27] + "…"
        out.append(f'<text class="tick" x="{label_w - 6}" y="{_f(y0 + groups * bar_h / 2)}" text-anchor="end" '
                   f'dy="0.32em">{esc(text)}</text>')  # fmt: skip
        for j, (_, shares, color) in enumerate(series):
            w = shares[i] * scale
            out.append(f'<rect x="{label_w}" y="{y0 + j * bar_h}" width="{_f(w)}" height="{bar_h - 1}" '
                       f'fill="{color}"/>')  # fmt: skip
        best = max(s[i] for _, s, _ in series)
        out.append(f'<text class="tick" x="{_f(label_w + best * scale + 4)}" y="{_f(y0 + groups * bar_h / 2)}" '
                   f'dy="0.32em">{esc(num(best * 100, 3))}%</text>')  # fmt: skip
    fr = Frame(name, (0, 1), (0, 1), width=width, height=height, title=title)
    fr.parts = out
    for label, _, color in series:
        fr.key(label, color)
    return fr.svg()


def heatmap(name: str, rows: Sequence[str], cols: Sequence[str], values: Sequence[Sequence[float | None]], *,
            title: str) -> str:  # fmt: skip
    """A diverging heat map (blue negative, red positive, grey missing) of values[row][col]."""
    cell_w = max(min(24.0, (W - LEFT - RIGHT) / max(len(cols), 1)), 1.0)
    cell_h = 18
    width = int(LEFT + cell_w * len(cols) + RIGHT)
    height = TOP + cell_h * len(rows) + 28
    finite = [abs(v) for r in values for v in r if v is not None and math.isfinite(v)]
    span = max(finite, default=1.0) or 1.0
    out = []
    for i, label in enumerate(rows):
        y = TOP + i * cell_h
        out.append(f'<text class="tick" x="{LEFT - 4}" y="{y + cell_h / 2}" text-anchor="end" dy="0.32em">'
                   f"{esc(label)}</text>")  # fmt: skip
        for j, v in enumerate(values[i]):
            out.append(f'<rect x="{_f(LEFT + j * cell_w)}" y="{y}" width="{_f(cell_w)}" height="{cell_h - 1}" '
                       f'fill="{_diverging(v, span)}"><title>{esc(cols[j])}: {num(v)}</title></rect>')  # fmt: skip
    every = max(1, math.ceil(len(cols) / 30))
    for j in range(0, len(cols), every):
        out.append(f'<text class="tick" x="{_f(LEFT + (j + 0.5) * cell_w)}" y="{TOP + cell_h * len(rows) + 14}" '
                   f'text-anchor="middle">{esc(cols[j])}</text>')  # fmt: skip
    fr = Frame(name, (0, 1), (0, 1), width=max(width, 320), height=height, title=title)
    fr.parts = out
    fr.key(f"-{num(span, 3)}", _diverging(-span, span))
    fr.key(f"+{num(span, 3)}", _diverging(span, span))
    return fr.svg()


def _diverging(v: float | None, span: float) -> str:
    if v is None or not math.isfinite(v):
        return "#e5e5e5"
    t = max(-1.0, min(1.0, v / span))
    end = (209, 73, 91) if t > 0 else (48, 104, 168)
    rgb = [round(255 + (c - 255) * abs(t)) for c in end]
    return "#" + "".join(f"{c:02x}" for c in rgb)
