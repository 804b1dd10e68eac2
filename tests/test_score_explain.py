"""``kmq score --explain``: the heuristic's per-record features as columns after id and score, cached with them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kmq.cli.main import main
from kmq.scorers.heuristic import FEATURE_NAMES, heuristic_features, heuristic_scores

FORMATS = ("jsonl", "csv", "parquet")


@pytest.fixture
def pool_file(datakit, tmp_path):
    """alpaca_random9k's first 150 rows and its <nooutput> rows, and fastchat_dummy's canned answers (duplicates,
    self-introductions): every penalty column has non-zero values."""
    alpaca = (datakit / "alpaca_random9k" / "alpaca_random9k.jsonl").read_text(encoding="utf-8").splitlines()
    dummy = (datakit / "fastchat_dummy" / "fastchat_dummy.jsonl").read_text(encoding="utf-8").splitlines()
    lines = alpaca[:150] + [x for x in alpaca[150:] if "nooutput" in x] + dummy[:60]
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _read(path):
    """Column name -> list of values (id as str, the rest as float; missing as NaN)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return {n: [np.nan if v is None else v for v in table.column(n).to_pylist()] for n in table.column_names}
    if path.suffix == ".csv":
        import csv

        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        cols = {n: [r[j] for r in rows[1:]] for j, n in enumerate(rows[0])}
        return {n: v if n == "id" else [float(x) if x else np.nan for x in v] for n, v in cols.items()}
    records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]
    assert all(list(r) == list(records[0]) for r in records)
    return {n: [np.nan if r[n] is None else r[n] for r in records] for n in records[0]}


def _expected(pool_file):
    """The heuristic's own features and scores of the pool, with the hashing encoder's vectors."""
    from kmq.data import read_pool
    from kmq.embed import get_embedder

    pool, enc = read_pool(str(pool_file)), get_embedder("hashing")
    prompts, responses = pool.texts("prompt"), pool.texts("response")
    pv, rv = enc.encode(prompts), enc.encode(responses)
    scores = heuristic_scores(prompts, responses, pv, rv)[0]
    return list(pool.ids), heuristic_features(prompts, responses, pv, rv), scores


@pytest.mark.parametrize("ext", FORMATS)
def test_explain_writes_the_heuristic_features_cached_and_replaced(pool_file, tmp_path, capsys, ext):
    from kmq.scoring import score, write_scores

    out = tmp_path / f"scores.{ext}"
    args = ["score", str(pool_file), "--embedder", "hashing", "--explain", "--out", str(out), "-q"]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "features  log_length log_vocab relevance focus off_topic" in stdout
    cols = _read(out)
    ids, features, scores = _expected(pool_file)
    assert list(cols) == ["id", "score", *(n for n in FEATURE_NAMES if n in features)]
    assert list(cols) == ["id", "score", *FEATURE_NAMES]  # the hashing encoder gives the relevance features too
    assert cols["id"] == ids
    np.testing.assert_array_equal(cols["score"], scores)
    for name, values in features.items():
        np.testing.assert_array_equal(cols[name], values, err_msg=name)
    for name in ("refusal", "duplicate", "boilerplate", "off_topic", "focus"):
        assert np.count_nonzero(cols[name]), name  # the pool exercises every penalty
    first = out.read_bytes()

    cached = score(str(pool_file), embedder="hashing", explain=True)  # the same cache: a hit, features included
    assert cached.stats["from_cache"] is True and list(cached.features) == list(cols)[2:]
    for name, values in features.items():
        np.testing.assert_array_equal(cached.features[name], values, err_msg=name)

    head = {n: np.asarray(cols[n][:5]) for n in cols if n not in ("id", "score")}
    write_scores(out, cols["id"][:5], np.asarray(cols["score"][:5]), head)  # a shorter file of kmq's own...
    assert out.read_bytes() != first
    assert main(args) == 0  # ... is replaced by the rerun (a cache hit), byte for byte the first run's file
    assert out.read_bytes() == first


def test_explain_after_a_plain_run_recomputes_once_then_hits(pool_file, tmp_path):
    from kmq.scoring import score

    plain = score(str(pool_file), embedder="hashing")
    assert plain.features == {} and plain.stats["from_cache"] is False
    explained = score(str(pool_file), embedder="hashing", explain=True)
    assert explained.stats["from_cache"] is False and list(explained.features) == list(FEATURE_NAMES)
    np.testing.assert_array_equal(explained.values, plain.values)
    again = score(str(pool_file), embedder="hashing", explain=True, out=tmp_path / "s.jsonl")
    assert again.stats["from_cache"] is True
    for name, values in explained.features.items():
        np.testing.assert_array_equal(again.features[name], values)
    assert score(str(pool_file), embedder="hashing").stats["from_cache"] is True  # a plain run reads the same entry
    first = json.loads((tmp_path / "s.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert list(first) == ["id", "score", *FEATURE_NAMES]


def test_without_explain_the_file_has_id_and_score_only(pool_file, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["score", str(pool_file), "--embedder", "hashing", "--explain", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    assert main(["score", str(pool_file), "--embedder", "hashing", "--out", str(out), "-q"]) == 0  # replaced
    assert out.read_text(encoding="utf-8").splitlines()[0] == "id,score"
    assert "features" not in capsys.readouterr().out


def test_explain_with_a_scorer_without_features_is_an_error(pool_file, tmp_path, capsys):
    out = tmp_path / "scores.jsonl"
    args = ["score", str(pool_file), "--scorer", "relevance", "--embedder", "hashing", "--explain", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--explain" in err and "relevance scorer has no per-record features" in err and "heuristic" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    ("header", "replaced"),
    [("id,score,log_length,refusal", True), ("id,score,label", False), ("id,score,refusal,refusal", False)],
)
def test_only_kmq_columns_make_a_scores_file(pool_file, tmp_path, capsys, header, replaced):
    out = tmp_path / "scores.csv"
    out.write_text(header + "\nx,1,2,3\n", encoding="utf-8")
    code = main(["score", str(pool_file), "--embedder", "hashing", "--explain", "--out", str(out), "-q"])
    assert code == (0 if replaced else 2)
    assert (out.read_text(encoding="utf-8").splitlines()[0] == "id,score," + ",".join(FEATURE_NAMES)) is replaced
    if not replaced:
        assert "--overwrite" in capsys.readouterr().err
