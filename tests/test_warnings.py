"""Degenerate inputs are said out loud: one warning line each, in stderr, the summary and the manifest (issue 11)."""

from __future__ import annotations

import json

import pytest

from kmq.cli.main import main

HASHING = ["--embedder", "hashing"]


def test_prompt_only_pool_is_refused_with_the_flag_that_accepts_it(datakit, tmp_path, capsys):
    pool = datakit / "instructionwild_v2" / "instructionwild_v2.jsonl"
    out = tmp_path / "s.jsonl"
    rc = main(["select", str(pool), "--budget", "50", "--out", str(out), *HASHING, "-q"])
    err = capsys.readouterr().err
    assert rc == 2 and "have an empty response" in err and "--allow-empty-responses" in err, err
    assert not out.exists()
    rc = main(["select", str(pool), "--budget", "50", "--out", str(out), *HASHING, "--allow-empty-responses", "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "warning   " in captured.out and "quality is constant" in captured.out
    assert "quality is constant" in captured.err  # on stderr too
    manifest = json.loads((tmp_path / "s.jsonl.kmq-run" / "manifest.json").read_text())
    assert any("empty response" in w for w in manifest["warnings"])
    assert any("same quality" in w for w in manifest["warnings"])  # constant quality, said once


def test_some_empty_responses_are_counted(datakit, tmp_path, capsys):
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:80]
    rows = [json.loads(x) for x in lines]
    for row in rows[:8]:
        row["messages"] = [m for m in row["messages"] if m["role"] != "assistant"]
    pool = tmp_path / "p.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["select", str(pool), "--budget", "10", "--out", str(tmp_path / "s.jsonl"), *HASHING, "-q"])
    out = capsys.readouterr().out
    assert rc == 0 and "warning   8 of 80 records (10%) have an empty response" in out


def test_more_clusters_than_budget_is_one_warning(datakit, tmp_path, capsys):
    pool = datakit / "dolly_3k" / "dolly_3k.jsonl"
    rc = main(["select", str(pool), "--budget", "10", "--clusters", "50", "--out", str(tmp_path / "s.jsonl"),
               *HASHING, "-q"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert [line for line in out.splitlines() if line.startswith("warning")] == [
        "warning   k=50 clusters but a budget of 10: 40 clusters get no pick, so the selection cannot cover them; "
        "pass --clusters 2 or fewer (about five picks per cluster)"
    ]


@pytest.mark.parametrize("scorer", ["column:score"])
def test_constant_quality_warns(datakit, tmp_path, capsys, scorer):
    rows = [json.loads(x) for x in (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:60]]
    for row in rows:
        row["score"] = 3.0
    pool = tmp_path / "p.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["select", str(pool), "--budget", "10", "--out", str(tmp_path / "s.jsonl"), *HASHING,
                 "--scorer", scorer, "-q"]) == 0  # fmt: skip
    assert "every record has the same quality (3 from column:score)" in capsys.readouterr().out


def test_flat_silhouette_warns(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    n = 400
    rows = [{"instruction": f"task {i}", "output": f"answer {i}", "q": float(i % 7)} for i in range(n)]
    pool = tmp_path / "p.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    emb = tmp_path / "e.npy"
    np.save(emb, rng.standard_normal((n, 256)).astype(np.float32))  # isotropic noise: no cluster structure
    rc = main(["select", str(pool), "--budget", "100", "--out", str(tmp_path / "s.jsonl"), "--embedder", f"npy:{emb}",
               "--clusters", "auto", "--scorer", "column:q", "-q"])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "no clear cluster structure" in captured.out
