"""Tests of the registered ``kmq`` and ``random`` selection methods."""

from __future__ import annotations

import numpy as np
import pytest

from kmq.errors import InvalidParameterError
from kmq.methods import METHODS, check_params, get_method


def pool(sizes, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(sizes)), sizes))
    return labels, rng.normal(size=labels.size)


def run(name, labels=None, quality=None, *, budget, seed=0, **params):
    method = get_method(name)
    inputs = {"labels": labels, "quality": quality}
    kwargs = {key: inputs[key] for key in method.needs}
    n = len(labels) if labels is not None else len(quality)
    return method.fn(n=n, budget=budget, random_state=np.random.default_rng(seed), **kwargs, **params)


def test_registry():
    assert {"kmq", "random"} <= set(METHODS)
    kmq = get_method("kmq")
    assert kmq.needs == {"labels", "quality"}
    assert kmq.params == {"allocation": "equal", "within": "softmax", "temperature": 1.0}
    assert check_params(kmq, {"within": "top"})["within"] == "top"
    assert get_method("random").needs == frozenset()


@pytest.mark.parametrize("allocation", ["equal", "proportional"])
@pytest.mark.parametrize("within", ["softmax", "proportional", "uniform", "top"])
def test_exact_budget_unique_indices(allocation, within, global_random_seed):
    labels, quality = pool([1, 3, 40, 7, 0, 25, 2], seed=global_random_seed)
    quality = np.abs(quality)
    for budget in (0, 1, 13, 50, len(labels)):
        picked = run(
            "kmq", labels, quality, budget=budget, seed=global_random_seed, allocation=allocation, within=within
        )
        assert picked.indices.dtype == np.int64
        assert len(picked.indices) == len(np.unique(picked.indices)) == budget
        assert ((picked.indices >= 0) & (picked.indices < len(labels))).all()
        assert len(picked.reason) == budget


def test_equal_vs_proportional_allocation():
    labels, quality = pool([2, 8, 10])
    equal = run("kmq", labels, quality, budget=10, allocation="equal")
    proportional = run("kmq", labels, quality, budget=10, allocation="proportional")
    assert np.bincount(labels[equal.indices]).tolist() == [2, 4, 4]  # 10/3 each, cluster 0 capped at 2
    assert np.bincount(labels[proportional.indices]).tolist() == [1, 4, 5]  # 2, 8, 10 -> 1, 4, 5
    assert equal.stats["n_capped"] == 1 and equal.stats["redistributed"] == 2  # uncapped [4, 3, 3]
    assert proportional.stats["n_capped"] == 0


def test_small_clusters_used_fully_and_budget_exact():
    # The authors' code takes min(floor(b / K), |D_j|) = 3 + 6 + 6 = 15 of b = 20.
    labels, quality = pool([3, 20, 20])
    picked = run("kmq", labels, quality, budget=20)
    assert len(picked.indices) == 20
    assert np.bincount(labels[picked.indices]).tolist() == [3, 9, 8]
    # and the floor remainder is kept: b = 20, K = 6 equal clusters -> 4, 4, 3, 3, 3, 3
    labels, quality = pool([10] * 6)
    assert np.bincount(labels[run("kmq", labels, quality, budget=20).indices]).tolist() == [4, 4, 3, 3, 3, 3]


def test_within_top_takes_best_of_each_cluster():
    labels = np.array([0, 0, 0, 1, 1, 1])
    quality = np.array([0.1, 0.9, 0.5, 3.0, 2.0, 1.0])
    picked = run("kmq", labels, quality, budget=4, within="top")
    assert picked.indices.tolist() == [1, 2, 3, 4]
    assert picked.reason == ["cluster 0: top draw"] * 2 + ["cluster 1: top draw"] * 2


def test_stats():
    labels, quality = pool([2, 8, 10, 0, 5])
    stats = run("kmq", labels, quality, budget=12, temperature=0.5).stats
    assert stats == {
        "allocation": "equal",
        "within": "softmax",
        "temperature": 0.5,
        "n_clusters": 5,
        "n_nonempty_clusters": 4,
        "n_selected_clusters": 4,
        "per_cluster_min": 2,
        "per_cluster_max": 4,
        "n_capped": 1,
        "redistributed": 1,
    }


