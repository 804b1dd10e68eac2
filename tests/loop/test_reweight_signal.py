"""The pure parts of iterative kMQ: weight updates, signals, round sizes and per-round allocation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kmq.loop import cluster_signal, instance_scores, split_budget, update_weights
from kmq.loop.reweight import TINY
from kmq.methods.allocate import allocate_budget
from kmq.methods.draw import draw_per_cluster

METHODS = ("multiplicative", "softmax")


@st.composite
def weight_case(draw):
    k = draw(st.integers(1, 12))
    raw = draw(arrays(np.float64, k, elements=st.floats(1e-3, 1e3)))
    signal = draw(arrays(np.float64, k, elements=st.floats(-50, 50)))
    scored = draw(arrays(np.int64, k, elements=st.integers(0, 4)))
    temperature = draw(st.floats(0.05, 20))
    return raw / raw.sum(), signal, scored, temperature


@settings(max_examples=150, deadline=None)
@given(weight_case(), st.sampled_from(METHODS))
def test_weights_stay_a_positive_finite_distribution(case, method):
    w, s, scored, t = case
    out = update_weights(w, s, scored, method=method, temperature=t)
    assert out.shape == w.shape and np.all(np.isfinite(out)) and np.all(out > 0)
    assert out.sum() == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=150, deadline=None)
@given(weight_case(), st.sampled_from(METHODS))
def test_unscored_clusters_keep_their_weight(case, method):
    w, s, scored, t = case
    s = np.where(scored > 0, s, np.nan)  # no signal at all where nothing was scored
    out = update_weights(w, s, scored, method=method, temperature=t)
    np.testing.assert_allclose(out[scored == 0], w[scored == 0], rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(weight_case())
def test_equal_signals_leave_multiplicative_weights_unchanged(case):
    w, s, scored, t = case
    out = update_weights(w, np.full_like(s, s[0]), scored, method="multiplicative", temperature=t)
    np.testing.assert_allclose(out, w, rtol=1e-9)


@settings(max_examples=150, deadline=None)
@given(weight_case(), st.sampled_from(METHODS))
def test_higher_signal_never_gets_lower_weight(case, method):
    w, s, scored, t = case
    if method == "multiplicative":  # same previous weight: the higher signal ends at least as high
        w = np.full_like(w, 1.0 / len(w))
    out = update_weights(w, s, scored, method=method, temperature=t)
    has = np.flatnonzero(scored > 0)
    for i in has:
        for j in has:
            if s[i] > s[j]:
                assert out[i] >= out[j]
    if method == "multiplicative":  # the growth factor w_new / w_prev is monotone in the signal for any weights
        w2 = case[0]
        new = update_weights(w2, s, scored, method=method, temperature=t)
        ratio = new / w2
        floored = new <= 2 * TINY * len(w2)  # at the positivity floor the growth factor is the floor's, not exp(s/T)
        for i in has:
            for j in has:
                if s[i] > s[j] and not floored[j]:  # the floor only ever raises a factor
                    assert ratio[i] >= ratio[j] * (1 - 1e-12)


def test_update_rejects_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        update_weights(np.full(2, 0.5), np.zeros(2), np.ones(2), temperature=0)
    with pytest.raises(ValueError, match="method"):
        update_weights(np.full(2, 0.5), np.zeros(2), np.ones(2), method="eq6")
    with pytest.raises(ValueError, match="finite"):
        update_weights(np.full(2, 0.5), np.array([np.nan, 0.0]), np.ones(2))


@given(st.integers(0, 10_000), st.integers(1, 50))
def test_split_budget_is_exact_and_front_loaded(budget, rounds):
    sizes = split_budget(budget, rounds)
    assert sizes.sum() == budget and sizes.max() - sizes.min() <= 1
    assert np.all(np.diff(sizes) <= 0)


@settings(max_examples=80, deadline=None)
@given(
    st.integers(2, 8).flatmap(
        lambda k: st.tuples(
            st.just(k),
            arrays(np.int64, st.integers(20, 120), elements=st.integers(0, k - 1)),
            st.integers(1, 5),
            st.integers(0, 2**31 - 1),
        )
    )
)
def test_rounds_of_allocation_and_draw_are_exact_and_never_repeat(case):
    """Each round: exactly b/R, never more than a cluster has left, never an already selected example."""
    k, labels, rounds, seed = case
    n = len(labels)
    budget = n // 2
    if budget < rounds:
        return
    rng = np.random.default_rng(seed)
    quality = rng.normal(size=n)
    weights = rng.dirichlet(np.ones(k))
    taken = np.zeros(n, dtype=bool)
    for r, size in enumerate(split_budget(budget, rounds), start=1):
        capacity = np.bincount(labels[~taken], minlength=k)
        counts = allocate_budget(capacity, weights, int(size))
        assert counts.sum() == size and np.all(counts <= capacity)
        idx, cl = draw_per_cluster(
            labels, counts, quality=quality, random_state=np.random.default_rng([seed, 4, r]), available=~taken
        )
        assert len(idx) == size and not taken[idx].any() and len(np.unique(idx)) == size
        assert np.array_equal(np.bincount(cl, minlength=k), counts)
        taken[idx] = True
        weights = update_weights(weights, rng.normal(size=k), rng.integers(0, 3, size=k))
    assert taken.sum() == budget


def test_hand_worked_three_clusters():
    """S per instance -> cluster means (Eq. 5) -> weights (Eq. 6 made well-defined) -> counts, by hand.

    Clusters 0, 1, 2; the judge scores gold and generated answers of five selected instances:

    ========  =======  ====  ==========  ===============
    instance  cluster  gold  gen         S = gold - gen
    ========  =======  ====  ==========  ===============
    a         0        3.0   1.0         2
    b         0        1.0   3 - 2 ln3   2 ln3 - 2
    c         1        0.5   0.3         0.2
    d         1        0.1   0.3         -0.2
    e         2        ln2   0           ln2
    ========  =======  ====  ==========  ===============

    Signals s = (ln3, 0, ln2). From w0 = (1/3, 1/3, 1/3) and T = 1, multiplicative gives
    w ∝ (1/3)(3, 1, 2) = (1/2, 1/6, 1/3); the next round of 12 over roomy clusters draws (6, 2, 4).
    A second update with s = (0, 0, ln2): multiplicative w ∝ (1/2, 1/6, 2/3) -> (3/8, 1/8, 1/2), while the
    memoryless softmax gives (1, 1, 2) / 4 = (1/4, 1/4, 1/2).
    """
    ln2, ln3 = np.log(2.0), np.log(3.0)
    gold = np.array([3.0, 1.0, 0.5, 0.1, ln2])
    gen = np.array([1.0, 3.0 - 2 * ln3, 0.3, 0.3, 0.0])
    labels = np.array([0, 0, 1, 1, 2])
    S = instance_scores(gold, gen)
    np.testing.assert_allclose(S, [2.0, 2 * ln3 - 2, 0.2, -0.2, ln2])
    signal, count = cluster_signal(labels, S, 3)
    np.testing.assert_allclose(signal, [ln3, 0.0, ln2], atol=1e-12)
    assert count.tolist() == [2, 2, 1]
    w1 = update_weights(np.full(3, 1 / 3), signal, count, method="multiplicative", temperature=1.0)
    np.testing.assert_allclose(w1, [1 / 2, 1 / 6, 1 / 3])
    np.testing.assert_allclose(update_weights(np.full(3, 1 / 3), signal, count, method="softmax"), w1)
    assert allocate_budget(np.array([50, 50, 50]), w1, 12).tolist() == [6, 2, 4]
    s2 = np.array([0.0, 0.0, ln2])
    np.testing.assert_allclose(update_weights(w1, s2, count, method="multiplicative"), [3 / 8, 1 / 8, 1 / 2])
    np.testing.assert_allclose(update_weights(w1, s2, count, method="softmax"), [1 / 4, 1 / 4, 1 / 2])
    # a cluster with no scored member (NaN signal) keeps its weight; the others share the rest
    s3 = np.array([ln3, np.nan, 0.0])
    w3 = update_weights(np.full(3, 1 / 3), s3, np.array([1, 0, 1]))
    np.testing.assert_allclose(w3, [(2 / 3) * 3 / 4, 1 / 3, (2 / 3) * 1 / 4])


def test_signal_ignores_unscored_instances_and_eq7_sign():
    sig, cnt = cluster_signal(np.array([0, 0, 1]), np.array([1.0, np.nan, np.nan]), 3)
    assert sig[0] == 1.0 and np.isnan(sig[1]) and np.isnan(sig[2]) and cnt.tolist() == [1, 0, 0]
    # perplexity judge: quality = -meanNLL, direction -1  ->  S = meanNLL(gold) - meanNLL(gen) (Eq. 7)
    nll_gold, nll_gen = np.array([2.5]), np.array([1.0])
    assert instance_scores(-nll_gold, -nll_gen, direction=-1.0).tolist() == [1.5]
