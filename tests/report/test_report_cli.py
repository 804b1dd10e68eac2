"""``kmq report``, ``kmq compare`` and ``kmq explain`` on real run directories, through the command line."""

from __future__ import annotations

import csv
import json

import pyarrow.parquet as pq
import pytest
from synthetic_run import make_run

from kmq.cli.main import main


def run(capsys, *args):
    capsys.readouterr()
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def test_report_command(capsys, kmq_run, tmp_path):
    code, out, _ = run(capsys, "report", kmq_run)
    assert code == 0 and out.strip() == str(kmq_run / "report.html")
    code, out, _ = run(capsys, "report", kmq_run, "--out", tmp_path / "r.html")
    assert code == 0 and (tmp_path / "r.html").read_bytes() == (kmq_run / "report.html").read_bytes()
    code, _, err = run(capsys, "report", kmq_run, "--out", kmq_run / "selection.parquet")
    assert code == 2 and len(err) == 1 and "input" in err[0]
    code, _, err = run(capsys, "report", tmp_path / "nope")
    assert code == 2 and len(err) == 1 and str(tmp_path / "nope") in err[0]


def test_compare_command(capsys, kmq_run, random_run, auto_run, tmp_path):
    code, out, err = run(capsys, "compare", kmq_run, random_run, auto_run, "--out", tmp_path / "cmp")
    assert code == 0
    rows = list(csv.DictReader((tmp_path / "cmp" / "compare.csv").open()))
    assert [r["method"] for r in rows] == ["kmq", "random", "kmq"]
    for row, rdir in zip(rows, (kmq_run, random_run, auto_run), strict=True):
        d = json.loads((rdir / "manifest.json").read_text())["diagnostics"]
        for key in ("vendi", "coverage_mean", "cluster_kl", "facility_location"):
            for block, col in (("selected", key), ("random", f"{key}_random")):
                want = d[block][key]
                assert (row[col] == "") if want is None else (float(row[col]) == want), (rdir, col)
        assert int(row["duplicates_exact"]) == d["selected"]["duplicates_exact"]
        q = d["selected"]["quality"]
        assert (row["quality_mean"] == "") if q is None else (float(row["quality_mean"]) == q["mean"])
    k = json.loads((auto_run / "manifest.json").read_text())["stages"]["cluster"]["n_clusters"]
    assert int(rows[2]["k"]) == k and rows[1]["k"] == ""
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert out in md and len(out.strip().splitlines()) == 2 + 3 + 2  # head, rule, 3 runs, blank, note
    assert "compare.html" in err[-1]
    code, _, _ = run(capsys, "compare", kmq_run, "--out", tmp_path / "cmp")  # its own files: replaced
    assert code == 0 and len(list(csv.DictReader((tmp_path / "cmp" / "compare.csv").open()))) == 1
    (tmp_path / "mine.md").write_text("my notes\n")
    code, _, err = run(capsys, "compare", kmq_run, "--out", tmp_path / "mine.md")
    assert code == 2 and len(err) == 1 and "mine.md exists" in err[0]
    code, _, err = run(capsys, "compare", kmq_run, tmp_path)
    assert code == 2 and len(err) == 1 and f"{tmp_path} is not a kmq run directory" in err[0]


def pool_rows(run_dir):
    return {r["id"]: r for r in pq.read_table(run_dir / "pool.parquet").to_pylist()}


def test_explain_a_pick(capsys, kmq_run):
    pool = pool_rows(kmq_run)
    sel = pq.read_table(kmq_run / "selection.parquet").to_pylist()
    pick = sel[0]
    code, out, _ = run(capsys, "explain", kmq_run, pick["id"], "--format", "json")
    assert code == 0
    e = json.loads(out)
    assert e["record"]["selected"] is True and e["record"]["rank"] == pick["rank"]
    assert e["pick"]["quota"] == pick["quota"] and e["pick"]["probability"] == pick["probability"]
    clusters = {r["cluster"]: r for r in pq.read_table(kmq_run / "clusters.parquet").to_pylist()}
    assert e["cluster"]["quota"] == clusters[pick["cluster"]]["quota"]
    same = [r for r in sel if r["cluster"] == pick["cluster"] and r["id"] != pick["id"]]
    same.sort(key=lambda r: r["rank"])
    assert [i for i, _ in e["other_picks"]] == [r["id"] for r in same][:10]
    assert [p for _, p in e["other_picks"]] == [pool[r["id"]]["preview"] for r in same][:10]
    assert e["why"].startswith("picked by kmq")
    code, text, _ = run(capsys, "explain", kmq_run, pick["id"])
    assert code == 0 and f"why               {e['why']}" in text
    assert f"other picks of cluster {pick['cluster']}" in text


def test_explain_why_not(capsys, kmq_run):
    pool = pool_rows(kmq_run)
    clusters = {r["cluster"]: r for r in pq.read_table(kmq_run / "clusters.parquet").to_pylist()}
    rec = next(r for r in pool.values() if not r["selected"] and r["duplicate_of"] is None)
    code, out, _ = run(capsys, "explain", kmq_run, rec["id"], "--format", "json")
    e = json.loads(out)
    c = clusters[rec["cluster"]]
    cands = [r for r in pool.values() if r["cluster"] == rec["cluster"] and r["duplicate_of"] is None]
    rank = 1 + sum(r["quality"] > rec["quality"] for r in cands)
    assert e["quality_rank"] == [rank, len(cands)]
    assert e["why"] == (f"not drawn by kmq: its cluster {rec['cluster']} had quota {c['quota']} of size {c['size']}, "
                        f"{c['picks']} picked; its quality ranks {rank} of {len(cands)} candidates in its cluster.")
    code, out, _ = run(capsys, "explain", kmq_run, "copy-of-dolly_3k-0005")
    assert code == 0 and "removed before selection as a duplicate of dolly_3k-0005 (which was" in out


def test_explain_contaminated_and_random(capsys, tmp_path, random_run):
    syn = make_run(tmp_path / "syn", rows=500, budget=50, clusters=5)
    bad = next(r for r in pool_rows(syn).values() if r["contaminated"])
    code, out, _ = run(capsys, "explain", syn, bad["id"])
    assert code == 0 and "contaminated by the eval set gsm8k_test" in out
    rec = next(r for r in pool_rows(random_run).values() if not r["selected"])
    code, out, _ = run(capsys, "explain", random_run, rec["id"])
    assert code == 0 and "why               not picked by random." in out


def test_explain_errors(capsys, kmq_run, tmp_path):
    code, _, err = run(capsys, "explain", kmq_run, "Dolly_3k-0005")
    assert code == 2 and len(err) == 1
    assert "'Dolly_3k-0005' is not an id of the pool" in err[0] and "Closest ids: dolly_3k-0005," in err[0]
    code, _, err = run(capsys, "explain", tmp_path, "x")
    assert code == 2 and len(err) == 1 and f"{tmp_path} is not a kmq run directory" in err[0]
    (kmq_run / "pool.parquet").rename(tmp_path / "pool.parquet")
    try:
        code, _, err = run(capsys, "explain", kmq_run, "dolly_3k-0005")
        assert code == 2 and len(err) == 1 and "pool.parquet not found" in err[0]
    finally:
        (tmp_path / "pool.parquet").rename(kmq_run / "pool.parquet")


@pytest.mark.parametrize("flag", ["--help"])
def test_help_has_examples(capsys, flag):
    for cmd in ("report", "compare", "explain"):
        with pytest.raises(SystemExit):
            main([cmd, flag])
        assert "examples:" in capsys.readouterr().out
