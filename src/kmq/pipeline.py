"""The static pipeline: pool -> embed -> cluster -> score -> select (``kmq select`` and :func:`kmq.select`).

This is the one place that wires the stages together. Each stage runs only when the chosen method
needs its output (``random`` embeds nothing; ``top-quality`` clusters nothing), and each is cached by
content: vectors per text, clusters by (vectors, k, k-means settings, seed), quality by (pool, scorer,
encoder). A second run with another budget, method or k recomputes nothing upstream.

Randomness: one ``seed`` feeds independent streams per stage (``default_rng([seed, stage])``), so
changing the method or budget never changes the clustering, and the same inputs and seed give the
same bytes out.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from kmq.config import RunConfig, absolute_paths, build, parse_token_budget, resolve_budget
from kmq.errors import InvalidParameterError
from kmq.selection import Selection, input_summary, plan_run, source_counts, versions
from kmq.stages import STREAM_SELECT, Stages

logger = logging.getLogger(__name__)


def build_config(
    config: RunConfig | str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults < config file (or object) < overrides with dotted keys; None values are ignored."""
    return build(RunConfig, config, overrides)


def run_select(
    cfg: RunConfig,
    *,
    pool: Any = None,
    show_progress: bool | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    report: Any = None,
) -> Selection:
    """Run the static pipeline for a resolved config; writes ``cfg.out`` and ``cfg.run_dir`` when set.

    ``report`` (:func:`kmq.report.write_report`) adds ``report.html`` to the run directory, published with it.

    The outputs are checked before anything is read (:mod:`kmq.publish`): none may be an input (the pool,
    ``npy:`` files, ``inputs`` such as the config file), and ``cfg.run_dir`` must be new, empty, or a run
    directory of ``kmq select`` unless ``overwrite``. They are published together at the end.
    """
    from kmq.data import load_pool
    from kmq.methods.registry import check_params, get_method
    from kmq.publish import input_paths
    from kmq.scorers import require_scored

    t0 = time.perf_counter()
    cfg = absolute_paths(cfg)
    method = get_method(cfg.select.method)
    params = check_params(method, cfg.select.params)
    plan = None
    if cfg.out or cfg.run_dir:
        extra = input_paths(*inputs, *([pool.source] if pool is not None else []))
        plan = plan_run(Selection, cfg, out=cfg.out, run_dir=cfg.run_dir, overwrite=overwrite, inputs=extra)
    if cfg.out:
        from kmq.data import check_output_path, source_container

        check_output_path(pool.container if pool is not None else source_container(cfg.pool), cfg.out)
    pool = load_pool(cfg, pool)
    n = len(pool)
    run = Stages(cfg, pool, show_progress)
    run.stats["read"] = {"seconds": round(time.perf_counter() - t0, 3)}
    token_budget = parse_token_budget(cfg.budget)
    strata = run.strata()  # before any heavy stage: an unknown field or quota fails fast
    tokens = run.tokens() if token_budget is not None else None
    budget = resolve_budget(cfg.budget, n) if tokens is None else records_for_tokens(token_budget, tokens)
    logger.info("pool %s: %d records (%s, %s); budget %s; method %s", pool.source, n, pool.format, pool.container,
                cfg.budget, method.name)  # fmt: skip
    inputs: dict[str, Any] = {}
    if "embeddings" in method.needs:
        inputs["embeddings"] = run.vectors().value
    if method.needs & {"labels", "centroids"}:
        inputs["labels"], inputs["centroids"] = run.clusters(budget).value
        inputs = {k: v for k, v in inputs.items() if k in method.needs}
    if "quality" in method.needs:
        run.check_responses()
        inputs["quality"] = require_scored(run.quality().value, pool.ids, scorer=cfg.score.scorer)

    dup_of = run.duplicates(budget)
    found = run.contamination()
    clean = ~found.mask if found is not None else np.ones(n, dtype=bool)
    keep = np.flatnonzero((dup_of < 0) & clean)
    if tokens is not None and token_budget > int(tokens[keep].sum()):
        raise InvalidParameterError(
            f"The token budget ({token_budget} tokens) is larger than the candidates' {int(tokens[keep].sum())} "
            f"tokens ({len(keep)} of {n} records after --dedup {cfg.dedup}"
            + (" and --decontaminate" if found is not None else "")
            + f"). Pass --budget {int(tokens[keep].sum())}-tokens or less."
        )
    if tokens is None and len(keep) < budget:
        unique = int((dup_of < 0).sum())
        raise InvalidParameterError(
            f"The budget ({budget}) is larger than the candidates: {unique} of {n} records are unique under "
            f"--dedup {cfg.dedup}"
            + (f", {len(keep)} of them also clean of the --decontaminate sets" if found is not None else "")
            + f". Pass --budget {len(keep)} or less"
            + (", or --dedup none." if unique < n else ".")
        )
    full = dict(inputs)
    if len(keep) < n:  # the method sees only the kept rows; its picks are mapped back to pool rows
        inputs = {k: (v if k == "centroids" else v[keep]) for k, v in inputs.items()}

    start = time.perf_counter()
    rng = np.random.default_rng([cfg.seed, STREAM_SELECT])
    kept_tokens = tokens[keep] if tokens is not None else None
    if strata is not None:
        from kmq.methods.strata import allocate_strata, select_stratified

        codes, names, fixed = strata[0][keep], strata[1], strata[2]
        unit = "tokens" if tokens is not None else "rows"
        sizes = np.bincount(codes, weights=kept_tokens, minlength=len(names)).round().astype(np.int64)
        counts = allocate_strata(
            dict(zip(names, sizes.tolist(), strict=True)), token_budget if tokens is not None else budget, fixed,
            field=cfg.stratify, unit=unit,
        )  # fmt: skip
        picked = select_stratified(method, strata=codes, counts=counts, random_state=rng, inputs=inputs,
                                   params=params, names=names, tokens=kept_tokens)  # fmt: skip
    elif tokens is not None:
        from kmq.methods.tokens import select_tokens

        picked = select_tokens(method, tokens=kept_tokens, token_budget=token_budget, random_state=rng,
                               inputs=inputs, params=params)  # fmt: skip
    else:
        picked = method.fn(n=len(keep), budget=budget, random_state=rng, **inputs, **params)
    local = np.asarray(picked.indices, dtype=np.int64)
    k_budget = budget  # the clusters were fitted for this budget (a token budget's record estimate)
    if tokens is not None:
        budget = len(local)  # what the token budget bought
    if len(local) != budget or len(np.unique(local)) != budget or (
        len(local) and (local.min() < 0 or local.max() >= len(keep))
    ):
        raise RuntimeError(
            f"method {method.name} returned {len(local)} indices for budget {budget} (bug: please report)"
        )
    idx = keep[local]
    if strata is not None:
        picked.explain["stratum"] = [strata[1][c] for c in np.asarray(picked.explain["stratum"]).tolist()]
    run.stats["select"] = {**picked.stats, "seconds": round(time.perf_counter() - start, 3)}
    labels = inputs.get("labels")
    if labels is not None:
        k = int(run.stats["cluster"]["n_clusters"])
        with_picks = len(np.unique(labels[local]))
        if with_picks < k and budget < k:
            run.warn(
                f"k={k} clusters but a budget of {budget}: {k - with_picks} clusters get no pick, so the selection "
                f"cannot cover them; pass --clusters {max(1, budget // 5)} or fewer (about five picks per cluster)"
            )

    labels, quality = inputs.get("labels"), inputs.get("quality")
    selection = Selection(
        indices=idx,
        ids=[pool.ids[i] for i in idx],
        clusters=labels[local] if labels is not None else None,
        quality=quality[local] if quality is not None else None,
        reason=picked.reason or [method.name] * budget,
        pool=pool,
        config=cfg,
        duplicates=[(pool.ids[i], pool.ids[dup_of[i]]) for i in np.flatnonzero(dup_of >= 0).tolist()],
        explain=dict(getattr(picked, "explain", None) or {}),
        contamination=found,
    )
    _explain(selection, run, k_budget, keep, dup_of, full)
    if strata is not None:
        selection.pool_info["stratum"] = [strata[1][c] for c in strata[0].tolist()]
    selection.manifest = _manifest(cfg, pool, budget, method.name, params, run.stats, selection, t0)
    selection.manifest["diagnostics"] = run_diagnostics(selection, run.computed_vectors(), keep, seed=cfg.seed)
    selection.manifest["warnings"] = list(run.warnings)
    if plan is not None:
        selection.publish(out=cfg.out, run_dir=cfg.run_dir, plan=plan, report=report)
    return selection


