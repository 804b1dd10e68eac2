"""Deduplication before selection (issue 14): the selection never holds two records the mode calls duplicates."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def _naive_near_duplicates(X, labels, tau, *, dup_of=None, block=2048):
    """The per-row greedy scan ``near_duplicates`` had before it was vectorised (the reference it must equal)."""
    n = len(X)
    out = np.full(n, -1, dtype=np.int64) if dup_of is None else np.asarray(dup_of, dtype=np.int64).copy()
    order = np.argsort(labels, kind="stable")  # rows grouped by cluster, pool order inside each
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for rows in np.split(order, bounds):
        rows = rows[out[rows] < 0]
        if len(rows) < 2:
            continue
        kept: list[int] = []
        kept_vecs = np.empty((0, X.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), block):
            chunk = rows[start : start + block]
            V = X[chunk]
            inner = V @ V.T  # within the block, each row against the earlier ones
            prev = V @ kept_vecs.T if len(kept) else np.empty((len(chunk), 0), dtype=np.float32)
            keep_local: list[int] = []
            for a, row in enumerate(chunk):
                best_prev = int(np.argmax(prev[a])) if prev.shape[1] else -1
                s_prev = prev[a, best_prev] if best_prev >= 0 else -np.inf
                s_local, best_local = -np.inf, -1
                if keep_local:
                    sims = inner[a, keep_local]
                    best_local = int(np.argmax(sims))
                    s_local = sims[best_local]
                if max(s_prev, s_local) > tau:
                    out[row] = kept[best_prev] if s_prev >= s_local else int(chunk[keep_local[best_local]])
                else:
                    keep_local.append(a)
            kept += [int(chunk[a]) for a in keep_local]
            kept_vecs = np.concatenate([kept_vecs, V[keep_local]]) if keep_local else kept_vecs
    return out


def _clustered(rng, n, d, centers, noise):
    C = l2_normalize(rng.standard_normal((centers, d)))
    return l2_normalize((C[rng.integers(0, centers, n)] + noise * rng.standard_normal((n, d))).astype(np.float32))


@pytest.mark.parametrize("block", [7, 64, 2048])
def test_near_duplicates_equal_the_per_row_scan_on_clustered_vectors(global_random_seed, block):
    rng = np.random.default_rng(global_random_seed)
    X = _clustered(rng, 3000, 16, 200, 0.08)  # many near pairs, some far rows
    X[rng.integers(0, 3000, 300)] = X[rng.integers(0, 3000, 300)]  # exact copies: ties
    labels = rng.integers(0, 4, 3000)
    prior = np.where(rng.random(3000) < 0.1, 0, -1)  # some rows already marked (exact duplicates of row 0)
    for tau in (0.9, 0.95, 0.99):
        want = _naive_near_duplicates(X, labels, tau, dup_of=prior, block=block)
        got = near_duplicates(X, labels, tau, dup_of=prior, block=block)
        assert 0 < (want >= 0).sum() < 3000
        np.testing.assert_array_equal(got, want)


def test_near_duplicates_break_ties_and_the_threshold_as_the_per_row_scan():
    c, s = 0.95, np.sqrt(1 - 0.95**2)
    # p (block 0) and q (block 1) are kept (cosine 0.805) and equally close to a: the earlier block's row wins
    X = np.array([[c, s], [0, 1], [c, -s], [1, 0]], dtype=np.float32)
    labels = np.zeros(4, dtype=np.int64)
    got = near_duplicates(X, labels, 0.9, block=2)
    assert got.tolist() == _naive_near_duplicates(X, labels, 0.9, block=2).tolist() == [-1, -1, -1, 0]
    # a cosine of exactly tau is not above it, in an earlier block or in the same one
    X = np.array([[1, 0], [0.5, np.sqrt(0.75)], [0.5, -np.sqrt(0.75)]], dtype=np.float32)
    assert float(X[0] @ X[1]) == 0.5
    for block in (1, 3):
        got = near_duplicates(X, np.zeros(3, dtype=np.int64), 0.5, block=block)
        assert got.tolist() == _naive_near_duplicates(X, np.zeros(3), 0.5, block=block).tolist() == [-1, -1, -1]
    # a's only near row of its block (b) is a duplicate, and its cosine to the kept p is exactly tau: a is kept
    X = np.array([[1, 0], [-1, 0], [np.sqrt(0.75), 0.5], [0.5, np.sqrt(0.75)]], dtype=np.float32)
    got = near_duplicates(X, np.zeros(4, dtype=np.int64), 0.5, block=2)
    assert got.tolist() == _naive_near_duplicates(X, np.zeros(4), 0.5, block=2).tolist() == [-1, -1, 0, -1]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 40),
    d=st.integers(1, 4),
    centers=st.integers(1, 6),
    clusters=st.integers(1, 3),
    block=st.integers(1, 9),
    tau=st.sampled_from([0.5, 0.9, 0.95, 0.999]),
    seed=st.integers(0, 2**32 - 1),
    nan_row=st.booleans(),
)
def test_near_duplicates_equal_the_per_row_scan_on_small_cases(n, d, centers, clusters, block, tau, seed, nan_row):
    rng = np.random.default_rng(seed)
    X = _clustered(rng, n, d, centers, 0.1)
    if nan_row and n:
        X[rng.integers(0, n)] = np.nan  # a broken vector: it must be treated exactly as before
    labels = rng.integers(0, clusters, n)
    np.testing.assert_array_equal(near_duplicates(X, labels, tau, block=block),
                                  _naive_near_duplicates(X, labels, tau, block=block))  # fmt: skip


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
    assert "100 of 120 records are unique under --dedup exact" in capsys.readouterr().err
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
