"""Deduplication before selection (issue 14): the selection never holds two records the mode calls duplicates."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from kmq.cli.main import main
from kmq.embed import l2_normalize
from kmq.shape import exact_duplicates, near_duplicates, parse_dedup


def test_exact_duplicates_keep_the_first_and_fold_whitespace_and_case():
    texts = ["Hello  World", "other", "hello world", "HELLO WORLD\n", "other", "new"]
    assert exact_duplicates(texts).tolist() == [-1, -1, 0, 0, 1, -1]


def test_near_duplicates_within_clusters_never_chain_through_removed_rows():
    rng = np.random.default_rng(0)
    base = l2_normalize(rng.standard_normal((4, 16)))
    X = l2_normalize(np.concatenate([base, base + 1e-3 * rng.standard_normal((4, 16))]).astype(np.float32))
    labels = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    dup_of = near_duplicates(X, labels, 0.99)
    assert dup_of.tolist() == [-1, -1, -1, -1, 0, 1, 2, 3]
    # the same rows in other clusters are not compared: a pair across clusters stays
    assert near_duplicates(X, np.arange(8), 0.99).tolist() == [-1] * 8


def test_near_duplicates_equal_a_naive_greedy_scan(global_random_seed):
    rng = np.random.default_rng(global_random_seed)
    centers = l2_normalize(rng.standard_normal((30, 8)))
    X = l2_normalize((centers[rng.integers(0, 30, 400)] + 0.05 * rng.standard_normal((400, 8))).astype(np.float32))
    labels = rng.integers(0, 3, 400)
    got = near_duplicates(X, labels, 0.95, block=64)
    kept: list[int] = []
    want = np.full(400, -1)
    for i in range(400):  # naive: compare with every kept row of the same cluster, in pool order
        sims = [(float(X[i] @ X[j]), j) for j in kept if labels[j] == labels[i]]
        best = max(sims, key=lambda t: (t[0], -t[1]), default=(-1.0, -1))
        if best[0] > 0.95:
            want[i] = best[1]
        else:
            kept.append(i)
    assert (got >= 0).tolist() == (want >= 0).tolist()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("spec", ["fuzzy", "near:1.5", "exact:0.9"])
def test_bad_specs(spec):
    with pytest.raises(ValueError, match="dedup"):
        parse_dedup(spec)


def _pool_with_copies(datakit, tmp_path, copies=20):
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:100]
    rows = [json.loads(x) for x in lines]
    for i in range(copies):  # an exact copy (other id, other whitespace and case) of each of the first 20 records
        row = json.loads(lines[i])
        row["id"] = f"copy-{i}"
        row["messages"] = [{**m, "content": "  " + m["content"].upper() + " "} for m in row["messages"]]
        rows.append(row)
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return pool


def test_select_never_picks_both_copies(datakit, tmp_path, capsys):
    pool = _pool_with_copies(datakit, tmp_path)
    out = tmp_path / "s.jsonl"
    rc = main(["select", str(pool), "--budget", "100", "--out", str(out), "--embedder", "hashing", "-q"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert len(ids) == 100 and not any(i.startswith("copy-") for i in ids)  # the first of each pair is kept
    run = tmp_path / "s.jsonl.kmq-run"
    dups = pq.read_table(run / "duplicates.parquet").to_pydict()
    assert dups["id"] == [f"copy-{i}" for i in range(20)] and dups["duplicate_of"] == [f"dolly_3k-{i:04d}" for i in
                                                                                        range(20)]  # fmt: skip
    stats = json.loads((run / "manifest.json").read_text())["stages"]["dedup"]
    assert stats["kept"] == 100 and stats["exact_duplicates"] == 20
    assert "dedup     exact: 20 of 120 records are duplicates" in captured.out
    # a budget above the unique records is an error that says how many are unique
    assert main(["select", str(pool), "--budget", "110", "--out", str(tmp_path / "t.jsonl"), "--embedder", "hashing",
                 "-q"]) == 2  # fmt: skip
    assert "(100 of 120 records are unique under --dedup exact)" in capsys.readouterr().err
    # --dedup none keeps them
    assert main(["select", str(pool), "--budget", "110", "--out", str(tmp_path / "u.jsonl"), "--embedder", "hashing",
                 "--dedup", "none", "-q"]) == 0  # fmt: skip


def test_near_dedup_removes_paraphrase_level_copies(datakit, tmp_path, capsys):
    lines = (datakit / "fastchat_dummy" / "fastchat_dummy.jsonl").read_text().splitlines()
    pool = tmp_path / "fc.jsonl"
    pool.write_text("\n".join(lines) + "\n")
    counts = {}
    for mode in ("exact", "near:0.9"):
        out = tmp_path / f"{mode.replace(':', '_')}.jsonl"
        assert main(["select", str(pool), "--budget", "20", "--out", str(out), "--embedder", "hashing",
                     "--dedup", mode, "-q"]) == 0, capsys.readouterr().err  # fmt: skip
        run = tmp_path / f"{out.name}.kmq-run"
        counts[mode] = json.loads((run / "manifest.json").read_text())["stages"]["dedup"]["kept"]
    assert counts["near:0.9"] < counts["exact"]


def test_iterate_never_draws_a_duplicate(datakit, tmp_path, capsys):
    pool = _pool_with_copies(datakit, tmp_path)
    out = tmp_path / "s.jsonl"
    rc = main(["iterate", str(pool), "--budget", "100", "--rounds", "1", "--model", "unused", "--embedder", "hashing",
               "--out", str(out), "-q"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    ids = [json.loads(x)["id"] for x in out.read_text().splitlines()]
    assert len(ids) == 100 and not any(i.startswith("copy-") for i in ids)