def records_for_tokens(token_budget: int, tokens: np.ndarray) -> int:
    """The record count a token budget buys at the pool's mean length (k's default rule and warnings use it)."""
    mean = float(tokens.mean()) if len(tokens) else 1.0
    return int(min(len(tokens), max(1, round(token_budget / max(mean, 1.0)))))


def _explain(
    selection: Selection, run: Stages, budget: int, keep: np.ndarray, dup_of: np.ndarray, inputs: dict[str, Any]
) -> None:
    """Fill the selection's run tables from what this run computed (``inputs``: the method's pool-level inputs).

    A method without clusters gets no cluster columns, one without embeddings no map: nothing is embedded
    or clustered for the report's sake.
    """
    labels = centroids = None
    if run.computed_clusters(budget):
        labels, centroids = run.clusters(budget).value
    quota = None
    if labels is not None and "quota" in selection.explain and "stratum" not in selection.explain:
        # (with strata a pick's quota is its cluster's within its stratum: clusters.parquet then counts picks)
        quota = np.zeros(int(centroids.shape[0]), dtype=np.int64)
        quota[labels[selection.indices]] = np.asarray(selection.explain["quota"], dtype=np.int64)
    start = time.perf_counter()
    fill_run_tables(
        selection, X=run.computed_vectors(), labels=labels, centroids=centroids, quality=inputs.get("quality"),
        candidates=keep, dup_of=dup_of, quota=quota, seed=run.cfg.seed,
    )  # fmt: skip
    if selection.map_xy is not None:
        run.stats["map"] = {"points": int(len(selection.map_xy[0])), "projection": "pca",
                            "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip


def fill_run_tables(
    selection: Selection,
    *,
    X: np.ndarray | None,
    labels: np.ndarray | None,
    centroids: np.ndarray | None,
    quality: np.ndarray | None,
    candidates: np.ndarray,
    dup_of: np.ndarray | None,
    quota: np.ndarray | None,
    seed: int,
) -> None:
    """The pool-level arrays of pool.parquet and clusters.parquet, each pick's cosine to its centroid, the map.

    Parameters
    ----------
    X : ndarray (n, d) or None
        The clustering vectors (L2-normalised), if the run has them: the map and ``cos_centroid``.
    labels, centroids : ndarray or None
        The clusters; ``centroids`` None with labels: the normalised mean of each cluster's vectors.
    candidates : ndarray of int
        The rows the method could pick (after deduplication and decontamination).
    quota : ndarray (k,) or None
        Each cluster's allocated count (None: its picks).
    """
    from kmq.metrics.projection import map_rows, project_2d

    n = len(selection.pool)
    candidate = np.zeros(n, dtype=bool)
    candidate[candidates] = True
    info: dict[str, Any] = {"dup_of": dup_of, "candidate": candidate, "quality": quality}
    if selection.contamination is not None:
        info["contaminated"] = first_match(selection.contamination, selection.pool.ids)
    if labels is not None:
        k = int(centroids.shape[0]) if centroids is not None else int(labels.max()) + 1
        info["labels"], info["n_clusters"] = labels, k
        if X is not None:
            if centroids is None:
                centroids = mean_directions(X, labels, k)
            from kmq.methods.kmeans_baselines import centroid_distances

            cos = (1.0 - centroid_distances(X, labels, centroids)).astype(np.float32)  # chunked, no (n, d) copy
            info["cos_centroid"] = cos
            selection.explain.setdefault("cos_centroid", cos[selection.indices].astype(np.float64))
        if quota is not None:
            info["quota"] = quota
    if X is not None:
        rows = map_rows(n, selection.indices, seed=seed)
        selection.map_xy = (rows, project_2d(X, rows=rows, seed=seed))
    selection.pool_info = info


def mean_directions(X: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """The normalised mean vector of each cluster (spherical k-means centroids), (k, d) float32, in O(n d)."""
    order = np.argsort(labels, kind="stable")
    sums = np.zeros((k, X.shape[1]), dtype=np.float64)
    for lo in range(0, len(order), 65536):  # sorted chunks: one reduceat per chunk, no (n, d) copy
        rows = order[lo : lo + 65536]
        lab = labels[rows]
        starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        sums[lab[starts]] += np.add.reduceat(X[rows].astype(np.float64), starts, axis=0)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


#: record fields whose mix the diagnostics count, when the pool has them
MIX_FIELDS = ("source", "category")


def run_diagnostics(selection: Selection, X: np.ndarray | None, candidates: np.ndarray, *, seed: int) -> dict:
    """:func:`kmq.metrics.diagnostics` of a selection (the manifest's ``diagnostics``), from what the run computed."""
    from kmq.config import DEDUP_TAU, parse_dedup
    from kmq.metrics import diagnostics

    pool, info = selection.pool, selection.pool_info
    columns = pool.columns()
    fields = {f: [None if v is None else str(v) for v in pool.column(f)] for f in MIX_FIELDS if f in columns}
    stratify = getattr(selection.config, "stratify", None)
    if stratify and stratify in columns and stratify not in fields:
        fields[stratify] = [None if v is None else str(v) for v in pool.column(stratify)]
    mode, tau = parse_dedup(getattr(selection.config, "dedup", "none"))
    return diagnostics(
        picks=selection.indices, n=len(pool), embeddings=X, labels=info.get("labels"), quality=info.get("quality"),
        candidates=candidates, prompt_keys=first_prompt_keys(pool.messages), fields=fields or None, seed=seed,
        near_tau=tau if mode == "near" else DEDUP_TAU,
    )  # fmt: skip


def first_prompt_keys(messages: Any, batch: int = 65536) -> np.ndarray:
    """:func:`kmq.metrics.prompt_keys` of every record's first user turn (``""`` without one), (n,) uint64.

    A batch of records at a time: no list of n prompts (about 1 GB of str at 10M short records).
    """
    from kmq.metrics import prompt_keys

    keys = np.empty(len(messages), dtype=np.uint64)
    for lo in range(0, len(messages), batch):
        keys[lo : lo + batch] = prompt_keys(messages.first_user(lo, lo + batch))
    return keys


def first_match(found: Any, ids: list[str]) -> list[str | None]:
    """Per pool row, the first eval set its prompt matched (``pool.parquet``'s ``contaminated``), or None."""
    out: list[str | None] = [None] * len(ids)
    matched = found.matches.select(["id", "eval_set"]).to_pylist()
    if matched:
        row = {rid: i for i, rid in enumerate(ids)}
        for m in matched:
            i = row[m["id"]]
            out[i] = out[i] or m["eval_set"]
    return out


def _manifest(cfg, pool, budget, method, params, stages, selection, t0) -> dict[str, Any]:
    counts: dict[str, Any] = {"pool": len(pool), "selected": budget}
    if selection.clusters is not None:
        counts["clusters_with_picks"] = int(len(np.unique(selection.clusters)))
    per_source = source_counts(pool, selection.indices)
    if per_source is not None:
        counts["per_source"] = per_source
    return {
        "command": "select",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "seed": cfg.seed,
        "input": input_summary(pool),
        "budget": {"requested": cfg.budget, "resolved": budget,
                   **({"tokens": stages["select"]["tokens"]} if "tokens" in stages.get("select", {}) else {})},
        "method": {"name": method, "params": params},
        "stages": stages,
        "counts": counts,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def select(
    pool: Any,
    *,
    budget: int | float | str,
    method: str | None = None,
    clusters: int | str | None = None,
    embedder: str | None = None,
    embed_on: str | None = None,
    scorer: str | None = None,
    seed: int | None = None,
    format: str | None = None,
    dedup: str | None = None,
    decontaminate: list[str] | None = None,
    stratify: str | None = None,
    quota: list[str] | None = None,
    tokenizer: str | None = None,
    out_format: str | None = None,
    out: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    config: RunConfig | str | os.PathLike | None = None,
    show_progress: bool | None = None,
    overwrite: bool = False,
    engine: str | None = None,
    **params: Any,
) -> Selection:
    """Select ``budget`` records from a pool with kMQ (default) or a baseline.

    Parameters
    ----------
    pool : str, path or Pool
        A file, a ``save_to_disk`` folder, a Hugging Face dataset name, or a :class:`kmq.data.Pool`.
    budget : int, float or str
        A count (``5000``), a fraction of the pool (``0.1``) or training tokens (``"2M-tokens"``).
    method : str, default "kmq"
        Any name in ``kmq.methods.METHODS``.
    clusters : int, "auto" or None
        k for k-means; None uses :func:`kmq.cluster.default_n_clusters`; "auto" picks k by silhouette.
    embedder, embed_on, scorer, seed, format : see :class:`kmq.config.RunConfig`
    dedup : str, optional
        ``none``, ``exact`` (default) or ``near[:TAU]``.
    decontaminate : list of str, optional
        Eval sets (files or datakit folders, ``PATH:FIELD``) whose prompts the candidates must not overlap.
    stratify, quota : optional
        A record field whose values keep their pool share (``"source"``), and fixed shares
        (``["source=lima:500"]``).
    tokenizer : str, optional
        The tokenizer of a token budget (default: the encoder's).
    out_format : str, optional
        ``same`` (default), ``messages``, ``sharegpt``, ``alpaca`` or ``prompt-completion``.
    out : path, optional
        Write the subset there, in the pool's format.
    run_dir : path, optional
        Write config.yaml, manifest.json and selection.parquet there (with the marker ``kmq-run.json``).
    config : RunConfig or path to YAML, optional
        Base settings; the keyword arguments override it.
    overwrite : bool, default False
        Replace an existing ``out`` that kmq did not write, or a ``run_dir`` that is not a ``kmq select``
        run. Inputs are never overwritten (see :mod:`kmq.publish`).
    engine : {"local", "ray"}, optional
        Where the encoder's cache misses are computed (:mod:`kmq.engine`; the rest of ``engine:`` in ``config``).
    **params
        Method parameters (``allocation``, ``within``, ``temperature`` for kmq; see each method).

    Returns
    -------
    Selection
    """
    from kmq.data import in_memory, load_pool
    from kmq.methods.registry import get_method

    is_pool = in_memory(pool)
    overrides = {
        "pool": None if is_pool else str(pool),
        "budget": budget,
        "select.method": method,
        "cluster.clusters": clusters,
        "embed.embedder": embedder,
        "embed.embed_on": embed_on,
        "score.scorer": scorer,
        "seed": seed,
        "format": format,
        "dedup": dedup,
        "decontaminate": [str(d) for d in decontaminate] if decontaminate is not None else None,
        "stratify": stratify,
        "quota": list(quota) if quota is not None else None,
        "tokenizer": tokenizer,
        "out_format": out_format,
        "out": str(out) if out is not None else None,
        "run_dir": str(run_dir) if run_dir is not None else None,
        "select.params": params or None,
        "engine.engine": engine,
    }
    cfg = build_config(config, overrides)
    _check_options(get_method(cfg.select.method), params)
    if is_pool:
        pool = load_pool(cfg, pool)
        cfg.pool = str(pool.source)
    extra = [config] if isinstance(config, (str, os.PathLike)) else []
    return run_select(
        cfg, pool=pool if is_pool else None, show_progress=show_progress, overwrite=overwrite, inputs=extra
    )


def _check_options(method: Any, params: dict[str, Any]) -> None:
    """A keyword of :func:`select` that is neither an option nor a parameter of the method: name the close match."""
    import difflib
    import inspect

    unknown = sorted(set(params) - set(method.params))
    if not unknown:
        return
    options = [p for p in inspect.signature(select).parameters if p not in ("pool", "params")]
    valid = [*options, *method.params]
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise InvalidParameterError(
        f"kmq.select got unknown option(s) {', '.join(hints)}. Options: {', '.join(options)}; parameters of "
        f"method {method.name!r}: {', '.join(method.params) or 'none'} (see kmq methods)."
    )


@dataclass(frozen=True)
class KChoice:
    """The result of :func:`choose_k`: the best k and one row per candidate (k, silhouette, seconds, ...)."""

    best: int
    table: list[dict[str, Any]]


def choose_k(
    pool: Any,
    *,
    candidates: list[int] | None = None,
    sample: int | None = None,
    budget: int | float | str | None = None,
    embedder: str | None = None,
    embed_on: str | None = None,
    seed: int | None = None,
    format: str | None = None,
    config: RunConfig | str | os.PathLike | None = None,
    settings: dict[str, Any] | None = None,
    show_progress: bool | None = None,
) -> KChoice:
    """Fit k-means for each candidate k and score it by cosine silhouette (the paper's guideline for k).

    Parameters
    ----------
    pool : str, path or Pool
    candidates : list of int, optional
        Default: powers of two up to what the budget and the pool support (:func:`kmq.cluster.candidate_ks`).
    sample : int, optional
        Points for the silhouette (default ``cluster.silhouette_sample``, 20000).
    budget : int, float or str, optional
        Bounds the default candidates (default: 10% of the pool).
    embedder, embed_on, seed, format, config, settings : as in :func:`kmq.select`

    Returns
    -------
    KChoice
    """
    from kmq.data import in_memory, load_pool

    is_pool = in_memory(pool)
    given = {
        "pool": None if is_pool else str(pool), "cluster.clusters": "auto", "cluster.candidates": candidates,
        "cluster.silhouette_sample": sample, "embed.embedder": embedder, "embed.embed_on": embed_on, "seed": seed,
        "format": format,
    }  # fmt: skip
    overrides = {**(settings or {}), **{k: v for k, v in given.items() if v is not None}}
    cfg = build_config(config, overrides)
    pool = load_pool(cfg, pool if is_pool else None)
    n_budget = resolve_budget(budget if budget is not None else 0.1, len(pool))
    best, choice = Stages(cfg, pool, show_progress).k(n_budget)
    return KChoice(int(best), choice["table"])
