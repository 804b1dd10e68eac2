"""``kmq.iterate(...)``: the Python entry point of iterative kMQ."""

from __future__ import annotations

import os
from typing import Any

from kmq.config import build
from kmq.loop.config import IterateConfig


def build_iterate_config(
    config: IterateConfig | str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> IterateConfig:
    """Defaults < config file (or object) < dotted-key overrides; None values are ignored.

    The run directory defaults to ``OUT.kmq-run`` beside the subset.
    """
    cfg = build(IterateConfig, config, overrides)
    if not cfg.run_dir and cfg.out:
        from kmq.publish import default_run_dir

        cfg = cfg.updated({"run_dir": str(default_run_dir(cfg.out))})
    return cfg


def iterate(
    pool: Any,
    *,
    budget: int | float | str,
    model: str | None = None,
    rounds: int | None = None,
    out: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    trainer: str | None = None,
    generator: str | None = None,
    judge: str | None = None,
    reweight: str | None = None,
    embedder: str | None = None,
    scorer: str | None = None,
    clusters: int | str | None = None,
    seed: int | None = None,
    config: IterateConfig | str | os.PathLike | None = None,
    settings: dict[str, Any] | None = None,
    restart_from: str | None = None,
    show_progress: bool | None = None,
    overwrite: bool = False,
    engine: str | None = None,
) -> Any:
    """Select ``budget`` records in ``rounds`` rounds of iterative kMQ (train, generate, judge, reweight).

    Parameters
    ----------
    pool : str, path or Pool
        A file, a ``save_to_disk`` folder, a Hugging Face dataset name, or a :class:`kmq.data.Pool`.
    budget : int, float or str
        A count (``5000``) or a fraction of the pool (``0.1``); split over the rounds exactly.
    model : str
        Base model (hub name or local folder) trained each round.
    rounds : int, default 3
    out : path, optional
        Where to write the subset (in the pool's format); the run directory defaults to ``OUT.kmq-run``.
    run_dir : path, optional
        The resumable run directory: calling again with the same settings continues where it stopped.
    trainer, generator, judge, reweight : str, optional
        ``trl | command``; ``hf | vllm | openai:MODEL@URL``; ``relevance | perplexity | reward:M |
        judge:M@URL``; ``multiplicative | softmax``.
    embedder, scorer, clusters, seed : see :func:`kmq.select`
    config : IterateConfig or path to YAML, optional
        Base settings; the arguments override it.
    settings : dict, optional
        Further dotted-key overrides, e.g. ``{"train.lr": 1e-5, "generate.max_new_tokens": 256}``.
    restart_from : str, optional
        ``"prepare"`` or ``"rNN-STEP"``: delete that step and every later one first.
    overwrite : bool, default False
        Use a ``run_dir`` that is not empty and not a ``kmq iterate`` run, or replace an ``out`` kmq did not
        write. Inputs are never overwritten, and kmq deletes only what it made (see :mod:`kmq.publish`).
    engine : {"local", "ray"}, optional
        Where the cache misses of the encoder, the model scorers and the per-round judge are computed, and the
        k-means assignment (:mod:`kmq.engine`; ``--engine``; the rest of ``engine:`` in ``config`` or ``settings``).

    Returns
    -------
    IterSelection
        The selection; ``.manifest["rounds"]`` holds per-round weights, signals, counts and timings.
    """
    from kmq.data import in_memory, load_pool
    from kmq.loop.runner import run_iterate

    is_pool = in_memory(pool)
    overrides = {
        "pool": None if is_pool else str(pool), "budget": budget, "model": model, "rounds": rounds,
        "out": str(out) if out is not None else None, "run_dir": str(run_dir) if run_dir is not None else None,
        "train.trainer": trainer, "generate.generator": generator, "judge.scorer": judge,
        "reweight.method": reweight, "embed.embedder": embedder, "score.scorer": scorer,
        "cluster.clusters": clusters, "seed": seed, "engine.engine": engine, **(settings or {}),
    }  # fmt: skip
    cfg = build_iterate_config(config, overrides)
    if is_pool:
        pool = load_pool(cfg, pool)
        cfg.pool = str(pool.source)
    return run_iterate(
        cfg,
        pool=pool if is_pool else None,
        show_progress=show_progress,
        restart_from=restart_from,
        overwrite=overwrite,
        inputs=[config] if isinstance(config, (str, os.PathLike)) else [],
    )
