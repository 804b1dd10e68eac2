"""Every error kmq raises on purpose is defined in ``kmq.errors`` and shown by the CLI as one line, exit 2.

The loop's and the heuristic's pure functions raise :class:`~kmq.errors.InvalidParameterError` (still a
``ValueError``) instead of a plain ``ValueError``, which the command line reported as an internal error.
"""

from __future__ import annotations

import numpy as np
import pytest

from kmq import errors
from kmq.cli.main import _message
from kmq.loop.reweight import split_budget, update_weights
from kmq.loop.signal import cluster_signal, instance_scores
from kmq.scorers.heuristic import heuristic_features, heuristic_scores


@pytest.mark.parametrize(
    ("name", "old_home"),
    [("SettingsChangedError", "kmq.loop.rundir"), ("RunDirBusyError", "kmq.loop.rundir"),
     ("TrainingError", "kmq.loop.train")],
)  # fmt: skip
def test_loop_errors_live_in_errors_py_and_keep_their_old_import_path(name, old_home):
    import importlib

    cls = getattr(errors, name)
    assert cls.__module__ == "kmq.errors" and issubclass(cls, errors.KmqError)
    assert getattr(importlib.import_module(old_home), name) is cls


def test_settings_changed_error_is_still_a_value_error_and_exported_by_kmq_loop():
    import kmq.loop

    assert kmq.loop.SettingsChangedError is errors.SettingsChangedError
    assert issubclass(errors.SettingsChangedError, ValueError)
    assert issubclass(errors.RunDirBusyError, RuntimeError) and issubclass(errors.TrainingError, RuntimeError)


W, S, C = np.full(3, 1 / 3), np.array([1.0, 2.0, 3.0]), np.array([1, 1, 1])
CASES = {
    "split_budget rounds": (lambda: split_budget(10, 0), "The 'rounds' parameter of split_budget must be an int >= 1"),
    "split_budget budget": (lambda: split_budget(-1, 2), "The 'budget' parameter of split_budget must be an int >= 0"),
    "weights shape": (lambda: update_weights(W, S[:2], C), "weights, signal and scored of update_weights"),
    "weights value": (lambda: update_weights(np.array([0.5, 0.0, 0.5]), S, C),
                      "The 'weights' parameter .* Got \\[0.0\\] at clusters \\[1\\]"),
    "signal value": (lambda: update_weights(W, np.array([1.0, np.nan, 2.0]), C),
                     "The 'signal' parameter .* Got \\[nan\\] at scored clusters \\[1\\]"),
    "method": (lambda: update_weights(W, S, C, method="additive"), "The 'method' parameter of update_weights"),
    "temperature": (lambda: update_weights(W, S, C, temperature=0.0), "The 'temperature' parameter"),
    "temperature overflow": (lambda: update_weights(W, S, C, temperature=1e-320), "too small for these signals"),
    "instance shapes": (lambda: instance_scores(np.zeros(3), np.zeros(2)), "gold and generated of instance_scores"),
    "signal shapes": (lambda: cluster_signal(np.zeros(3), np.zeros(2), 2), "labels and scores of cluster_signal"),
    "labels range": (lambda: cluster_signal(np.array([0, 5]), np.zeros(2), 2),
                     r"The 'labels' parameter of cluster_signal must be in \[0, k=2\)\. Got values in \[0, 5\]"),
    "heuristic lengths": (lambda: heuristic_scores(["a"], ["b", "c"]), r"len\(prompts\)=1 should equal"),
    "heuristic vectors": (lambda: heuristic_features(["a"], ["b"], np.zeros((1, 4)), np.zeros((2, 4))),
                          r"must both have shape \(n_examples=1, d\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_kmq_error_that_the_cli_shows_on_one_line_with_exit_2(case):
    call, message = CASES[case]
    with pytest.raises(errors.InvalidParameterError, match=message) as info:
        call()
    assert isinstance(info.value, ValueError)  # callers catching ValueError keep working
    text, code = _message(info.value)
    assert code == 2 and text == f"error: {info.value}" and "\n" not in text


def test_a_temperature_that_overflows_never_gives_nan_weights():
    with pytest.raises(errors.InvalidParameterError, match=r"Use a temperature >= 3e-300"):
        update_weights(W, S, C, temperature=1e-320)  # was: NaN weights, kept by the reweight step
    out = update_weights(W, S, C, temperature=1e-300)  # the smallest that still works: all mass to the best
    assert np.isfinite(out).all() and out.sum() == pytest.approx(1) and out.argmax() == 2
