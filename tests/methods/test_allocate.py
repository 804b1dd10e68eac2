"""Tests of kmq.methods.allocate: exact, capped, redistributed budget allocation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.errors import InvalidParameterError
from kmq.methods.allocate import allocate_budget, allocate_budget_with_stats, cluster_weights, equal_weights


def water_fill_reference(capacity, weights, budget):
    """Naive real-valued water-filling: the oracle the integer counts must stay within 1 of."""
    capacity = np.asarray(capacity, dtype=float)
    weights = np.asarray(weights, dtype=float)
    share = np.zeros_like(capacity)
    active = weights > 0
    remaining = float(min(budget, capacity[active].sum()))
    while remaining > 1e-12 and active.any():
        lam = remaining / weights[active].sum()
        over = active & (lam * weights > capacity)
        if not over.any():
            share[active] = lam * weights[active]
            break
        share[over] = capacity[over]
        remaining -= capacity[over].sum()
        active &= ~over
    return share


@st.composite
def problems(draw, *, max_k=25, max_cap=60, zero_weights=True):
    k = draw(st.integers(1, max_k))
    capacity = np.array(draw(st.lists(st.integers(0, max_cap), min_size=k, max_size=k)), dtype=np.int64)
    low = 0 if zero_weights else 1
    weights = np.array(draw(st.lists(st.integers(low, 10), min_size=k, max_size=k)), dtype=float)
    budget = draw(st.integers(0, int(capacity.sum())))
    return capacity, weights, budget


@settings(max_examples=300, deadline=None)
@given(problems())
def test_exact_capped_non_negative(problem):
    capacity, weights, budget = problem
    counts = allocate_budget(capacity, weights, budget)
    assert counts.dtype == np.int64
    assert counts.sum() == budget
    assert (counts >= 0).all()
    assert (counts <= capacity).all()


@settings(max_examples=300, deadline=None)
@given(problems())
def test_within_one_of_water_filled_share(problem):
    capacity, weights, budget = problem
    counts = allocate_budget(capacity, weights, budget)
    positive = weights > 0
    if budget <= capacity[positive].sum():
        assert (counts[~positive] == 0).all()  # zero-weight clusters only when the others are exhausted
        assert np.all(np.abs(counts - water_fill_reference(capacity, weights, budget)) < 1 + 1e-9)
    else:
        assert (counts[positive] == capacity[positive]).all()


@settings(max_examples=300, deadline=None)
@given(problems(zero_weights=False))
def test_proportional_share_within_one_when_no_cap_binds(problem):
    _, weights, budget = problem
    ideal = budget * weights / weights.sum()
    capacity = np.ceil(ideal + 1).astype(np.int64)
    counts = allocate_budget(capacity, weights, budget)
    assert np.all(np.abs(counts - ideal) < 1)
    # a larger weight never gets fewer (integer weights: equal weights give exactly equal ideal shares)
    order = np.argsort(weights, kind="stable")
    for a, b in zip(order[:-1], order[1:], strict=True):
        if weights[b] > weights[a]:
            assert counts[b] >= counts[a]


@settings(max_examples=300, deadline=None)
@given(problems())
def test_equal_weights_differ_by_at_most_one_among_uncapped(problem):
    capacity, _, budget = problem
    counts = allocate_budget(capacity, None, budget)
    room = counts < capacity
    if room.any():
        assert counts[room].max() - counts[room].min() <= 1
        assert counts.max() - counts[room].min() <= 1  # a full cluster never got more than a cluster with room


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 3000), st.integers(0, 10**7), st.integers(0, 2**32 - 1))
def test_large_problems_stay_exact(k, budget, seed):
    rng = np.random.default_rng(seed)
    capacity = rng.integers(0, 2 * budget // k + 2, size=k)
    budget = min(budget, int(capacity.sum()))
    weights = rng.random(k) * (rng.random(k) > 0.1)
    counts = allocate_budget(capacity, weights, budget)
    assert counts.sum() == budget
    assert ((counts >= 0) & (counts <= capacity)).all()


@pytest.mark.parametrize(
    ("capacity", "weights", "budget", "expected"),
    [
        ([5, 1, 10], None, 9, [4, 1, 4]),  # cluster 1 capped at 1, the other 8 split evenly
        ([9, 9, 9], None, 10, [4, 3, 3]),  # equal remainders: the lowest index gets the extra unit
        ([9, 9, 9], None, 11, [4, 4, 3]),
        ([3, 20, 20], None, 20, [3, 9, 8]),  # authors' code: 3 + 6 + 6 = 15 (floor and shortfall lost)
        ([10, 10, 10], [1, 2, 1], 10, [3, 5, 2]),  # 2.5, 5, 2.5: tie at .5 -> index 0
        ([2, 2, 3, 1], [1, 1, 0, 0], 6, [2, 2, 2, 0]),  # weight-0 clusters filled by capacity 3:1 (1.5, .5)
        ([4, 4], [0, 0], 3, [2, 1]),  # all weights zero: by capacity
        ([0, 0, 7], None, 7, [0, 0, 7]),
        ([5, 5], None, 0, [0, 0]),
        ([], None, 0, []),
    ],
)
def test_hand_worked(capacity, weights, budget, expected):
    weights = None if weights is None else np.array(weights, dtype=float)
    assert allocate_budget(np.array(capacity, dtype=np.int64), weights, budget).tolist() == expected


def test_stats_count_caps_and_redistribution():
    counts, stats = allocate_budget_with_stats(np.array([5, 1, 10]), None, 9)
    assert counts.tolist() == [4, 1, 4]
    assert stats == {"n_capped": 1, "redistributed": 2, "zero_weight_filled": 0}  # uncapped would be [3, 3, 3]
    _, stats = allocate_budget_with_stats(np.array([2, 2, 3, 1]), np.array([1.0, 1, 0, 0]), 6)
    assert stats["zero_weight_filled"] == 2
    assert stats["n_capped"] == 2
    _, stats = allocate_budget_with_stats(np.array([10, 10]), None, 7)
    assert stats == {"n_capped": 0, "redistributed": 0, "zero_weight_filled": 0}


def test_budget_above_capacity_is_an_error():
    with pytest.raises(InvalidParameterError, match=r"'budget' parameter of allocate_budget .*\[0, 16\].*Got 17"):
        allocate_budget(np.array([5, 1, 10]), None, 17)


@pytest.mark.parametrize(
    ("capacity", "weights", "budget", "match"),
    [
        ([1, 2], None, -1, "'budget'"),
        ([1, 2], None, 1.5, "'budget'"),
        ([1, -2], None, 1, r"'capacity'.*capacity\[1\]=-2"),
        ([1.0, 2.0], None, 1, "'capacity'.*int"),
        ([1, 2], [1.0], 1, r"'weights'.*shape \(2,\)"),
        ([1, 2], [1.0, -1.0], 1, r"'weights'.*weights\[1\]=-1"),
        ([1, 2], [np.nan, 1.0], 1, r"'weights'.*weights\[0\]=nan"),
    ],
)
def test_bad_input_names_the_parameter(capacity, weights, budget, match):
    weights = None if weights is None else np.array(weights)
    with pytest.raises(InvalidParameterError, match=match):
        allocate_budget(np.array(capacity), weights, budget)


def test_cluster_weights():
    sizes = np.array([5, 0, 15])
    assert cluster_weights(sizes, "equal").tolist() == [0.5, 0.0, 0.5]
    assert cluster_weights(sizes, "proportional").tolist() == [0.25, 0.0, 0.75]
    assert cluster_weights(np.array([0, 0]), "proportional").tolist() == [0.0, 0.0]
    with pytest.raises(InvalidParameterError, match=r"'mode' parameter of cluster_weights must be one of"):
        cluster_weights(sizes, "uniform")


def test_equal_weights():
    assert equal_weights(4).tolist() == [0.25] * 4
    assert equal_weights(0).size == 0
    with pytest.raises(InvalidParameterError, match="'k'"):
        equal_weights(-1)


def test_proportional_allocation_matches_sizes():
    sizes = np.array([2, 8, 10])
    assert allocate_budget(sizes, cluster_weights(sizes, "proportional"), 10).tolist() == [1, 4, 5]
    assert allocate_budget(sizes, cluster_weights(sizes, "equal"), 10).tolist() == [2, 4, 4]
