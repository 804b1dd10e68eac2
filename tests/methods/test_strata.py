"""Stratified selection (kmq.methods.strata): exact per-stratum quotas, a method run inside each stratum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.errors import InvalidParameterError
from kmq.methods import get_method
from kmq.methods.strata import MISSING, allocate_strata, select_stratified, stratum_codes


@st.composite
def strata_problems(draw):
    s = draw(st.integers(1, 8))
    names = [f"s{i}" for i in range(s)]
    sizes = dict(zip(names, draw(st.lists(st.integers(0, 400), min_size=s, max_size=s)), strict=True))
    budget = draw(st.integers(0, sum(sizes.values())))
    fixed = {}
    for name in draw(st.lists(st.sampled_from(names), unique=True, max_size=s)):
        if draw(st.booleans()):
            fixed[name] = draw(st.integers(0, sizes[name]))
        else:
            fixed[name] = draw(st.floats(0.0, 1.0, allow_nan=False))
    return sizes, budget, fixed


def feasible(sizes, budget, fixed):
    """Whether the quotas fit (the only cases allocate_strata must solve)."""
    taken = 0.0
    for name, q in fixed.items():
        share = q if isinstance(q, int) else q * budget
        if share > sizes[name] * (1 + 1e-9):
            return False
        taken += share
    rest = budget - taken
    free = sum(v for k, v in sizes.items() if k not in fixed)
    return rest >= -1e-9 * max(budget, 1) and (rest <= 1e-9 * max(budget, 1) or rest <= free)


@settings(max_examples=400, deadline=None)
@given(strata_problems())
def test_allocate_strata_properties(problem):
    sizes, budget, fixed = problem
    if not feasible(sizes, budget, fixed):
        with pytest.raises(InvalidParameterError, match="quota"):
            allocate_strata(sizes, budget, fixed)
        return
    counts = allocate_strata(sizes, budget, fixed)
    assert list(counts) == list(sizes)
    assert sum(counts.values()) == budget  # exact
    assert all(0 <= counts[s] <= sizes[s] for s in sizes)  # never above a stratum's size
    taken = 0.0
    for name, q in fixed.items():
        if isinstance(q, int):
            assert counts[name] == q  # fixed counts honoured exactly
            taken += q
        else:
            assert abs(counts[name] - q * budget) < 1 + 1e-9  # fractions within 1
            taken += q * budget
    free = {k: v for k, v in sizes.items() if k not in fixed}
    total_free = sum(free.values())
    for name, size in free.items():  # the rest in proportion to the pool's shares, within 1
        share = (budget - taken) * size / total_free if total_free else 0.0
        assert abs(counts[name] - share) < 1 + 1e-9


def test_allocate_strata_hand_worked():
    sizes = {"a": 100, "b": 300, "c": 600}
    assert allocate_strata(sizes, 100) == {"a": 10, "b": 30, "c": 60}
    assert allocate_strata(sizes, 100, {"a": 40, "c": 0.25}) == {"a": 40, "b": 35, "c": 25}
    assert allocate_strata(sizes, 7) == {"a": 1, "b": 2, "c": 4}  # 0.7, 2.1, 4.2: largest remainder to a
    assert allocate_strata(sizes, 10, {"a": 0.5, "b": 0.5}) == {"a": 5, "b": 5, "c": 0}


@pytest.mark.parametrize(
    "fixed, match",
    [
        ({"lima": 120}, r"quota source=lima:120 is larger than its stratum, which has 100 rows"),
        ({"lima": 0.9}, r"quota source=lima:0.9 \(180 of the budget 200\) is larger than its stratum, which has 100"),
        ({"gsm8k": 150, "code": 60}, r"take 210 of the budget 200"),
        ({"gsm8k": 0.5, "code": 0.1, "lima": 10}, r"leave 70 of the budget 200 .* every stratum has a quota"),
        (
            {"dolly": 3},
            r"source=dolly names no stratum: the pool's values of 'source' are \['lima', 'gsm8k', 'code'\]",
        ),
        ({"lima": True}, r"must be a count \(an int >= 0\) or a fraction"),
        ({"lima": 1.5}, r"must be a count \(an int >= 0\) or a fraction"),
    ],
)
def test_allocate_strata_errors_name_the_numbers(fixed, match):
    with pytest.raises(InvalidParameterError, match=match):
        allocate_strata({"lima": 100, "gsm8k": 300, "code": 60}, 200, fixed, field="source")


def test_allocate_strata_rest_larger_than_the_free_strata():
    with pytest.raises(
        InvalidParameterError, match=r"leave 180 of the budget 200 .*\(lima, code\) have only 160 rows"
    ):
        allocate_strata({"lima": 100, "gsm8k": 300, "code": 60}, 200, {"gsm8k": 20}, field="source")
    with pytest.raises(InvalidParameterError, match=r"must be an int in the range \[0, 460\]"):
        allocate_strata({"lima": 100, "gsm8k": 300, "code": 60}, 461)


def test_stratum_codes():
    codes, names = stratum_codes(["lima", "gsm8k", None, "lima", 3])
    assert names == [MISSING, "3", "gsm8k", "lima"]
    assert codes.tolist() == [3, 2, 0, 3, 1] and codes.dtype == np.int64
    assert stratum_codes([])[0].shape == (0,)


def method_inputs(a, name):
    inputs = {"labels": a.labels, "quality": a.quality, "embeddings": a.X, "centroids": a.centroids}
    return {k: v for k, v in inputs.items() if k in get_method(name).needs}


@pytest.mark.parametrize("name", ["kmq", "kmeans-closest", "top-quality", "kcenter", "random"])
def test_select_stratified_on_the_mixed_pool(mixed_arrays, name):
    a = mixed_arrays
    codes, names = stratum_codes(a.source)
    sizes = dict(zip(names, np.bincount(codes).tolist(), strict=True))
    counts = allocate_strata(sizes, 150, {"lima": 60, "fastchat_dummy": 0.1}, field="source")
    assert counts["lima"] == 60 and counts["fastchat_dummy"] == 15 and sum(counts.values()) == 150
    run = dict(strata=codes, names=names, counts=counts, inputs=method_inputs(a, name))
    picked = select_stratified(name, random_state=np.random.default_rng(4), **run)
    idx = picked.indices
    assert len(np.unique(idx)) == len(idx) == 150
    per = {s: int((codes[idx] == j).sum()) for j, s in enumerate(names)}
    assert per == counts  # exact per stratum
    assert np.array_equal(picked.explain["stratum"], codes[idx])
    assert all(r.startswith(f"stratum {names[c]}: ") for r, c in zip(picked.reason, codes[idx], strict=True))
    assert {s: e["picked"] for s, e in picked.stats["strata"].items()} == counts
    assert {s: e["size"] for s, e in picked.stats["strata"].items()} == sizes
    again = select_stratified(name, random_state=np.random.default_rng(4), **run)
    assert np.array_equal(again.indices, idx)  # deterministic from the generator
    if name == "top-quality":  # inside each stratum: its best rows
        for j, s in enumerate(names):
            rows = np.flatnonzero(codes == j)
            best = rows[np.argsort(-a.quality[rows], kind="stable")[: counts[s]]]
            assert sorted(idx[codes[idx] == j].tolist()) == sorted(best.tolist())
    if name in ("kmq", "kmeans-closest"):  # clusters of the whole pool; quota and size counted inside the stratum
        cl = a.labels[idx]
        for j in range(len(names)):
            mine = codes[idx] == j
            in_stratum = np.bincount(a.labels[codes == j], minlength=a.centroids.shape[0])
            assert np.array_equal(picked.explain["cluster_size"][mine], in_stratum[cl[mine]])
            assert np.array_equal(
                picked.explain["quota"][mine], np.bincount(cl[mine], minlength=len(in_stratum))[cl[mine]]
            )


def test_a_stratum_stream_does_not_depend_on_the_other_counts(mixed_arrays):
    a = mixed_arrays
    codes, names = stratum_codes(a.source)
    inputs = method_inputs(a, "kmq")
    base = {s: 20 for s in names}
    other = {**base, "gsm8k_train": 0, "dolly_3k": 35}
    p1 = select_stratified("kmq", strata=codes, names=names, counts=base, random_state=9, inputs=inputs)
    p2 = select_stratified("kmq", strata=codes, names=names, counts=other, random_state=9, inputs=inputs)
    lima = names.index("lima")
    assert np.array_equal(p1.indices[codes[p1.indices] == lima], p2.indices[codes[p2.indices] == lima])
    assert not (codes[p2.indices] == names.index("gsm8k_train")).any()  # count 0: skipped
    assert p2.stats["strata"]["gsm8k_train"] == {"size": 300, "quota": 0, "picked": 0}


def test_select_stratified_errors(mixed_arrays):
    a = mixed_arrays
    codes, names = stratum_codes(a.source)
    with pytest.raises(InvalidParameterError, match=r"count 301 of stratum 'lima' is larger than its 300 rows"):
        select_stratified("kmq", strata=codes, names=names, counts={"lima": 301}, random_state=0,
                          inputs=method_inputs(a, "kmq"))  # fmt: skip
    with pytest.raises(InvalidParameterError, match=r"unknown strata \['nope'\]"):
        select_stratified("kmq", strata=codes, names=names, counts={"nope": 1}, random_state=0,
                          inputs=method_inputs(a, "kmq"))  # fmt: skip


def test_select_stratified_token_quota_errors(mixed_arrays):
    a = mixed_arrays
    codes, names = stratum_codes(a.source)
    lima_tokens = int(a.tokens[codes == names.index("lima")].sum())
    inputs = method_inputs(a, "kmq")
    with pytest.raises(InvalidParameterError, match=rf"count {lima_tokens + 1} of stratum 'lima' is larger than its "
                                                    rf"{lima_tokens} tokens"):  # fmt: skip
        select_stratified("kmq", strata=codes, names=names, counts={"lima": lima_tokens + 1}, random_state=0,
                          inputs=inputs, tokens=a.tokens)  # fmt: skip
    with pytest.raises(InvalidParameterError, match=r"codes up to 4 but 'names' names only 2 strata"):
        select_stratified("kmq", strata=codes, names=names[:2], counts=np.zeros(2, np.int64), random_state=0,
                          inputs=inputs)  # fmt: skip
