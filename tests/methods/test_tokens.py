"""Token budgets (kmq.methods.tokens): select until T tokens, as exactly as records allow."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.errors import InvalidParameterError
from kmq.methods import get_method
from kmq.methods.allocate import allocate_budget, cluster_weights
from kmq.methods.strata import allocate_strata, select_stratified, stratum_codes
from kmq.methods.tokens import first_fit, parse_token_budget, select_tokens

CLUSTER_METHODS = ["kmq", "kmeans-random", "kmeans-closest"]
ORDERED_METHODS = ["random", "top-quality", "kcenter", "qdit", "deita"]


@pytest.mark.parametrize(
    "text, value",
    [("2M-tokens", 2_000_000), ("40k-tokens", 40_000), ("1500000-tokens", 1_500_000), ("1.5M-tokens", 1_500_000),
     ("40K-tokens", 40_000), ("3B-tokens", 3_000_000_000), ("7 tokens", 7), ("2m-Tokens", 2_000_000)],
)  # fmt: skip
def test_parse_token_budget(text, value):
    assert parse_token_budget(text) == value


@pytest.mark.parametrize("text", ["300", "0.1", "10%", "", "2M"])
def test_parse_token_budget_leaves_record_budgets(text):
    assert parse_token_budget(text) is None


@pytest.mark.parametrize(
    "text", ["1.2345k-tokens", "abc-tokens", "-5-tokens", "2MM-tokens", "1e6-tokens", "-tokens", "0-tokens"]
)
def test_parse_token_budget_errors(text):
    with pytest.raises(InvalidParameterError, match="whole number of tokens such as 2M-tokens"):
        parse_token_budget(text)


def naive_first_fit(tokens, groups, gap):
    gap = np.array(gap, dtype=np.int64)
    taken = np.zeros(len(tokens), bool)
    for i, (t, g) in enumerate(zip(tokens.tolist(), groups.tolist(), strict=True)):
        if t <= gap[g]:
            taken[i] = True
            gap[g] -= t
    return taken, gap


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_first_fit_equals_the_sequential_loop(data):
    k = data.draw(st.integers(1, 5))
    groups = np.sort(np.array(data.draw(st.lists(st.integers(0, k - 1), max_size=60)), dtype=np.int64))
    tokens = np.array(data.draw(st.lists(st.integers(0, 50), min_size=len(groups), max_size=len(groups))), np.int64)
    gap = np.array(data.draw(st.lists(st.integers(0, 300), min_size=k, max_size=k)), dtype=np.int64)
    taken, left = first_fit(tokens, groups, gap)
    ref_taken, ref_left = naive_first_fit(tokens, groups, gap)
    assert taken.tolist() == ref_taken.tolist() and left.tolist() == ref_left.tolist()


def pool(seed, n=600, k=12, d=8, low=1, high=400):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d))
    labels = rng.integers(0, k, size=n)
    X = centers[labels] + 0.5 * rng.normal(size=(n, d))
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    centroids = np.stack([X[labels == c].mean(axis=0) for c in range(k)]).astype(np.float32)
    inputs = {"labels": labels, "quality": rng.normal(size=n), "embeddings": X, "centroids": centroids}
    return inputs, rng.integers(low, high + 1, size=n)


def needs(name, inputs):
    return {k: v for k, v in inputs.items() if k in get_method(name).needs}


def check_exact(picked, tokens, budget):
    idx = picked.indices
    achieved = int(tokens[idx].sum())
    assert len(np.unique(idx)) == len(idx)
    assert picked.stats["tokens"]["achieved"] == achieved and picked.stats["tokens"]["records"] == len(idx)
    assert np.array_equal(picked.explain["tokens"], tokens[idx])
    assert achieved <= budget
    if len(idx) < len(tokens):  # rows are left: the gap is smaller than the longest row
        assert budget - achieved < tokens.max()
    return achieved


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.0, 1.0), name=st.sampled_from(CLUSTER_METHODS),
       allocation=st.sampled_from(["equal", "proportional"]))  # fmt: skip
def test_cluster_methods_exact_and_each_cluster_within_one_row(seed, frac, name, allocation):
    inputs, tokens = pool(seed, n=300)
    budget = int(frac * tokens.sum())
    picked = select_tokens(name, tokens=tokens, token_budget=budget, random_state=seed,
                           inputs=needs(name, inputs), params={"allocation": allocation})  # fmt: skip
    check_exact(picked, tokens, budget)
    labels = inputs["labels"]
    sizes = np.bincount(labels)
    capacity = np.bincount(labels, weights=tokens).astype(np.int64)
    weights = cluster_weights(capacity if allocation == "proportional" else sizes, allocation)  # by token mass
    quota = allocate_budget(capacity, weights, budget)
    got = np.bincount(labels[picked.indices], weights=tokens[picked.indices], minlength=len(sizes))
    longest = np.array([tokens[labels == c].max() for c in range(len(sizes))])
    assert (np.abs(got - quota) <= longest).all()  # each cluster's token quota within one of its rows
    cl = labels[picked.indices]
    assert np.array_equal(picked.explain["token_quota"], quota[cl])
    assert np.array_equal(picked.explain["quota"], np.bincount(cl, minlength=len(sizes))[cl])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.0, 1.0), name=st.sampled_from(ORDERED_METHODS))
def test_ordered_methods_exact(seed, frac, name):
    inputs, tokens = pool(seed, n=250)
    budget = int(frac * tokens.sum())
    params = {"fill": True} if name == "deita" else {}
    picked = select_tokens(name, tokens=tokens, token_budget=budget, random_state=seed, inputs=needs(name, inputs),
                           params=params)  # fmt: skip
    check_exact(picked, tokens, budget)


@pytest.mark.parametrize("name", CLUSTER_METHODS + ORDERED_METHODS)
def test_one_token_per_row_is_the_record_budget(name, global_random_seed):
    inputs, _ = pool(global_random_seed)
    ones = np.ones(600, np.int64)
    sub = needs(name, inputs)
    by_tokens = select_tokens(name, tokens=ones, token_budget=137, random_state=np.random.default_rng(3), inputs=sub)
    by_records = get_method(name).fn(n=600, budget=137, random_state=np.random.default_rng(3), **sub)
    assert np.array_equal(by_tokens.indices, by_records.indices)  # the same picks, in the same order
    assert by_tokens.stats["tokens"]["achieved"] == 137


@pytest.mark.parametrize("name", CLUSTER_METHODS)
def test_one_token_per_row_is_the_record_budget_with_proportional_allocation(name):
    inputs, _ = pool(5)
    sub = needs(name, inputs)
    params = {"allocation": "proportional"}
    by_tokens = select_tokens(name, tokens=np.ones(600, np.int64), token_budget=211, random_state=8, inputs=sub,
                              params=params)  # fmt: skip
    by_records = get_method(name).fn(n=600, budget=211, random_state=8, **sub, **params)
    assert np.array_equal(by_tokens.indices, by_records.indices)
    for key in ("quota", "cluster_size", "probability"):
        np.testing.assert_array_equal(by_tokens.explain[key], by_records.explain[key])


def test_ordered_methods_grow_their_record_budget_and_cut_at_t():
    inputs, tokens = pool(1)
    quality = -tokens + np.arange(600) * 1e-6  # the shortest rows are the best: the first estimate is too small
    picked = select_tokens("top-quality", tokens=tokens, token_budget=30_000, random_state=0,
                           inputs={"quality": quality})  # fmt: skip
    assert picked.stats["tokens"]["runs"] > 1
    order = np.argsort(-quality, kind="stable")
    taken, _ = naive_first_fit(tokens[order], np.zeros(600, np.int64), [30_000])
    assert picked.indices.tolist() == order[taken].tolist()  # top quality, first fit within T
    assert np.array_equal(picked.explain["score"], quality[picked.indices])


def test_the_draw_order_is_the_record_draws(global_random_seed):
    # common random numbers: under a token budget each cluster takes rows in the record draw's order
    inputs, tokens = pool(global_random_seed)
    picked = select_tokens("kmq", tokens=tokens, token_budget=40_000, random_state=global_random_seed,
                           inputs=needs("kmq", inputs))  # fmt: skip
    labels = inputs["labels"]
    sizes = np.bincount(labels)
    full = get_method("kmq").fn(n=600, budget=600, random_state=global_random_seed, labels=labels,
                                quality=inputs["quality"])  # fmt: skip
    rank = np.empty(600, np.int64)
    rank[full.indices] = np.arange(600)
    for c in range(len(sizes)):
        mine = picked.indices[labels[picked.indices] == c]
        assert (np.diff(rank[mine]) > 0).all()  # a subsequence of the full draw's order in that cluster


def test_errors():
    inputs, tokens = pool(0, n=50)
    total = int(tokens.sum())
    with pytest.raises(InvalidParameterError, match=rf"token budget \({total + 1} tokens\) is larger than the pool's"):
        select_tokens("random", tokens=tokens, token_budget=total + 1, random_state=0, inputs={})
    with pytest.raises(InvalidParameterError, match=r"'tokens' parameter must be >= 0. Got tokens\[3\]=-1"):
        select_tokens("random", tokens=np.where(np.arange(50) == 3, -1, tokens), token_budget=5, random_state=0,
                      inputs={})  # fmt: skip
    with pytest.raises(InvalidParameterError, match=r"'tokens' parameter must be a 1-D int array"):
        select_tokens("random", tokens=tokens.astype(float), token_budget=5, random_state=0, inputs={})
    with pytest.raises(InvalidParameterError, match=r"needs the input\(s\) \['quality'\]"):
        select_tokens("kmq", tokens=tokens, token_budget=5, random_state=0, inputs={"labels": inputs["labels"]})


@pytest.mark.parametrize("name", ["kmq", "top-quality"])
def test_token_quotas_per_stratum_on_the_mixed_pool(mixed_arrays, name):
    a = mixed_arrays
    codes, names = stratum_codes(a.source)
    sizes = {s: int(a.tokens[codes == j].sum()) for j, s in enumerate(names)}  # strata sized in tokens
    budget = 60_000
    counts = allocate_strata(sizes, budget, {"lima": 0.4}, field="source", unit="tokens")
    inputs = {"labels": a.labels, "quality": a.quality}
    inputs = {k: v for k, v in inputs.items() if k in get_method(name).needs}
    picked = select_stratified(name, strata=codes, names=names, counts=counts, random_state=2, inputs=inputs,
                               tokens=a.tokens)  # fmt: skip
    achieved = int(a.tokens[picked.indices].sum())
    assert achieved == picked.stats["tokens"]["achieved"] <= budget
    assert budget - achieved < a.tokens.max()
    assert len(np.unique(picked.indices)) == len(picked.indices) == picked.stats["tokens"]["records"]
    lima = names.index("lima")
    got = int(a.tokens[picked.indices[codes[picked.indices] == lima]].sum())
    assert abs(got - 24_000) <= a.tokens[codes == lima].max()  # lima's token quota within one row
    assert np.array_equal(picked.explain["stratum"], codes[picked.indices])
