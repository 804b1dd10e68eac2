"""Tests of the ``top-quality`` baseline and the shared baseline helpers."""

from __future__ import annotations

import numpy as np
import pytest

from kmq.errors import InvalidParameterError, SelectionShortfallError
from kmq.methods import METHODS, get_method
from kmq.methods._arrays import quality_order, zscore
from kmq.methods.partition import coarse_partition
from kmq.methods.validation import check_number


def run(quality, budget, seed=0):
    return get_method("top-quality").fn(
        n=len(quality), budget=budget, random_state=np.random.default_rng(seed), quality=np.asarray(quality)
    )


def test_registry_declares_inputs_and_defaults():
    assert {"top-quality", "kcenter", "deita", "qdit"} <= set(METHODS)
    assert get_method("top-quality").needs == {"quality"}
    assert get_method("kcenter").needs == {"embeddings"}
    assert get_method("deita").needs == {"embeddings", "quality"}
    assert get_method("qdit").needs == {"embeddings", "quality"}
    assert get_method("deita").params == {"tau": 0.9, "fill": False}
    assert get_method("qdit").params["alpha"] == 0.5
    assert get_method("kcenter").params["start"] == "mean"


def test_hand_worked():
    picked = run([1.0, 3.0, 2.0, 3.0, -1.0], 3)
    assert picked.indices.tolist() == [1, 3, 2]  # equal scores: lower index first
    assert picked.reason == ["top quality"] * 3
    assert picked.stats["threshold"] == 2.0
    assert picked.stats["selected_mean_quality"] == pytest.approx(8 / 3)


@pytest.mark.parametrize("budget", [0, 1, 37, 50])
def test_exact_budget_unique_deterministic(global_random_seed, budget):
    quality = np.random.default_rng(global_random_seed).normal(size=50).round(1)
    a, b = run(quality, budget, seed=1), run(quality, budget, seed=2)  # the seed plays no part
    assert a.indices.dtype == np.int64 and a.indices.shape == (budget,)
    assert np.unique(a.indices).size == budget
    assert a.indices.tolist() == b.indices.tolist()
    if 0 < budget < 50:
        rest = np.setdiff1d(np.arange(50), a.indices)
        assert quality[a.indices].min() >= quality[rest].max()


def test_errors():
    with pytest.raises(InvalidParameterError, match="finite"):
        run([1.0, np.inf], 1)
    with pytest.raises(InvalidParameterError, match="budget"):
        run([1.0, 2.0], 3)
    with pytest.raises(InvalidParameterError, match=r"^The 'x' parameter of f must be an int in \[1, inf\)\. Got 0"):
        check_number(0, "x", "f", low=1, kind=int)
    with pytest.raises(InvalidParameterError, match="a float in"):
        check_number(float("nan"), "x", "f", low=0.0)
    assert issubclass(SelectionShortfallError, ValueError)


def test_helpers():
    assert quality_order(np.array([2.0, 5.0, 2.0, 7.0])).tolist() == [3, 1, 0, 2]
    assert zscore(np.array([3.0, 3.0])).tolist() == [0.0, 0.0]
    z = zscore(np.array([1.0, 2.0, 3.0]))
    assert z.mean() == pytest.approx(0.0) and z.std() == pytest.approx(1.0)


def test_coarse_partition_covers_every_row_once():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 8)).astype(np.float32)
    order, starts, labels = coarse_partition(X, 20)
    assert sorted(order.tolist()) == list(range(2000))
    assert starts[0] == 0 and starts[-1] == 2000 and np.all(np.diff(starts) > 0)
    assert np.all(labels[order] == np.repeat(np.arange(starts.size - 1), np.diff(starts)))
    assert np.diff(starts).max() <= 2 * 2000 / 20 or starts.size - 1 >= 20
    again = coarse_partition(X, 20)
    assert np.array_equal(again[0], order)  # seeded
