"""``kmq experiment``: grids of select -> train -> eval over pools, methods, budgets and seeds, with a results table.

>>> from kmq.evaluate.experiment import load_experiment_config, run_experiment
>>> res = run_experiment(load_experiment_config("exp.yaml"), "runs/exp")  # doctest: +SKIP

The config is :class:`ExperimentConfig` (:mod:`~kmq.evaluate.experiment.config`), the folder layout and the
dry-run plan are in :mod:`~kmq.evaluate.experiment.plan`, the run in :mod:`~kmq.evaluate.experiment.run` and
the tables (``results.csv``, ``results.md``, the paired intervals) in :mod:`~kmq.evaluate.experiment.results`.
"""

from __future__ import annotations

from kmq.evaluate.experiment.config import ExperimentConfig, MethodSpec, load_experiment_config
from kmq.evaluate.experiment.results import paired_interval, t_quantile_975
from kmq.evaluate.experiment.run import ExperimentResult, plan_experiment, run_experiment

__all__ = [
    "ExperimentConfig", "ExperimentResult", "MethodSpec", "load_experiment_config", "paired_interval",
    "plan_experiment", "run_experiment", "t_quantile_975",
]  # fmt: skip
