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

    def mapper(self, factory: Callable[[], Callable[[list[str]], np.ndarray]], *, desc: str = "") -> None:
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
    key : str
        The driver's :attr:`~kmq.embed.Embedder.key`. The worker's encoder must have the same key, else its
        vectors would be cached under another encoder's name (e.g. ``precision auto`` deciding differently on
        another node's hardware): then it refuses, naming both.
    """

    spec: str
    options: dict[str, Any] = field(default_factory=dict)
    key: str | None = None

    def __call__(self) -> Callable[[list[str]], np.ndarray]:
        from kmq.embed import get_embedder

        embedder = get_embedder(self.spec, **self.options)
        if self.key is not None and embedder.key != self.key:
            raise InvalidParameterError(
                f"The {self.spec} encoder on this worker has identity {embedder.identity()} (key {embedder.key}), not "
                f"the driver's (key {self.key}): its vectors would differ. Give an explicit --precision and --device "
                "that every node supports."
            )
        return embedder.embed_batch
