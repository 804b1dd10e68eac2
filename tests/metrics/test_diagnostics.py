"""The diagnostics entry point: the manifest schema, null fields for missing inputs, the seeded random
reference, agreement with the public pieces, and a real pool (dolly_3k, hashing embedder, k-means)."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest

import kmq.metrics
from kmq.errors import InvalidParameterError
from kmq.metrics import (
    cluster_balance,
    coverage,
    diagnostics,
    exact_duplicates,
    facility_location,
    near_duplicates,
    prompt_keys,
    quantiles,
    vendi_score,
)

BLOCK = {
    "n", "vendi", "vendi_sample", "coverage_mean", "coverage_p95", "facility_location", "cluster_entropy",
    "cluster_entropy_max", "cluster_kl", "empty_clusters", "quality", "duplicates_exact", "duplicates_near", "mix",
}  # fmt: skip
EXTRA_BLOCK = {"coverage_search", "near_search"}
SETTINGS = {"seed", "vendi_sample", "coverage_sample", "near_tau", "metric"}
QUANT = ["mean", "min", "q05", "q25", "q50", "q75", "q95", "max"]


def toy_pool(rng: np.random.Generator, n: int = 600, d: int = 16, k: int = 6) -> dict:
    C = rng.standard_normal((k, d)).astype(np.float32)
    labels = rng.integers(0, k, n)
    X = C[labels] + 0.6 * rng.standard_normal((n, d)).astype(np.float32)
    X[:20] = X[20:40]  # 20 exact vector copies: near duplicates when both are picked
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    prompts = [f"prompt {i % 500}" for i in range(n)]  # rows 500.. repeat rows 0..
    return {
        "n": n,
        "embeddings": X,
        "labels": labels.astype(np.int64),
        "quality": rng.random(n),
        "prompt_keys": prompt_keys(prompts),
        "fields": {"source": [f"s{i % 3}" for i in range(n)], "category": [None if i % 5 else "qa" for i in range(n)]},
    }


def strip_seconds(out: dict) -> dict:
    return {key: value for key, value in out.items() if key != "seconds"}


def test_schema_and_json(rng):
    pool = toy_pool(rng)
    out = diagnostics(picks=rng.choice(600, 120, replace=False), **pool)
    assert set(out) == {"settings", "selected", "random", "pool", "seconds"}
    assert SETTINGS <= set(out["settings"]) and out["settings"]["metric"] == "cosine"
    for name in ("selected", "random"):
        block = out[name]
        assert set(block) == BLOCK | EXTRA_BLOCK
        assert block["n"] == 120 and list(block["quality"]) == QUANT
        assert set(block["mix"]) == {"source", "category"}
        assert list(block["mix"]["source"]) == list(out["pool"]["mix"]["source"])  # aligned with the pool
        assert sum(block["mix"]["category"].values()) == 120
        assert isinstance(block["vendi"], float) and isinstance(block["empty_clusters"], int)
    assert out["pool"]["n"] == 600 and out["pool"]["clusters"] == 6 and list(out["pool"]["quality"]) == QUANT
    assert isinstance(out["seconds"], float)
    json.dumps(out, allow_nan=False)  # plain JSON: no numpy scalars, no NaN


def test_blocks_equal_the_public_functions(rng):
    pool = toy_pool(rng)
    others = np.setdiff1d(np.arange(600), [5, 25])
    picks = np.concatenate([[5, 25], rng.choice(others, 148, replace=False)])  # rows 5 and 25: identical vectors
    out = diagnostics(picks=picks, vendi_sample=150, **pool)["selected"]
    X, P = pool["embeddings"], pool["embeddings"][picks]
    mean, p95 = coverage(X, P)
    assert (out["coverage_mean"], out["coverage_p95"]) == pytest.approx((mean, p95), abs=1e-9)
    assert out["facility_location"] == pytest.approx(facility_location(X, P), abs=1e-9)
    assert out["vendi"] == pytest.approx(vendi_score(P)) and out["vendi_sample"] == 150
    balance = cluster_balance(pool["labels"], picks, 6)
    assert {key: out[key] for key in balance} == pytest.approx(balance)
    assert out["quality"] == pytest.approx(quantiles(pool["quality"][picks]))
    assert out["duplicates_exact"] == exact_duplicates(pool["prompt_keys"], picks)
    assert out["duplicates_near"] == near_duplicates(P, 0.95) >= 2


def test_missing_inputs_give_nulls(rng):
    out = diagnostics(picks=np.array([3, 1, 4]), n=10)
    for block in (out["selected"], out["random"]):
        assert block["n"] == 3 and block["mix"] == {} and block["vendi_sample"] == 0
        assert all(block[key] is None for key in BLOCK - {"n", "mix", "vendi_sample"})
    assert out["pool"] == {"n": 10, "candidates": 10, "quality": None, "clusters": None, "mix": {}}
    assert out["settings"]["coverage_rows"] == 0


def test_no_picks_and_empty_pool(rng):
    pool = toy_pool(rng)
    out = diagnostics(picks=np.array([], dtype=np.int64), **pool)["selected"]
    assert out["n"] == 0 and out["vendi"] is None and out["coverage_mean"] is None and out["quality"] is None
    assert out["cluster_entropy"] is None and out["empty_clusters"] == 6 and out["duplicates_exact"] == 0
    empty = diagnostics(picks=np.array([], dtype=np.int64), n=0, embeddings=np.zeros((0, 4), np.float32))
    assert empty["pool"]["n"] == 0 and empty["random"]["n"] == 0


def test_same_seed_same_numbers_and_the_random_stream(rng):
    pool = toy_pool(rng)
    picks = rng.choice(600, 100, replace=False)
    candidates = np.arange(100, 600)
    first = diagnostics(picks=picks, candidates=candidates, seed=11, vendi_sample=50, coverage_sample=300, **pool)
    again = diagnostics(picks=picks, candidates=candidates, seed=11, vendi_sample=50, coverage_sample=300, **pool)
    assert strip_seconds(first) == strip_seconds(again)
    other = diagnostics(picks=picks, candidates=candidates, seed=12, vendi_sample=50, coverage_sample=300, **pool)
    assert other["random"]["quality"] != first["random"]["quality"]
    assert other["selected"]["cluster_kl"] == first["selected"]["cluster_kl"]  # no randomness in the picks' own
    # the random reference is len(picks) candidates drawn by default_rng([seed, 7])
    rows = np.random.default_rng([11, kmq.metrics.STREAM_DIAGNOSTICS]).choice(candidates, size=100, replace=False)
    assert first["random"]["quality"] == quantiles(pool["quality"][rows])
    assert first["random"]["duplicates_exact"] == exact_duplicates(pool["prompt_keys"], rows)
    assert first["settings"]["coverage_rows"] == 300 and first["selected"]["vendi_sample"] == 50
    assert first["pool"]["candidates"] == 500


def test_coverage_rows_shrink_for_large_selections():
    from kmq.metrics import COVERAGE_PAIRS, MIN_COVERAGE_ROWS, coverage_rows

    assert len(coverage_rows(10**6, 10**5, coverage_sample=50_000)) == COVERAGE_PAIRS // 10**5 == 2684
    assert len(coverage_rows(10**6, 10**7)) == MIN_COVERAGE_ROWS
    assert len(coverage_rows(10**6, 1_000, coverage_sample=50_000)) == 50_000
    np.testing.assert_array_equal(coverage_rows(1_500, 10**6), np.arange(1_500))  # small pools: every row
    rows = coverage_rows(10**6, 10**5, seed=3)
    assert (np.diff(rows) > 0).all() and rows[-1] < 10**6
    expected = np.random.default_rng([3, kmq.metrics.STREAM_DIAGNOSTICS, 1]).choice(10**6, 2684, replace=False)
    np.testing.assert_array_equal(rows, np.sort(expected))


def test_random_reference_stays_inside_the_candidates(rng):
    pool = toy_pool(rng)
    candidates = np.flatnonzero(pool["labels"] == 2)
    out = diagnostics(picks=np.arange(10), candidates=candidates, **pool)
    assert out["random"]["cluster_entropy"] == 0.0 and out["random"]["n"] == 10
    few = diagnostics(picks=np.arange(50), candidates=np.arange(30), n=600)
    assert few["random"]["n"] == 30  # fewer candidates than picks: all of them


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"picks": np.array([0, 10])}, r"'picks' parameter .* pool rows in \[0, 10\). Got 10"),
        ({"picks": np.array([1, 1])}, r"'picks' parameter .* must not repeat a row. Got 1 repeat"),
        ({"picks": np.array([0.5])}, r"'picks' parameter .* 1-D int array"),
        ({"embeddings": np.ones((9, 2), np.float32)}, r"'embeddings' parameter .* \(10, d\).*Got shape \(9, 2\)"),
        ({"labels": np.zeros(10)}, r"'labels' parameter .* an int array of shape \(10,\)"),
        ({"fields": {"source": ["a"] * 9}}, r"field 'source' .* has 9 values but the pool has n=10"),
        ({"near_tau": 2.0}, r"'near_tau' parameter"),
        ({"candidates": np.array([-1])}, r"'candidates' parameter .* Got -1"),
    ],
)
def test_bad_inputs_name_the_parameter(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        diagnostics(**{"picks": np.array([0, 1]), "n": 10, **kwargs})


def test_docstring_examples():
    for module in (kmq.metrics.diversity, kmq.metrics.balance, kmq.metrics.mix, kmq.metrics.duplicates):
        result = doctest.testmod(module, extraglobs={"np": np})
        assert result.failed == 0 and result.attempted > 0, module.__name__


def test_real_pool_equal_allocation_against_random(datakit):
    """dolly_3k, hashing embedder, k-means k = 30, budget 300, through kmq's own methods.

    What must hold: kmeans-random with equal allocation is as spread over the clusters as any set of picks
    can be (every count within 1 of the others where no cluster runs out), so its entropy is at least the
    random reference's and no cluster is empty. With proportional allocation every count is within 1 of
    ``b * q_j``, so KL(selected || pool) <= chi^2 <= sum_j 1 / (b^2 q_j); the random reference has no such
    bound. (Equal allocation moves away from the pool's proportions on purpose: its KL is not lower.)
    """
    from kmq.cluster import KMeans
    from kmq.data import read_pool
    from kmq.embed import HashingEmbedder
    from kmq.methods import get_method

    pool = read_pool(str(datakit / "dolly_3k" / "dolly_3k.jsonl"))
    first = [next(t["content"] for t in turns if t["role"] == "user") for turns in pool.messages]
    X = HashingEmbedder(256).encode(pool.texts("prompt"))
    labels = KMeans(30, random_state=0).fit(X).labels_
    n, b = len(pool), 300
    common = {"n": n, "embeddings": X, "labels": labels, "prompt_keys": prompt_keys(first),
              "fields": {"category": pool.column("category")}}  # fmt: skip
    method = get_method("kmeans-random").fn
    equal = method(n=n, budget=b, random_state=0, labels=labels).indices
    prop = method(n=n, budget=b, random_state=0, labels=labels, allocation="proportional").indices
    out_equal = diagnostics(picks=equal, **common)
    out_prop = diagnostics(picks=prop, **common)
    sel, ran = out_equal["selected"], out_equal["random"]
    assert sel["empty_clusters"] == 0
    assert sel["cluster_entropy"] >= ran["cluster_entropy"] - 1e-12
    q = np.bincount(labels, minlength=30) / n
    assert out_prop["selected"]["cluster_kl"] <= np.sum(1.0 / (b * b * q))
    assert 1 <= sel["vendi"] <= b and sel["vendi_sample"] == b
    assert out_equal["pool"]["mix"]["category"]["open_qa"] == 943  # the datakit's own count
    assert sum(sel["mix"]["category"].values()) == b
    # dolly_3k has 15 duplicated prompts: the pool's own exact-duplicate count is what the key finds
    assert exact_duplicates(common["prompt_keys"], np.arange(n)) >= 15
    assert all(math.isfinite(sel[key]) for key in ("coverage_mean", "coverage_p95", "facility_location"))
