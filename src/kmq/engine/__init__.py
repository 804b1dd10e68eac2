"""Where the expensive batches run: in this process (``local``, the default) or on Ray Data actors (``ray``).

The blocks an :class:`~kmq.embed.Embedder` has to compute (its cache misses, found by
:func:`kmq.cache.cached_map`) go through the engine the run's ``engine`` settings name
(:class:`~kmq.config.EngineConfig`, ``--engine``). The ``local`` engine is cached_map's own loop. The
``ray`` engine (:class:`~kmq.engine.ray.RayEngine`) runs the same blocks as a Ray Data ``map_batches`` over
a pool of actors, each building its own model from the encoder's spec and options (a loaded model never
travels through the object store). The results come back in order and are written to the same
:class:`~kmq.cache.VectorStore` block by block, so a killed Ray run resumes from the cache and a later
local run is warm. Clustering stays local.

>>> from kmq.config import EngineConfig
>>> get_engine(EngineConfig()).name
'local'
"""

from __future__ import annotations

from typing import Any

from kmq.engine.local import EmbedderFactory, LocalEngine, identity_digest
from kmq.errors import InvalidParameterError

__all__ = ["ENGINES", "EmbedderFactory", "LocalEngine", "attach", "get_engine", "identity_digest"]

#: engine names -> their class (``kmq.engine.ray`` imports Ray only when an engine starts)
ENGINES = {"local": "kmq.engine.local.LocalEngine", "ray": "kmq.engine.ray.RayEngine"}


def get_engine(engine_cfg: Any = None) -> Any:
    """The engine that ``engine_cfg.engine`` names (None: the local engine); Ray engines share one per process."""
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
