"""The report page without a browser: deterministic bytes, nothing external, escaping, where it may write,
and what it says when a run directory lacks a piece.
"""

from __future__ import annotations

import json
import shutil
from html.parser import HTMLParser

import pytest
from synthetic_run import XSS, make_run

from kmq.errors import MissingArtifactError, OutputConflictError
from kmq.report import render_report, write_report
from kmq.report._terms import top_terms


class Structure(HTMLParser):
    """Attribute values, script and style text of a page (everything but its text content)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, str, str]] = []
        self.code: list[str] = []
        self.tags: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        self._in = tag if tag in ("script", "style") else None

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in:
            self.code.append(data)


def structure(text: str) -> Structure:
    s = Structure()
    s.feed(text)
    return s


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("syn") / "run", rows=3000, budget=300, clusters=12, auto=True)


def test_same_run_dir_same_bytes_wherever_it_lies(synthetic, tmp_path):
    first = write_report(synthetic).read_bytes()
    assert write_report(synthetic).read_bytes() == first
    moved = shutil.copytree(synthetic, tmp_path / "elsewhere")
    (moved / "report.html").unlink()
    assert write_report(moved).read_bytes() == first


def test_the_page_refers_to_nothing_outside_itself(synthetic, kmq_run):
    for run in (synthetic, kmq_run):
        page = structure(render_report(run))
        for tag, name, value in page.attrs:
            assert "http" not in value.lower() and "//" not in value, (tag, name, value)
            assert name not in ("src", "srcset", "action", "formaction", "poster", "data") or value == "", (tag, name)
            if name == "href":
                assert value.startswith("#"), value
            assert "http" not in name or name == "http-equiv"
        assert not any("http" in c.lower() or "url(" in c.lower() or "@import" in c for c in page.code)
        assert not {"link", "img", "iframe", "object", "embed", "base"} & set(page.tags)
        policy = next(v for t, n, v in page.attrs if n == "content" and "default-src" in v)
        assert "default-src 'none'" in policy and "unsafe" not in policy


def test_prompts_ids_and_names_are_escaped(tmp_path):
    run = make_run(tmp_path / "xss", rows=400, budget=40, clusters=4, payload=XSS)
    text = render_report(run)
    assert XSS not in text and "<img" not in text
    assert text.count("<script") == 2  # the map's data block and its code, nothing from the pool
    assert "&lt;/script&gt;&lt;script&gt;window.__kmq_xss=1" in text
    page = structure(text)
    assert not any("__kmq_xss" in c for c in page.code)


def test_refuses_what_is_not_a_run_dir(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "manifest.json").write_text("{}")
    for path in (tmp_path / "plain", tmp_path / "missing"):
        with pytest.raises(MissingArtifactError, match=str(path)):
            write_report(path)


def test_writes_only_where_it_may(synthetic, tmp_path):
    with pytest.raises(OutputConflictError, match="input"):
        write_report(synthetic, out=synthetic / "manifest.json")
    with pytest.raises(OutputConflictError, match="input"):
        write_report(synthetic, out=synthetic / "pool.parquet")
    foreign = tmp_path / "notes.html"
    foreign.write_text("my notes")
    with pytest.raises(OutputConflictError, match="kmq did not write it"):
        write_report(synthetic, out=foreign)
    assert foreign.read_text() == "my notes"
    assert write_report(synthetic, out=foreign, overwrite=True) == foreign
    assert write_report(synthetic, out=foreign) == foreign  # now it is kmq's page: replaced without asking
    folder = tmp_path / "reports"
    folder.mkdir()
    assert write_report(synthetic, out=folder) == folder / "report.html"
    (synthetic / "report.html").write_text("a file of the user's")
    with pytest.raises(OutputConflictError, match="kmq did not write it"):
        write_report(synthetic)
    (synthetic / "report.html").unlink()


def test_a_run_dir_without_tables_or_diagnostics_says_so(kmq_run, tmp_path):
    old = tmp_path / "old.kmq-run"
    old.mkdir()
    for name in ("kmq-run.json", "selection.parquet", "config.yaml"):
        shutil.copy(kmq_run / name, old / name)
    manifest = json.loads((kmq_run / "manifest.json").read_text())
    del manifest["diagnostics"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    text = render_report(old)
    for what in ("diagnostics", "clusters", "map", "cards", "mix"):
        assert f'data-missing="{what}"' in text, what
    assert 'data-plot="quality"' in text  # the picks' own quality is still shown


def test_top_terms_weigh_a_cluster_against_the_pool():
    previews = ["python list sort", "python dict sort", "python list append",
                "bake bread flour", "bake cake flour", "bread flour water", "sort the python list"]  # fmt: skip
    terms = top_terms(previews, [0, 0, 0, 1, 1, 1, -1], 2, n_terms=2)
    # python: 3/3 * log(8/5); list and sort: 2/3 * log(8/4), tied (alphabetical order); "the" is a stop word
    assert terms == {0: ["python", "list"], 1: ["flour", "bake"]}
