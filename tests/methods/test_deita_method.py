"""Tests of the Deita baseline (``deita``): quality-ordered scan with a cosine redundancy filter.

(Named ``test_deita_method.py`` because ``tests/scorers/test_deita.py`` already exists.)
"""

from __future__ import annotations

import numpy as np
import pytest

from kmq.errors import InvalidParameterError, SelectionShortfallError
from kmq.methods import get_method
from kmq.methods.deita import deita_filter


def unit(rows) -> np.ndarray:
    X = np.asarray(rows, dtype=np.float64)
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def blobs(n, d=6, k=5, spread=0.25, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(k, d))[rng.integers(k, size=n)] + spread * rng.normal(size=(n, d))
    return unit(X)


def naive_deita(X, quality, budget, tau):
    """One row at a time, by quality (ties: lower index), against every admitted row (dense, float64)."""
    order = sorted(range(len(quality)), key=lambda i: (-quality[i], i))
    X = X.astype(np.float64)
    admitted, rejected = [], []
    for i in order:
        if len(admitted) == budget:
            break
        if admitted and (X[admitted] @ X[i]).max() >= tau:
            rejected.append(i)
        else:
            admitted.append(i)
    return admitted, rejected


def run(X, quality, budget, **params):
    method = get_method("deita")
    return method.fn(
        n=len(X), budget=budget, random_state=np.random.default_rng(0), embeddings=X, quality=quality, **params
    )


def test_hand_worked():
    # row 1 is 8.1 degrees from row 0 (cos 0.990): rejected at tau 0.9, admitted at tau 0.995
    X = unit([[1, 0], [0.99, 0.141], [0, 1], [-1, 0]])
    q = np.array([4.0, 3.0, 2.0, 1.0])
    picked = run(X, q, 3)
    assert picked.indices.tolist() == [0, 2, 3]
    assert picked.stats == {
        "tau": 0.9,
        "admitted": 3,
        "rejected": 1,
        "scanned": 4,
        "filled": 0,
        "max_nearest_cos": pytest.approx(0.0, abs=1e-6),
    }
    assert picked.reason[0] == "deita: admitted, first"
    assert picked.reason[1] == "deita: admitted, nearest cos 0.000"
    assert run(X, q, 3, tau=0.995).indices.tolist() == [0, 1, 2]


def test_cosine_not_squared_l2():
    # cos 0.6 (53 degrees): the authors' squared-L2 < 0.9 test would reject it (|x-y|^2 = 0.8); Deita keeps it
    X = unit([[1, 0], [0.6, 0.8]])
    assert run(X, np.array([2.0, 1.0]), 2).indices.tolist() == [0, 1]


def test_quality_ties_go_to_the_lower_index():
    X = unit([[1, 0], [0, 1], [1, 0.01], [-1, 0]])
    assert run(X, np.array([1.0, 1.0, 1.0, 1.0]), 3).indices.tolist() == [0, 1, 3]


@pytest.mark.parametrize("tau", [0.3, 0.7, 0.9])
@pytest.mark.parametrize("block", [1, 7, 1024])
def test_blocked_scan_equals_sequential_rule(global_random_seed, tau, block):
    rng = np.random.default_rng(global_random_seed)
    X = blobs(300, seed=global_random_seed)
    quality = rng.normal(size=300).round(1)  # many ties
    admitted, nearest, rejected, scanned = deita_filter(X, quality, 40, tau=tau, block=block)
    ref_admitted, ref_rejected = naive_deita(X, quality, 40, tau)
    assert admitted.tolist() == ref_admitted
    assert rejected.tolist() == ref_rejected
    assert scanned == len(ref_admitted) + len(ref_rejected)
    assert np.all(nearest[1:] < tau)


def test_shortfall_raises_with_counts_and_hints():
    X = unit([[1, 0], [1, 0.05], [1, -0.05], [0, 1], [0.05, 1]])
    with pytest.raises(SelectionShortfallError, match=r"admitted only 2 of the budget 4 rows with tau=0.9") as err:
        run(X, np.arange(5.0), 4)
    assert "fill=True" in str(err.value) and "higher tau" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_fill_tops_up_with_the_best_rejected_rows():
    X = unit([[1, 0], [1, 0.05], [1, -0.05], [0, 1], [0.05, 1]])
    quality = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    picked = run(X, quality, 4, fill=True)
    assert picked.indices.tolist() == [0, 3, 1, 2]
    assert picked.reason[2:] == ["deita fill", "deita fill"]
    assert picked.stats["admitted"] == 2 and picked.stats["filled"] == 2 and picked.stats["rejected"] == 3


@pytest.mark.parametrize("budget", [0, 1, 25, 200])
def test_exact_budget_unique_deterministic(global_random_seed, budget):
    rng = np.random.default_rng(global_random_seed)
    X = blobs(200, seed=global_random_seed)
    quality = rng.normal(size=200)
    a = run(X, quality, budget, fill=True)
    b = run(X, quality, budget, fill=True)
    assert a.indices.dtype == np.int64 and a.indices.shape == (budget,)
    assert np.unique(a.indices).size == budget
    assert a.indices.tolist() == b.indices.tolist()
    assert len(a.reason) == budget


def test_parameter_errors():
    X, q = unit([[1, 0], [0, 1]]), np.array([1.0, 2.0])
    with pytest.raises(
        InvalidParameterError, match=r"^The 'tau' parameter of deita must be a float in \(0, 1\]\. Got 2 instead\.$"
    ):
        run(X, q, 1, tau=2)
    with pytest.raises(InvalidParameterError, match="'tau'"):
        run(X, q, 1, tau=0.0)
    with pytest.raises(InvalidParameterError, match="'fill'"):
        run(X, q, 1, fill="yes")
    with pytest.raises(InvalidParameterError, match="finite"):
        run(X, np.array([1.0, np.nan]), 1)
    with pytest.raises(InvalidParameterError, match="norm"):
        run(X * 3, q, 1)
