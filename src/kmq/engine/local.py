"""The local engine (cached_map's own loop, in this process) and the factories that rebuild a block function."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError


class LocalEngine:
    """Blocks are computed here, one after the other: :func:`kmq.cache.cached_map` without a ``mapper``."""

    name = "local"

    def mapper(self, factory: Callable[[], Callable[[list[str]], np.ndarray]]) -> None:
        """None: cached_map's own loop."""
        return None

    def info(self) -> dict[str, Any]:
        return {"engine": self.name}


@dataclass(frozen=True)
class EmbedderFactory:
    """Builds an encoder's ``embed_batch`` where it runs (a Ray actor), from its spec and options.

    Parameters
    ----------
    spec : str
        The ``--embedder`` spec (``minilm``, ``hashing:512``, ``hf:MODEL:last``...).
    options : dict
        The keyword arguments of :func:`kmq.embed.get_embedder` (``EmbedConfig.encoder_options()``).
    identity : str
        :func:`identity_digest` of the driver's encoder. The worker's encoder must have the same, else its
        vectors would be cached under another encoder's name (e.g. ``precision auto`` deciding differently on
        another node's hardware): then it refuses, naming both.
    """

    spec: str
    options: dict[str, Any] = field(default_factory=dict)
    identity: str | None = None

    def __call__(self) -> Callable[[list[str]], np.ndarray]:
        from kmq.embed import get_embedder

        embedder = _the_drivers(get_embedder(self.spec, **self.options), self.identity, f"{self.spec} encoder",
                                "its vectors would differ. Give an explicit --precision and --device that every node "
                                "supports.")  # fmt: skip
        return embedder.embed_batch


def _the_drivers(built: Any, identity: str | None, what: str, why: str) -> Any:
    """``built`` (an encoder or a scorer a worker made) if its :func:`identity_digest` is the driver's ``identity``
    (None: not checked); else the refusal, naming both."""
    if identity is not None and identity_digest(built) != identity:
        raise InvalidParameterError(
            f"The {what} on this worker has identity {built.identity()}, not the driver's ({identity}): {why}"
        )
    return built


def identity_digest(embedder: Any) -> str:
    """A digest of what changes an encoder's vectors (:meth:`~kmq.embed.Embedder.identity`), not how they are kept."""
    from kmq.cache import digest

    return digest(embedder.identity())


@dataclass(frozen=True)
class ScorerFactory:
    """Builds a model scorer's :meth:`~kmq.scorers._lm.HFModelScorer.compute_block` where it runs (a Ray actor).

    Parameters
    ----------
    cls : type
        The scorer's class (an :class:`~kmq.scorers._lm.HFModelScorer`; Ray pickles it by reference).
    model : str
        Hub name or local folder, as the driver's scorer was given it.
    options : dict
        :meth:`~kmq.scorers._lm.HFModelScorer.options` (device, precision, batch size, max length, ...).
    identity : str
        :func:`identity_digest` of the driver's scorer: the worker's must be the same (another model file, hub
        commit or chat template on that node would give other values under the same cache key), else it refuses.
    """

    cls: type
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    identity: str | None = None

    def __call__(self) -> Callable[[list[str]], np.ndarray]:
        scorer = self.cls(self.model, **self.options, show_progress=False, cache=False)
        why = "its values would differ. Give every node the same model files (or pin --score-revision)."
        _the_drivers(scorer, self.identity, f"{scorer.name} scorer", why)
        return scorer.compute_block
