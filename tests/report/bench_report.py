"""Time, peak memory and page size of ``write_report`` on synthetic run directories (BENCHMARKS.md).

    .venv/bin/python tests/report/bench_report.py --rows 100000 1000000

Each size: a synthetic run directory (tests/report/synthetic_run.py: pool.parquet with 160-character
previews, map.parquet of 50,000 points with picks, clusters.parquet, diagnostics) is built once, then
``write_report`` runs in a fresh process, three times; the best time and that process's peak RSS (and
its RSS after ``import kmq.report``) are printed, with the page size and the page's parts.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# peak RSS from /proc/self/status VmHWM: ru_maxrss would carry the parent's peak across fork + exec on Linux
CHILD = r"""
import json, sys, time
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
import kmq.report
from kmq.report import write_report
base = hwm()
t = time.perf_counter()
path = write_report(sys.argv[1])
dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "peak_rss_kb": hwm(), "import_rss_kb": base, "bytes": path.stat().st_size}))
"""


def parts(page: str) -> dict[str, int]:
    """Bytes of the page's map data block, its SVG charts and the rest."""
    start = page.find('<script type="application/json" id="kmq-map-data">')
    end = page.find("</script>", start) if start >= 0 else -1
    map_bytes = end - start if start >= 0 else 0
    svg = sum(len(s) + 6 for s in page.split("<svg")[1:] for s in [s.split("</svg>")[0]])
    return {"map_data": map_bytes, "svg": svg, "rest": len(page) - map_bytes - svg}


def browser_times(page: Path) -> dict[str, float]:
    """Best of three loads in headless Chromium: ms to DOMContentLoaded and to the end of the load event
    (the inline map script runs before it), and ms of the map script alone."""
    from cdp import chromium, find_chromium

    best: dict[str, float] = {}
    with chromium(find_chromium()) as b:
        for _ in range(3):
            b.open(page, settle=0)
            nav = b.evaluate("JSON.stringify(performance.getEntriesByType('navigation')[0])")
            nav = json.loads(nav)
            t = {"dom_ms": nav["domContentLoadedEventEnd"], "load_ms": nav["loadEventEnd"]}
            best = {k: min(v, best.get(k, v)) for k, v in t.items()}
        code = b.evaluate("document.querySelector('body > script:not([type])').textContent")
        ms = b.evaluate(f"(() => {{ const t = performance.now(); {code}; return performance.now() - t; }})()")
        best["map_script_ms"] = ms
    return {k: round(v, 1) for k, v in best.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--chromium", action="store_true", help="also time loading the page in headless Chromium")
    args = ap.parse_args()
    sys.path.insert(0, str(HERE))
    from synthetic_run import make_run

    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}")
    for n in args.rows:
        budget, k = n // 10, max(2, round(math.sqrt(n / 2)))
        with tempfile.TemporaryDirectory() as tmp:
            run = make_run(Path(tmp) / "run", rows=n, budget=budget, clusters=k, auto=True)
            runs = []
            for _ in range(args.repeat):
                out = subprocess.run([sys.executable, "-c", CHILD, str(run)], capture_output=True, text=True,
                                     check=True).stdout  # fmt: skip
                runs.append(json.loads(out))
            best = min(runs, key=lambda r: r["seconds"])
            page = (run / "report.html").read_text(encoding="utf-8")
            mb = {k: round(best[f"{k}_kb"] / 1024) for k in ("peak_rss", "import_rss")}
            row = {"rows": n, "picks": budget, "k": k, "seconds": round(best["seconds"], 2),
                   "peak_rss_mb": mb["peak_rss"], "import_rss_mb": mb["import_rss"],
                   "page_kb": round(best["bytes"] / 1024)}  # fmt: skip
            row.update({f"{p}_kb": round(b / 1024) for p, b in parts(page).items()})
            if args.chromium:
                row.update(browser_times(run / "report.html"))
            print(json.dumps(row))


if __name__ == "__main__":
    main()
