"""HTML building blocks of the report pages: escaping, number formatting, values the tests can read back.

Every text that comes from the run (ids, prompts, source names, paths, parameters) goes through
:func:`esc`. Numbers from the manifest are shown by :func:`value`, which also writes the exact value and
its manifest path into ``data-value`` and ``data-key`` attributes, so a page's figures can be checked
against manifest.json from the DOM.

The page carries a Content-Security-Policy that allows only its own inline script and style (by
SHA-256) and no network at all: even a prompt that escaped the escaping could neither run nor load.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

GENERATOR = "kmq report"


def esc(text: Any) -> str:
    """``text`` as HTML text or attribute value (``& < > " '`` escaped)."""
    return html.escape(str(text), quote=True)


def num(v: Any, digits: int = 4) -> str:
    """A number for reading: ints with thousands separators, floats to ``digits`` significant digits."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        if v != 0 and (abs(v) >= 10**digits or abs(v) < 10 ** -(digits - 1)):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}" if abs(v) < 10 ** (digits - 1) else f"{v:,.0f}"
    return esc(v)


def _json_value(v: Any) -> str:
    return json.dumps(v if not isinstance(v, float) or math.isfinite(v) else None)


def value(key: str | Sequence[str], v: Any, *, digits: int = 4, source: str = "") -> str:
    """A number on the page, with its path in the run's data in ``data-key`` and the exact value in ``data-value``.

    ``key`` is a dotted path (``"diagnostics.selected.vendi"``) or a sequence of parts (for parts with dots);
    ``data-key`` holds the parts as a JSON array. ``source`` names a file other than manifest.json
    (``data-source="clusters.parquet"``).
    """
    parts = key.split(".") if isinstance(key, str) else list(key)
    src = f' data-source="{esc(source)}"' if source else ""
    return (f'<span class="v" data-key="{esc(json.dumps(parts))}"{src} data-value="{esc(_json_value(v))}">'
            f"{num(v, digits)}</span>")  # fmt: skip


def dig(d: Any, path: str) -> Any:
    """``d["a"]["b"]`` for ``path="a.b"``; None where a step is missing."""
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def table(head: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """A table of already escaped cells."""
    th = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def missing(what: str, why: str) -> str:
    """The note that stands where a section's data is absent."""
    return f'<p class="missing" data-missing="{esc(what)}">{esc(why)}</p>'


def section(ident: str, title: str, body: str) -> str:
    return f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>{body}</section>'


CSS = """
:root{--fg:#1d2330;--mute:#5c6676;--line:#d8dde5;--bg:#fff;--card:#f6f7f9}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
margin:0 auto;max-width:1100px;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:0 0 6px}
nav a{margin-right:12px;color:#00798c;text-decoration:none}
table{border-collapse:collapse;margin:6px 0 12px}
th,td{border-bottom:1px solid var(--line);padding:3px 10px 3px 0;text-align:left;vertical-align:top}
td .v,td.n{font-variant-numeric:tabular-nums}
.missing{color:var(--mute);font-style:italic;background:var(--card);padding:8px 12px;border-left:3px solid #edae49}
.better{color:#1a7f37}.worse{color:#b42318}.mute{color:var(--mute)}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:10px 12px;overflow:hidden}
.card ul{margin:4px 0 8px;padding-left:18px}.card li{margin:2px 0;word-break:break-word;white-space:pre-wrap}
.terms{color:#00798c}
svg.plot{display:block;max-width:100%;height:auto;margin:6px 0}
svg .ax{stroke:#444;stroke-width:1}svg .grid{stroke:#e6e8ec;stroke-width:1}
svg .tick{font-size:10px;fill:#444}svg .lab{font-size:11px;fill:#333}
canvas.plot{border:1px solid var(--line);display:block;max-width:100%}
.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
.sw.pool{background:#b8c1cc}.sw.pick{background:#111}
code,.id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
details summary{cursor:pointer;color:var(--mute)}
"""


def page(title: str, body: str, *, script: str = "", data: dict[str, str] | None = None) -> str:
    """A complete, self-contained HTML document; ``data`` holds ``id -> JSON text`` blocks the script reads."""
    css = CSS.strip()
    blocks = "".join(f'<script type="application/json" id="{esc(k)}">{v}</script>' for k, v in (data or {}).items())
    policy = f"default-src 'none'; style-src '{_sha256(css)}'; img-src data:"
    if script:
        policy += f"; script-src '{_sha256(script)}'"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(policy)}">'
        f'<meta name="generator" content="{GENERATOR}"><meta name="viewport" content="width=device-width">'
        f"<title>{esc(title)}</title><style>{css}</style></head>\n<body>\n{body}\n{blocks}"
        + (f"<script>{script}</script>" if script else "")
        + "\n</body></html>\n"
    )


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def json_block(obj: Any) -> str:
    """JSON safe inside ``<script type="application/json">`` (no ``<``, so no ``</script>`` can appear)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).replace("<", "\\u003c")
