"""The report pages in real headless Chromium: they load with no error and no request, every plot is drawn,
the numbers on the page are those of the run's files, and prompts cannot run script.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from synthetic_run import XSS, make_run

from kmq.report import write_compare, write_report

PLOTS_JS = """JSON.stringify([...document.querySelectorAll('.plot')].map(e => {
  const r = e.getBoundingClientRect();
  return {name: e.getAttribute('data-plot'), x: r.left + scrollX, y: r.top + scrollY, w: r.width, h: r.height};
}))"""
VALUES_JS = """JSON.stringify([...document.querySelectorAll('[data-key]')].map(e => ({
  key: JSON.parse(e.getAttribute('data-key')), value: JSON.parse(e.getAttribute('data-value')),
  source: e.getAttribute('data-source') || 'manifest.json', text: e.textContent})))"""


def load(browser, path):
    browser.open(path)
    assert browser.errors() == []
    assert browser.requests() == [path.resolve().as_uri()]  # the page asked for nothing but itself
    return json.loads(browser.evaluate(PLOTS_JS))


def assert_drawn(browser, plots):
    """Each plot's box in a screenshot holds enough non-white pixels of more than one colour."""
    for p in plots:
        assert p["w"] > 50 and p["h"] > 50, p
        px = browser.screenshot({"x": p["x"], "y": p["y"], "width": p["w"], "height": p["h"]})[..., :3]
        inked = (px < 235).any(axis=2).mean()
        colours = len(np.unique(px.reshape(-1, 3)[::7], axis=0))
        assert inked > 0.004 and colours > 3, (p["name"], inked, colours)


def walk(obj, key):
    """``obj[k0][k1]...``; None below a null (a block the run has not got), KeyError for a key never written."""
    for part in key:
        if obj is None:
            return None
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def assert_numbers_match(browser, run_dir, *, at_least):
    manifest = json.loads((run_dir / "manifest.json").read_text())
    clusters = None
    if (run_dir / "clusters.parquet").exists():
        clusters = {r["cluster"]: r for r in pq.read_table(run_dir / "clusters.parquet").to_pylist()}
    shown = json.loads(browser.evaluate(VALUES_JS))
    assert len(shown) >= at_least
    for item in shown:
        if item["source"] == "clusters.parquet":
            _, c, field = item["key"]
            truth = clusters[int(c)][field]
        else:
            assert item["source"] == "manifest.json"
            truth = walk(manifest, item["key"])
        if isinstance(truth, float) and not math.isfinite(truth):
            truth = None
        assert item["value"] == truth, item
        text = item["text"].replace(",", "")
        if truth is None:
            assert text == "–", item
        elif isinstance(truth, bool) or not isinstance(truth, (int, float)):
            continue
        else:
            assert float(text) == pytest.approx(truth, rel=5e-4, abs=1e-12), item
    return shown


def test_real_select_run(browser, kmq_run):
    report = write_report(kmq_run)
    plots = load(browser, report)
    names = {p["name"] for p in plots}
    assert {"cluster-size", "cluster-picks", "map", "quality", "mix-source", "mix-category"} <= names
    assert_drawn(browser, plots)
    shown = assert_numbers_match(browser, kmq_run, at_least=60)
    keys = {tuple(s["key"]) for s in shown}
    assert ("diagnostics", "selected", "vendi") in keys and ("diagnostics", "random", "coverage_mean") in keys
    drawn = browser.evaluate("document.getElementById('kmq-map').getAttribute('data-drawn')")
    assert int(drawn) == pq.read_metadata(kmq_run / "map.parquet").num_rows
    cards = browser.evaluate("document.querySelectorAll('.card').length")
    assert cards == pq.read_metadata(kmq_run / "clusters.parquet").num_rows


def test_random_run_says_what_is_missing(browser, random_run):
    plots = load(browser, write_report(random_run))
    missing = browser.evaluate("[...document.querySelectorAll('[data-missing]')].map(e => e.dataset.missing)")
    assert {"map", "silhouette"} <= set(missing)
    assert "map" not in {p["name"] for p in plots}
    assert_drawn(browser, plots)
    assert_numbers_match(browser, random_run, at_least=20)


def test_clusters_auto_shows_the_silhouette_curve(browser, auto_run):
    plots = load(browser, write_report(auto_run))
    assert "silhouette" in {p["name"] for p in plots}
    assert_drawn(browser, [p for p in plots if p["name"] == "silhouette"])
    shown = assert_numbers_match(browser, auto_run, at_least=40)
    assert any(s["key"][:3] == ["stages", "cluster", "silhouette"] for s in shown)


def test_iterate_run_shows_weights_and_signal(browser, iterate_run):
    plots = load(browser, write_report(iterate_run))
    names = {p["name"] for p in plots}
    assert {"weights", "signal"} <= names
    assert_drawn(browser, [p for p in plots if p["name"] in ("weights", "signal")])
    shown = assert_numbers_match(browser, iterate_run, at_least=60)
    assert ["stages", "prepare", "cluster", "n_clusters"] in [s["key"] for s in shown]  # k of an iterate run


def test_synthetic_iterate_run_dir(browser, tmp_path):
    run = make_run(tmp_path / "it", rows=1500, budget=150, clusters=8, iterate=4)
    plots = load(browser, write_report(run))
    assert {"weights", "signal", "map"} <= {p["name"] for p in plots}
    assert_drawn(browser, plots)
    assert_numbers_match(browser, run, at_least=80)


def test_prompts_cannot_run_script(browser, tmp_path):
    run = make_run(tmp_path / "xss", rows=400, budget=40, clusters=4, payload=XSS)
    load(browser, write_report(run))
    assert browser.evaluate("typeof window.__kmq_xss") == "undefined"
    assert browser.dialogs() == []
    text = browser.evaluate("document.body.innerText")
    assert "</script><script>window.__kmq_xss=1" in text  # shown as text, verbatim
    assert browser.evaluate("document.querySelectorAll('body script').length") == 2  # map data + map code
    assert browser.evaluate("document.querySelectorAll('img').length") == 0


def test_compare_page(browser, kmq_run, random_run, tmp_path):
    paths = write_compare([kmq_run, random_run], tmp_path / "cmp")
    html = next(p for p in paths if p.suffix == ".html")
    load(browser, html)
    shown = json.loads(browser.evaluate(VALUES_JS))
    vendi = [s for s in shown if s["key"] == ["0", "vendi"]]
    manifest = json.loads((kmq_run / "manifest.json").read_text())
    assert vendi and vendi[0]["value"] == manifest["diagnostics"]["selected"]["vendi"]
