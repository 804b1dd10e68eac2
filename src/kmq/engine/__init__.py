"""Where the expensive batches run: in this process (``local``, the default) or on Ray Data actors (``ray``).

The blocks an :class:`~kmq.embed.Embedder` or a model scorer has to compute (its cache misses, found by
:func:`kmq.cache.cached_map`) go through the engine the run's ``engine`` settings name
(:class:`~kmq.config.EngineConfig`, ``--engine``). The ``local`` engine is cached_map's own loop. The
``ray`` engine (:class:`~kmq.engine.ray.RayEngine`) runs the same blocks as a Ray Data ``map_batches`` over
a pool of actors, each building its own model from a picklable factory: the encoder's spec and options
(:class:`EmbedderFactory`), or the model scorer's class, model and options (:class:`ScorerFactory`); a
loaded model never travels through the object store. The results come back in order and are written to the
same cache block by block, so a killed Ray run resumes from the cache and a later local run is warm.
k-means trains on its sample here; with ``ray`` the assignment of every row runs as Ray tasks
(:func:`kmq.engine.arrays.assign_rows`, the same chunks and kernel as the local loop, so the same labels).

What runs on the engine: the encoder (:func:`attach`) and the model scorers ``perplexity:``, ``ifd:``,
``reward:`` and ``deita:`` (:func:`attach_scorer`; Deita's two models each get their own actors). What stays
local: ``openai:`` encoders and ``judge:`` scorers (HTTP clients: the work is already on the server, and the
SDK has its own concurrency), ``column:``, and the heuristic and relevance scorers (their encoder is the
run's, which is on the engine). A model scorer whose options cannot be pickled is an error, not a silent
local run: with ``--engine ray`` on a large pool, hours of local scoring would be the surprise.

>>> from kmq.config import EngineConfig
>>> get_engine(EngineConfig()).name
'local'
"""

from __future__ import annotations

from typing import Any

from kmq.engine.local import EmbedderFactory, LocalEngine, ScorerFactory, identity_digest
from kmq.errors import InvalidParameterError

__all__ = [
    "ENGINES", "EmbedderFactory", "LocalEngine", "ScorerFactory", "attach", "attach_scorer", "get_engine",
    "identity_digest",
]  # fmt: skip

#: engine names -> their class (``kmq.engine.ray`` imports Ray only when an engine starts)
ENGINES = {"local": "kmq.engine.local.LocalEngine", "ray": "kmq.engine.ray.RayEngine"}


def get_engine(engine_cfg: Any = None) -> Any:
    """The engine that ``engine_cfg.engine`` names (None: the local engine).

    An engine object itself (anything with ``name`` and ``mapper(factory)``, e.g. a configured
    :class:`~kmq.engine.ray.RayEngine`) is returned as it is.
    """
    if callable(getattr(engine_cfg, "mapper", None)):
        return engine_cfg
    name = getattr(engine_cfg, "engine", "local") if engine_cfg is not None else "local"
    if name not in ENGINES:
        raise InvalidParameterError(f"The 'engine' setting (--engine) must be one of {list(ENGINES)}. Got {name!r}.")
    if name == "local":
        return LocalEngine()
    from kmq.engine.ray import RayEngine

    return RayEngine.from_config(engine_cfg)


def attach(embedder: Any, spec: str, options: dict[str, Any], engine_cfg: Any) -> Any:
    """Let ``engine_cfg``'s engine compute ``embedder``'s cache misses (``embedder.mapper``); returns the embedder.

    ``spec`` and ``options`` are what built it (:func:`kmq.embed.get_embedder`): a Ray actor builds its own copy
    from them. Encoders that call a remote endpoint (``openai:``) stay local: their work is already elsewhere.
    """
    engine = get_engine(engine_cfg)
    if engine.name == "local" or spec.startswith("openai:"):
        return embedder
    if getattr(engine_cfg, "block_size", None):
        embedder.block_size = int(engine_cfg.block_size)
    factory = EmbedderFactory(spec, dict(options), identity_digest(embedder))
    embedder.mapper = engine.mapper(factory)
    return embedder


def attach_scorer(scorer: Any, engine_cfg: Any) -> Any:
    """Let ``engine_cfg``'s engine compute the cache misses of ``scorer``'s models; returns the scorer.

    Every :meth:`~kmq.scorers.base.Scorer.model_parts` part (the scorer itself for ``perplexity:``, ``ifd:``,
    ``reward:``; Deita's complexity and quality models) gets a ``mapper`` whose actors rebuild it from a
    :class:`ScorerFactory`. Scorers without model parts (judge, column, heuristic, relevance) are returned as
    they are. Building the factory reads the model's config and tokenizer here (its identity), not its weights.

    Raises
    ------
    InvalidParameterError
        A part's options cannot be pickled (only plain values travel to the actors).
    """
    import pickle

    engine = get_engine(engine_cfg)
    if engine.name == "local":
        return scorer
    for part in scorer.model_parts():
        options = part.options()
        try:
            pickle.dumps(options)
        except Exception as err:  # PicklingError, TypeError, AttributeError: whatever the object raises
            bad = sorted(k for k, v in options.items() if not _picklable(v))
            raise InvalidParameterError(
                f"--engine {engine.name}: the {part.name} scorer's option(s) {bad or list(options)} cannot be sent "
                f"to the actors ({type(err).__name__}: {err}). Pass plain values (strings, numbers) or use "
                "--engine local."
            ) from err
        if getattr(engine_cfg, "block_size", None):
            part.block_size = int(engine_cfg.block_size)
        part.mapper = engine.mapper(ScorerFactory(type(part), part.model_name, options, identity_digest(part)))
    return scorer


def _picklable(value: Any) -> bool:
    import pickle

    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True
