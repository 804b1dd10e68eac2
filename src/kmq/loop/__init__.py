"""Iterative kMQ (paper Algorithm 1): select, train, generate, judge, reweight, round after round.

>>> import kmq
>>> sel = kmq.iterate("pool.jsonl", budget=3000, rounds=3, model="Qwen/Qwen2.5-0.5B",
...                   out="subset.jsonl", judge="reward:Skywork/Skywork-Reward-V2-Qwen3-0.6B")  # doctest: +SKIP

Rerunning the same call resumes from the last finished step (see :mod:`kmq.loop.rundir`). The pure parts
(:func:`update_weights`, :func:`split_budget`, :func:`cluster_signal`, :func:`instance_scores`) import no
model library.
"""

from __future__ import annotations

from kmq._lazy import lazy_getattr
from kmq.loop.reweight import REWEIGHTS, split_budget, update_weights
from kmq.loop.signal import cluster_signal, instance_scores

_LAZY = {
    "iterate": "kmq.loop.api",
    "IterateConfig": "kmq.loop.config",
    "load_iterate_config": "kmq.loop.config",
    "run_iterate": "kmq.loop.runner",
    "plan_iterate": "kmq.loop.runner",
    "IterSelection": "kmq.loop.runner",
    "SettingsChangedError": "kmq.loop.rundir",
    "get_trainer": "kmq.loop.train",
    "get_generator": "kmq.loop.generate",
}

__all__ = ["REWEIGHTS", "cluster_signal", "instance_scores", "split_budget", "update_weights", *_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
