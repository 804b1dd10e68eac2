"""The experiment's tables: the paired 95% interval against a hand computation, and results.md / results.csv."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmq.evaluate.experiment.results import csv_text, markdown, mean_std, paired_interval, t_quantile_975


def test_paired_interval_by_hand():
    # differences 0.10, 0.15, 0.05: mean 0.10, sd 0.05, t(0.975, 2) = 4.302653, half = 4.302653 * 0.05 / sqrt(3)
    a, b = {0: 0.50, 1: 0.60, 2: 0.55}, {0: 0.40, 1: 0.45, 2: 0.50}
    mean, lo, hi, n = paired_interval(a, b)
    half = 4.302652729749464 * 0.05 / math.sqrt(3)
    assert n == 3 and mean == pytest.approx(0.10)
    assert (lo, hi) == (pytest.approx(0.10 - half), pytest.approx(0.10 + half))
    assert half == pytest.approx(0.124207, abs=1e-6)


def test_paired_interval_pairs_by_seed_and_needs_two():
    # seed 7 has no partner; the order of the dicts does not matter: seeds are paired by value
    a, b = {1: 0.3, 0: 0.2, 7: 0.9}, {0: 0.1, 1: 0.1}
    mean, lo, hi, n = paired_interval(a, b)
    assert n == 2 and mean == pytest.approx(0.15)
    assert hi - mean == pytest.approx(12.706204736174698 * math.sqrt(0.005) / math.sqrt(2))
    assert paired_interval({0: 0.5}, {0: 0.4}) is None
    assert paired_interval({0: 0.5, 1: 0.2}, {2: 0.4, 3: 0.1}) is None


def test_t_quantiles():
    assert t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile_975(10) == pytest.approx(2.2281, abs=1e-4)
    assert t_quantile_975(31) == pytest.approx(2.0395, abs=1e-4)  # past the table
    assert t_quantile_975(120) == pytest.approx(1.9799, abs=1e-4)
    with pytest.raises(ValueError):
        t_quantile_975(0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-1, 1), st.floats(-1, 1)), min_size=2, max_size=12),
    st.floats(-5, 5),
)
def test_paired_interval_properties(pairs, shift):
    a = {s: x for s, (x, _) in enumerate(pairs)}
    b = {s: y for s, (_, y) in enumerate(pairs)}
    mean, lo, hi, n = paired_interval(a, b)
    assert n == len(pairs) and lo <= mean + 1e-12 and mean <= hi + 1e-12
    assert mean - lo == pytest.approx(hi - mean, abs=1e-9)
    # shifting both arms by the same amount changes nothing: the interval is on the differences
    shifted = paired_interval({s: x + shift for s, x in a.items()}, {s: y + shift for s, y in b.items()})
    assert shifted == pytest.approx((mean, lo, hi, n), abs=1e-9)
    swapped = paired_interval(b, a)
    assert swapped[:3] == pytest.approx((-mean, -hi, -lo), abs=1e-9)


def _rows(method, values, tokens=100, status="ok", limited=False):
    out = []
    for seed, per_task in values.items():
        for task, v in per_task.items():
            out.append({
                "cell": f"p__{method}__b10__s{seed}", "pool": "p", "method": method, "params": {}, "budget": 10,
                "seed": seed, "task": task, "metric": "acc", "value": v, "stderr": 0.01, "n": 4,
                "limited": limited, "train_tokens": tokens, "status": status, "failed_step": None, "error": None,
            })  # fmt: skip
    return out


def _meta(cells):
    return {"name": "t", "model": "m", "trainer": "x", "eval": "a, b", "summary": "-", "cells": cells}


def test_markdown_means_average_and_paired_difference():
    rows = _rows("kmq", {0: {"a": 0.5, "b": 0.7}, 1: {"a": 0.6, "b": 0.9}, 2: {"a": 0.55, "b": 0.8}}, tokens=120)
    rows += _rows("random", {0: {"a": 0.4, "b": 0.6}, 1: {"a": 0.45, "b": 0.7}, 2: {"a": 0.5, "b": 0.7}})
    cells = [{"cell": r["cell"], "status": "ok"} for r in rows[::2]]
    md = markdown(_meta(cells), rows, ["a", "b"])
    # kmq: a = 55.00 ± 5.00, b = 80.00 ± 10.00, average per seed 60, 75, 67.5 -> 67.50 ± 7.50
    assert "| kmq | 10 | 3 | 55.00 ± 5.00 | 80.00 ± 10.00 | 67.50 ± 7.50 |" in md
    # random: average per seed 50, 57.5, 60 -> differences 10, 17.5, 7.5: mean 11.67, sd 5.204
    half = t_quantile_975(2) * mean_std([10, 17.5, 7.5])[1] / math.sqrt(3)
    assert f"+11.67 [{11.666666 - half:+.2f}, {11.666667 + half:+.2f}]" in md
    assert "| random | 10 | 3 | 45.00 ± 5.00 | 66.67 ± 5.77 | 55.83 ± 5.20 | — | 100 |" in md
    assert "limited" not in md and "Cells without results" not in md


def test_markdown_one_seed_limited_and_failed_cells():
    rows = _rows("kmq", {0: {"a": 0.5}}, limited=True) + _rows("random", {0: {"a": 0.25}}, limited=True)
    rows += _rows("kmq", {1: {"a": None}}, tokens=None, status="failed")
    cells = [{"cell": "p__kmq__b10__s0", "status": "ok"}, {"cell": "p__random__b10__s0", "status": "ok"},
             {"cell": "p__kmq__b10__s1", "status": "failed", "failed_step": "train", "error": "TrainingError: x"},
             {"cell": "p__random__b10__s1", "status": "pending"}]  # fmt: skip
    md = markdown(_meta(cells), rows, ["a"])
    assert "+25.00 (n/a: 1 seed)" in md
    assert "a (acc x100) †" in md and "**limited**" in md
    assert "- p__kmq__b10__s1: failed at train: TrainingError: x" in md
    assert "- p__random__b10__s1: not run yet" in md


def test_csv_is_exact_and_stable():
    rows = _rows("kmq", {0: {"a": 0.1 + 0.2}})
    rows[0]["params"] = {"temperature": 0.5, "allocation": "equal"}
    text = csv_text(rows)
    assert text.splitlines()[0].startswith("cell,pool,method,params,budget,seed,task,metric,value,stderr")
    assert ',"{""allocation"":""equal"",""temperature"":0.5}",' in text
    assert ",0.30000000000000004,0.01,4,false,100,ok,," in text
    assert csv_text(rows) == text
