"""The embedder interface: texts -> (n, d) float32 rows of unit L2 norm, cached per text.

A subclass writes one method, :meth:`Embedder.embed_batch`, for a block of non-empty texts. The base
class does everything else once for all embedders, through :func:`kmq.cache.cached_map` (the loop the
model scorers use too): it deduplicates texts, looks each one up in the
content-addressed :class:`~kmq.cache.VectorStore`, encodes only the missing ones in length-sorted blocks,
persists every finished block at once (so an interrupted run resumes where it stopped), shows a
progress bar on stderr and reports what it did in :attr:`Embedder.stats_`.

:meth:`Embedder.encode_conversations` gives a conversation's vector without a pass of its own: the
length-weighted mean of its prompt's and its response's vectors (the vectors the heuristic's relevance needs
anyway), the way a long text's vector pools its windows. Two passes over the pool's tokens instead of three
(conversation, then prompt and response): about half the encoding time. It is not the vector of the
joined text (the model attends across the prompt–response boundary there); BENCHMARKS.md ("The README's
main job") measures what the difference does to a selection.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from kmq.cache import VectorStore, cached_map, default_cache_dir, digest, progress_enabled, text_keys
from kmq.errors import InvalidParameterError

__all__ = ["Embedder", "l2_normalize", "progress_enabled"]

logger = logging.getLogger(__name__)

#: the pooling of :meth:`Embedder.encode_conversations`, part of its vectors' key
POOLED_CONVERSATION = "prompt+response-length-mean-v1"


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _pool_rows(pv: np.ndarray, wp: np.ndarray, rv: np.ndarray, wr: np.ndarray, block: int = 65_536) -> np.ndarray:
    """``l2_normalize(wp * pv + wr * rv)`` in float32, a block of rows at a time: into ``pv`` itself when it is
    float32 (one (n, d) matrix less), else into a new float32 matrix. Row by row the same float32 operations as
    the whole-matrix expression, so the same bytes; the peak is the two inputs and the output, not five matrices."""
    out = pv if pv.dtype == np.float32 else np.empty(pv.shape, np.float32)
    wp32, wr32 = wp.astype(np.float32)[:, None], wr.astype(np.float32)[:, None]
    for lo in range(0, len(pv), block):
        rows = slice(lo, lo + block)
        p, r = np.asarray(pv[rows], dtype=np.float32), np.asarray(rv[rows], dtype=np.float32)
        out[rows] = l2_normalize(wp32[rows] * p + wr32[rows] * r)
    return out


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
    #: dtype of the cached shards (``--store-dtype``): "float16" keeps them in a folder of their own
    store_dtype: str = "float32"
    #: computes the blocks of cache misses elsewhere (:func:`kmq.engine.attach` sets it); None: in this process
    mapper: Any = None

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
        """Cache key of this embedder's vectors (float16 shards have a key, and a folder, of their own)."""
        if self.store_dtype == "float32":
            return digest(self.identity())
        return digest(self.identity(), {"store_dtype": self.store_dtype})

    def encode(
        self,
        texts: Sequence[str],
        *,
        show_progress: bool | None = None,
        cache: bool = True,
        desc: str = "embedding",
        dtype: Any = np.float32,
    ) -> np.ndarray:
        """Embed texts, reusing cached vectors and persisting new ones block by block.

        Parameters
        ----------
        texts : sequence of str
        show_progress : bool or None
            Progress bar on stderr; None shows it when the ``kmq`` logger is at INFO or below.
        cache : bool
            Read and write the vector cache (``$KMQ_CACHE_DIR/vectors/<key>``).
        desc : str
            The progress bar's label.
        dtype : numpy dtype, default float32
            Of the rows returned from the cache: float16 gives a float16 store's rows exactly as stored, in half
            the memory (``cache=False`` always gives float32).

        Returns
        -------
        vectors : ndarray of shape (len(texts), d), float32 (or ``dtype``)
            Unit rows; the empty text maps to a zero row.
        """
        start = time.perf_counter()
        folder = default_cache_dir() / "vectors" / self.key
        store = VectorStore(folder, self.dim, dtype=dtype, store_dtype=self.store_dtype) if cache else None
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
            mapper=self.mapper,
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

    def text_weights(self, texts: Sequence[str]) -> np.ndarray:
        """How much each text counts when vectors are pooled: its length in characters (0 when blank).

        Characters stand in for tokens: they need no tokenizer, so a warm run loads nothing, and on
        dolly_3k with MiniLM the pooled vectors were as close to the joined text's with character weights
        as with token weights (BENCHMARKS.md).

        Returns
        -------
        weights : ndarray of shape (len(texts),), float64
        """
        return np.fromiter((len(t) if t.strip() else 0 for t in texts), dtype=np.float64, count=len(texts))

    def pooled_key(self, prompts: Sequence[str], responses: Sequence[str]) -> str:
        """The key of :meth:`encode_conversations`' vectors for these texts, without encoding anything."""
        return self._pooled_digest(text_keys(prompts), text_keys(responses))

    def _pooled_digest(self, prompt_keys: np.ndarray, response_keys: np.ndarray) -> str:
        return digest(self.key, POOLED_CONVERSATION, prompt_keys.tobytes(), response_keys.tobytes())

    def encode_conversations(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        *,
        show_progress: bool | None = None,
        cache: bool = True,
    ) -> np.ndarray:
        """Conversation vectors pooled from prompt and response vectors: two passes, not three.

        Row i is ``l2_normalize(w_p[i] * encode(prompts)[i] + w_r[i] * encode(responses)[i])`` with ``w``
        from :meth:`text_weights` (the texts' lengths): close to the token-weighted mean that :meth:`encode`
        gives a text longer than the model's window, with the prompt and the response as its windows. The
        prompt and response vectors are cached as :meth:`encode` caches them, so a scorer that needs them
        next (the heuristic's relevance) encodes nothing. Afterwards :attr:`text_keys_` holds the prompts'
        keys, then the responses' (shape (2n,)), :attr:`pooled_key_` the vectors' key (:meth:`pooled_key`, from
        those keys), and :attr:`stats_` the two passes' counts summed.

        Cosine to the vector of the joined conversation text on dolly_3k with MiniLM: mean 0.953,
        median 0.962, 5th percentile 0.881 (BENCHMARKS.md, with what it does to a selection); it is a
        different vector, with its own key (:meth:`pooled_key`).

        Parameters
        ----------
        prompts, responses : sequence of str, length n
            The pool's prompt view (system and user turns) and response view (assistant turns).
        show_progress : bool or None
        cache : bool

        Returns
        -------
        vectors : ndarray of shape (n, d), float32
            Unit rows; a record whose prompt and response are both empty maps to a zero row.
        """
        if len(prompts) != len(responses):
            raise InvalidParameterError(
                f"len(prompts)={len(prompts)} should equal len(responses)={len(responses)}: one prompt and one "
                "response view per record."
            )
        start = time.perf_counter()
        # a float16 store's rows come back as they are stored (exactly: half the memory of float32 copies)
        rows = np.float16 if np.dtype(self.store_dtype) == np.float16 else np.float32
        pv = self.encode(prompts, show_progress=show_progress, cache=cache, desc="embedding prompts", dtype=rows)
        p_stats, p_keys = self.stats_, self.text_keys_
        rv = self.encode(responses, show_progress=show_progress, cache=cache, desc="embedding responses", dtype=rows)
        r_stats, r_keys = self.stats_, self.text_keys_
        pooled = _pool_rows(pv, self.text_weights(prompts), rv, self.text_weights(responses))
        del pv, rv
        self.text_keys_ = np.concatenate([p_keys, r_keys])  # the keys encode() computed: no second hashing pass
        self.pooled_key_ = self._pooled_digest(p_keys, r_keys)
        counts = ("texts", "unique", "cached", "encoded", "empty")
        self.stats_ = {
            **{k: v for k, v in r_stats.items() if k not in counts and k != "seconds"},
            "pooling": POOLED_CONVERSATION,
            **{k: p_stats.get(k, 0) + r_stats.get(k, 0) for k in counts},
            "records": len(prompts),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return pooled
