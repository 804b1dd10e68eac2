"""Tests of kmq.methods.draw: vectorised within-cluster draws without replacement."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kmq.errors import InvalidParameterError
from kmq.methods.draw import draw_in_cluster, draw_per_cluster
from kmq.methods.validation import check_random_state

MODES = ["softmax", "proportional", "uniform", "top", "closest"]


def toy(rng, n=400, k=7):
    labels = rng.integers(0, k, size=n)
    labels[:k] = np.arange(k)  # every cluster non-empty
    quality = rng.random(n) * 5
    distances = rng.random(n)
    sizes = np.bincount(labels, minlength=k)
    counts = rng.integers(0, sizes + 1)
    return labels, quality, distances, counts


def trials(quality, n_trials, count=1, **kw):
    """Draw from ``n_trials`` independent copies of one cluster at once; returns local positions (n_trials, count)."""
    m = len(quality)
    labels = np.repeat(np.arange(n_trials), m)
    idx, cl = draw_per_cluster(labels, np.full(n_trials, count), quality=np.tile(quality, n_trials), **kw)
    return (idx - cl * m).reshape(n_trials, count)


@pytest.mark.parametrize("within", MODES)
def test_exact_counts_no_duplicates(within, rng):
    labels, quality, distances, counts = toy(rng)
    idx, cl = draw_per_cluster(labels, counts, quality=quality, distances=distances, within=within, random_state=rng)
    assert idx.dtype == np.int64 and cl.dtype == np.int64
    assert len(np.unique(idx)) == len(idx) == counts.sum()
    assert (labels[idx] == cl).all()
    assert np.bincount(cl, minlength=len(counts)).tolist() == counts.tolist()
    assert (np.diff(cl) >= 0).all()  # grouped by cluster id


@pytest.mark.parametrize("within", MODES)
def test_available_is_respected(within, rng):
    labels, quality, distances, _ = toy(rng)
    available = rng.random(len(labels)) < 0.5
    room = np.bincount(labels[available], minlength=7)
    idx, _ = draw_per_cluster(
        labels, room, quality=quality, distances=distances, within=within, random_state=rng, available=available
    )
    assert available[idx].all()
    assert sorted(idx.tolist()) == np.flatnonzero(available).tolist()  # a full draw takes every available row
    with pytest.raises(InvalidParameterError, match=r"exceeds the \d+ selectable \(available\) rows of cluster"):
        draw_per_cluster(
            labels,
            room + 1,
            quality=quality,
            within=within,
            distances=distances,
            random_state=rng,
            available=available,
        )


@pytest.mark.parametrize("within", ["softmax", "proportional", "uniform"])
def test_same_seed_same_draw(within, global_random_seed):
    labels, quality, _, counts = toy(np.random.default_rng(123))
    a = draw_per_cluster(labels, counts, quality=quality, within=within, random_state=global_random_seed)
    b = draw_per_cluster(
        labels, counts, quality=quality, within=within, random_state=np.random.default_rng(global_random_seed)
    )
    c = draw_per_cluster(labels, counts, quality=quality, within=within, random_state=global_random_seed + 100)
    assert np.array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_top_and_closest_match_a_per_cluster_reference():
    rng = np.random.default_rng(5)
    k = 70_000  # ids above 2**16 exercise the second radix digit
    labels = rng.choice([3, 65_535, 65_536, 69_999], size=300)
    quality = rng.integers(0, 4, size=300).astype(float)  # many ties: lowest row index first
    counts = np.zeros(k, dtype=np.int64)
    counts[[3, 65_535, 65_536, 69_999]] = [5, 1, 7, 3]
    idx, cl = draw_per_cluster(labels, counts, quality=quality, within="top", random_state=0)
    expected = []
    for c in sorted(set(labels.tolist())):
        rows = np.flatnonzero(labels == c)
        expected += rows[np.argsort(-quality[rows], kind="stable")][: counts[c]].tolist()
    assert idx.tolist() == expected
    idx_c, _ = draw_per_cluster(labels, counts, distances=-quality, within="closest", random_state=0)
    assert idx_c.tolist() == expected


def test_low_temperature_approaches_top(rng):
    labels, quality, _, counts = toy(rng)
    top, _ = draw_per_cluster(labels, counts, quality=quality, within="top", random_state=rng)
    cold, _ = draw_per_cluster(labels, counts, quality=quality, within="softmax", temperature=1e-6, random_state=rng)
    assert np.array_equal(np.sort(top), np.sort(cold))


def test_high_temperature_approaches_uniform():
    quality = np.array([0.0, 1.0, 2.0, 10.0])
    picks = trials(quality, 20_000, within="softmax", temperature=1e6, random_state=0)
    freq = np.bincount(picks.ravel(), minlength=4) / picks.size
    assert np.abs(freq - 0.25).max() < 0.015


def test_softmax_inclusion_frequencies_match_p():
    quality = np.array([1.0, 2.0, 3.0, 7.0, -4.0])
    temperature = 0.7
    z = (quality - quality.mean()) / quality.std()
    p = np.exp(z / temperature) / np.exp(z / temperature).sum()
    picks = trials(quality, 20_000, within="softmax", temperature=temperature, random_state=1)
    freq = np.bincount(picks.ravel(), minlength=5) / picks.size
    assert np.abs(freq - p).max() < 0.015


def test_proportional_inclusion_frequencies_match_p_without_replacement():
    quality = np.array([1.0, 2.0, 3.0, 4.0])
    p = quality / quality.sum()
    one = trials(quality, 20_000, within="proportional", random_state=2)
    assert np.abs(np.bincount(one.ravel(), minlength=4) / one.size - p).max() < 0.015
    # count 2, successive sampling: P(i in S) = p_i + sum_{j != i} p_j p_i / (1 - p_j)
    two = trials(quality, 20_000, count=2, within="proportional", random_state=3)
    assert (two[:, 0] != two[:, 1]).all()
    second = np.array([sum(p[j] * p[i] / (1 - p[j]) for j in range(4) if j != i) for i in range(4)])
    freq = np.bincount(two.ravel(), minlength=4) / len(two)
    assert np.abs(freq - (p + second)).max() < 0.02


def test_constant_quality_is_uniform():
    picks = trials(np.full(4, 3.3), 20_000, within="softmax", random_state=4)
    assert np.abs(np.bincount(picks.ravel(), minlength=4) / picks.size - 0.25).max() < 0.015


@pytest.mark.parametrize("scale", [1e6, 1e300])
def test_huge_and_negative_scores_do_not_overflow(scale):
    quality = np.array([1.0, -2.0, 3.0, -4.0, 0.5, 2.0]) * scale
    labels = np.array([0, 0, 0, 1, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idx, _ = draw_per_cluster(labels, np.array([3, 2]), quality=quality, within="softmax", random_state=0)
        cold, _ = draw_per_cluster(labels, np.array([1, 1]), quality=quality, temperature=1e-9, random_state=0)
    assert len(np.unique(idx)) == 5
    assert cold.tolist() == [2, 5]


def test_proportional_rejects_negative_scores():
    quality = np.array([1.0, -1.0, 2.0, -3.0])
    with pytest.raises(InvalidParameterError, match=r"2 negative value\(s\), first at row 1.*within='softmax'"):
        draw_in_cluster(quality, 1, within="proportional", random_state=0)


def test_proportional_zero_scores_come_last():
    quality = np.array([0.0, 1.0, 0.0, 2.0, 0.0])
    two = trials(quality, 2_000, count=2, within="proportional", random_state=5)
    assert set(np.unique(two)) == {1, 3}
    three = trials(quality, 3_000, count=3, within="proportional", random_state=6)
    assert (np.sort(three[:, :2], axis=1) == [1, 3]).all()
    assert set(three[:, 2]) == {0, 2, 4}  # the zero row is drawn third, uniformly among zeros
    zeros = trials(np.zeros(4), 20_000, within="proportional", random_state=7)
    assert np.abs(np.bincount(zeros.ravel(), minlength=4) / zeros.size - 0.25).max() < 0.015


def test_draw_in_cluster():
    quality = np.array([0.1, 0.9, 0.5, 0.7])
    assert draw_in_cluster(quality, 2, within="top", random_state=0).tolist() == [1, 3]
    assert draw_in_cluster(None, 1, within="closest", distances=quality, random_state=0).tolist() == [0]
    local = draw_in_cluster(quality, 4, random_state=0)
    assert sorted(local.tolist()) == [0, 1, 2, 3]
    with pytest.raises(InvalidParameterError, match=r"'count' parameter of draw_in_cluster .*\[0, 4\]. Got 5"):
        draw_in_cluster(quality, 5, random_state=0)


def test_empty_and_zero_counts():
    idx, cl = draw_per_cluster(np.array([0, 1, 1]), np.array([0, 0]), within="uniform", random_state=0)
    assert idx.size == 0 and cl.size == 0
    idx, _ = draw_per_cluster(
        np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), random_state=0, quality=np.zeros(0)
    )
    assert idx.size == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"within": "best"}, r"'within' parameter of draw_per_cluster must be one of \[.*\]. Got 'best'"),
        ({"temperature": 0.0}, r"'temperature' parameter of draw_per_cluster .*\(0, inf\). Got 0.0"),
        ({"temperature": float("inf")}, "'temperature'"),
        ({"quality": np.array([1.0, np.nan, 2.0, np.nan])}, r"2 NaN or infinite value\(s\), first at row 1"),
        ({"quality": np.ones(3)}, r"'quality' .*shape \(4,\)"),
        ({"quality": None}, "needs 'quality'"),
        ({"within": "closest"}, "needs 'distances'"),
        ({"labels": np.array([0, -1, 1, -2])}, r"2 negative value\(s\), first labels\[1\]=-1"),
        ({"labels": np.array([0, 1, 2, 1])}, "cluster ids up to 2 but 'counts' covers only 2"),
        ({"counts": np.array([1, -1])}, r"counts\[1\]=-1"),
        ({"counts": np.array([3, 1])}, r"counts\[0\]=3 exceeds the 2 rows of cluster 0"),
        ({"available": np.array([1, 1, 1, 1])}, "'available' .*bool"),
        ({"random_state": "seed"}, "'random_state'"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, match):
    args = {
        "labels": np.array([0, 0, 1, 1]),
        "counts": np.array([1, 1]),
        "quality": np.arange(4.0),
        "random_state": 0,
        **kwargs,
    }
    with pytest.raises(InvalidParameterError, match=match):
        draw_per_cluster(args.pop("labels"), args.pop("counts"), **args)


def test_check_random_state():
    gen = np.random.default_rng(0)
    assert check_random_state(gen) is gen
    assert check_random_state(3).random() == np.random.default_rng(3).random()
    assert isinstance(check_random_state(None), np.random.Generator)
    with pytest.raises(InvalidParameterError):
        check_random_state(True)


@pytest.mark.parametrize("count_share", [0.1, 0.5, 1.0])
def test_random_modes_share_their_noise(global_random_seed, count_share):
    # common random numbers: in their common limits the random modes give the same draw, in the same order
    labels, quality, _, _ = toy(np.random.default_rng(global_random_seed), n=600, k=9)
    counts = np.floor(np.bincount(labels, minlength=9) * count_share).astype(np.int64)

    def draw(within, q=quality, **kw):
        return draw_per_cluster(labels, counts, quality=q, within=within, random_state=global_random_seed, **kw)[0]

    uniform = draw("uniform").tolist()
    assert draw("softmax", temperature=1e12).tolist() == uniform
    assert draw("softmax", q=np.full(600, -7.0)).tolist() == uniform
    assert draw("proportional", q=np.full(600, 3.0)).tolist() == uniform
    assert draw("proportional", q=np.zeros(600)).tolist() == uniform
    # a cluster of zeros among positive scores: the zero rows come after, still in the uniform order
    mixed = np.where(np.arange(600) % 3 == 0, 0.0, 1.0)
    order = draw_per_cluster(labels, np.bincount(labels, minlength=9), quality=mixed, within="proportional",
                             random_state=global_random_seed)[0]  # fmt: skip
    full = draw_per_cluster(labels, np.bincount(labels, minlength=9), within="uniform",
                            random_state=global_random_seed)[0]  # fmt: skip
    for c in range(9):
        rows, ref = order[labels[order] == c], full[labels[full] == c]
        assert rows.tolist() == [r for r in ref if mixed[r] > 0] + [r for r in ref if mixed[r] == 0]