@pytest.mark.parametrize("name", ["kmq", "random"])
def test_same_seed_same_selection(name):
    labels, quality = pool([30, 50, 20])
    a = run(name, labels, quality, budget=40, seed=11)
    b = run(name, labels, quality, budget=40, seed=11)
    c = run(name, labels, quality, budget=40, seed=12)
    assert np.array_equal(a.indices, b.indices) and a.reason == b.reason
    assert not np.array_equal(a.indices, c.indices)


def test_random_method(global_random_seed):
    quality = np.zeros(100)
    picked = run("random", quality=quality, budget=37, seed=global_random_seed)
    assert len(np.unique(picked.indices)) == 37 and picked.indices.dtype == np.int64
    assert picked.reason == ["uniform random"] * 37
    assert run("random", quality=quality, budget=0).indices.size == 0
    with pytest.raises(InvalidParameterError, match=r"'budget' parameter of random .*\[0, 100\].*Got 101"):
        run("random", quality=quality, budget=101)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"allocation": "uniform"},
            r"The 'allocation' parameter of kmq must be one of \['equal', 'proportional'\]. Got 'uniform' instead.",
        ),
        (
            {"within": "closest"},
            r"The 'within' parameter of kmq must be one of \['softmax', 'proportional', 'uniform', 'top'\]. "
            r"Got 'closest' instead.",
        ),
        ({"temperature": 0}, r"'temperature' parameter of kmq .*Got 0 instead"),
        ({"budget": 7}, r"'budget' parameter of kmq .*\[0, 6\].*Got 7"),
        ({"quality": np.ones(5)}, r"'quality' parameter of kmq .*shape \(6,\)"),
        ({"quality": np.array([1.0, np.nan, 1, 1, np.nan, 1])}, r"2 NaN or infinite value\(s\), first at row 1"),
        ({"labels": np.array([0, 0, -1, 1, 1, 1])}, r"1 negative value\(s\), first labels\[2\]=-1"),
        ({"labels": np.array([0, 1, 1])}, "'labels' has 3 rows but the pool has n=6"),
        ({"within": "proportional", "quality": -np.ones(6)}, r"6 negative value\(s\).*within='softmax'"),
    ],
)
def test_bad_input(change, match):
    kwargs = {
        "n": 6,
        "budget": 3,
        "random_state": np.random.default_rng(0),
        "labels": np.array([0, 0, 0, 1, 1, 1]),
        "quality": np.arange(6.0),
        **change,
    }
    with pytest.raises(InvalidParameterError, match=match):
        get_method("kmq").fn(**kwargs)


# Common random numbers: methods that coincide in a limit draw the same noise, so they give the same picks.


def select(name, arrays, *, budget=300, seed=0, **params):
    method = get_method(name)
    inputs = {"labels": arrays.labels, "quality": arrays.quality}
    kwargs = {key: inputs[key] for key in method.needs}
    n = len(arrays.labels)
    return method.fn(n=n, budget=budget, random_state=np.random.default_rng(seed), **kwargs, **params).indices


@pytest.mark.parametrize("allocation", ["equal", "proportional"])
def test_limits_of_kmq_draw_the_same_picks_as_kmeans_random(dolly_arrays, allocation, global_random_seed):
    # Before: kmq --temperature 1e6 and kmeans-random shared 0 of 300 picks on dolly_3k (opposite noise).
    reference = select("kmeans-random", dolly_arrays, seed=global_random_seed, allocation=allocation)
    constant = type(dolly_arrays)(**{**dolly_arrays.__dict__, "quality": np.full(len(dolly_arrays.labels), 2.5)})
    limits = {
        "temperature 1e9": select("kmq", dolly_arrays, seed=global_random_seed, allocation=allocation,
                                  temperature=1e9),
        "within uniform": select("kmq", dolly_arrays, seed=global_random_seed, allocation=allocation,
                                 within="uniform"),
        "proportional, constant quality": select("kmq", constant, seed=global_random_seed, allocation=allocation,
                                                 within="proportional"),
        "softmax, constant quality": select("kmq", constant, seed=global_random_seed, allocation=allocation),
    }  # fmt: skip
    for name, picks in limits.items():
        assert picks.tolist() == reference.tolist(), name  # same picks, same order
    # a large but finite temperature is already nearly the limit; another seed is an independent draw
    near = select("kmq", dolly_arrays, seed=global_random_seed, allocation=allocation, temperature=1e3)
    assert np.intersect1d(near, reference).size >= 295
    other = select("kmeans-random", dolly_arrays, seed=global_random_seed + 100, allocation=allocation)
    assert np.intersect1d(other, reference).size < 100
