"""The embedder interface: texts -> (n, d) float32 rows of unit L2 norm, cached per text.

A subclass writes one method, :meth:`Embedder.embed_batch`, for a block of non-empty texts. The base
class does everything else once for all embedders, through :func:`kmq.cache.cached_map` (the loop the
model scorers use too): it deduplicates texts, looks each one up in the
content-addressed :class:`~kmq.cache.VectorStore`, encodes only the missing ones in length-sorted blocks,
persists every finished block at once (so an interrupted run resumes where it stopped), shows a
progress bar on stderr and reports what it did in :attr:`Embedder.stats_`.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from kmq.cache import VectorStore, cached_map, default_cache_dir, digest, progress_enabled

__all__ = ["Embedder", "l2_normalize", "progress_enabled"]

logger = logging.getLogger(__name__)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


class Embedder(ABC):
    """Base class of text encoders.

    Attributes
    ----------
    name : str
        The spec the user gave (``"minilm"``, ``"st:BAAI/bge-small-en-v1.5"``, ``"hashing"``).
    stats_ : dict
        What the last :meth:`encode` did: ``texts``, ``unique``, ``cached``, ``encoded``, ``seconds``.
    text_keys_ : ndarray of shape (n,), dtype V16
        The content keys of the last :meth:`encode`'s texts (callers use them to key derived artifacts).
    """

    name: str = "embedder"
    #: texts per persisted block: small enough that an interrupt loses little, large enough to batch well
    block_size: int = 1024

    def __init__(self) -> None:
        self.stats_: dict[str, Any] = {}

    @property
    @abstractmethod
    def dim(self) -> int:
        """Vector size d."""

    @abstractmethod
    def embed_batch(self, texts: list[str]) -> np.ndarray:
        """Encode non-empty texts.

        Returns
        -------
        vectors : ndarray of shape (len(texts), d), float32, rows of unit L2 norm
        """

    def identity(self) -> dict[str, Any]:
        """Everything that changes the vectors (model, weights, precision, window). Subclasses extend it."""
        return {"class": type(self).__name__, "name": self.name, "dim": self.dim}

    @property
    def key(self) -> str:
        """Cache key of this embedder's vectors."""
        return digest(self.identity())

    def encode(
        self,
        texts: Sequence[str],
        *,
        show_progress: bool | None = None,
        cache: bool = True,
        desc: str = "embedding",
    ) -> np.ndarray:
        """Embed texts, reusing cached vectors and persisting new ones block by block.

        Parameters
        ----------
        texts : sequence of str
        show_progress : bool or None
            Progress bar on stderr; None shows it when the ``kmq`` logger is at INFO or below.
        cache : bool
            Read and write the vector cache (``$KMQ_CACHE_DIR/vectors/<key>``).

        Returns
        -------
        vectors : ndarray of shape (len(texts), d), float32
            Unit rows; the empty text maps to a zero row.
        """
        start = time.perf_counter()
        store = VectorStore(default_cache_dir() / "vectors" / self.key, self.dim) if cache else None
        res = cached_map(
            texts,
            self.embed_batch,
            store,
            dim=self.dim,
            block_size=self.block_size,
            skip_blank=True,
            show_progress=show_progress,
            desc=desc,
            unit="text",
        )
        self.text_keys_ = res.keys
        self.stats_ = {
            "embedder": self.name,
            "texts": res.stats["items"],
            "unique": res.stats["unique"],
            "cached": res.stats["cached"],
            "encoded": res.stats["computed"],
            "empty": res.stats["skipped"],
            "seconds": round(time.perf_counter() - start, 3),
        }
        logger.debug("embedded %s", self.stats_)
        return res.values
