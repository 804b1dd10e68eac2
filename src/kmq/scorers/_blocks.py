"""Per-example score caching and length bucketing shared by the model-based scorers.

:func:`cached_rows` runs the scorers on :func:`kmq.cache.cached_map`, the same cached block-map that
:meth:`kmq.embed.base.Embedder.encode` uses: it deduplicates the inputs, looks each one up in a
content-addressed :class:`~kmq.cache.VectorStore` (float64 rows under ``$KMQ_CACHE_DIR/scores/<key>``),
computes only the missing ones in blocks sorted by length (longest first), persists every finished
block at once (an interrupted run keeps what it finished; a second run computes nothing) and shows a
progress bar on stderr.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from kmq.cache import VectorStore, cached_map, default_cache_dir

logger = logging.getLogger(__name__)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Indices grouped into batches of similar length (longest first), so little padding is computed.

    Parameters
    ----------
    lengths : sequence of int, length n
        Token (or character) count of every item.
    batch_size : int
        Items per batch.

    Returns
    -------
    batches : list of ndarray of int64
        A partition of ``range(n)``; scatter each batch's results back with these indices.

    Examples
    --------
    >>> [b.tolist() for b in length_batches([3, 10, 1, 7], 2)]
    [[1, 3], [0, 2]]
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    return [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]


def cached_rows(
    inputs: Sequence[str],
    compute: Callable[[list[str]], np.ndarray],
    *,
    store_key: str | None,
    dim: int,
    block_size: int,
    show_progress: bool | None = None,
    desc: str = "scoring",
    mapper: Callable[[Iterable[list[str]]], Iterable[Any]] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Values for every input, reading and extending a per-input cache block by block.

    Parameters
    ----------
    inputs : sequence of str, length n
        The exact model input of every item (rendered text, or a JSON request); the cache key is its digest.
    compute : callable
        ``compute(list_of_inputs) -> ndarray of shape (len, dim)`` for one block of distinct uncached inputs.
        Rows with a NaN are returned but not cached, so the next run tries them again.
    store_key : str or None
        Folder name under ``$KMQ_CACHE_DIR/scores`` (a digest of the scorer kind, model identity and every
        setting that changes the values); None disables the cache.
    dim : int
        Values per input.
    block_size : int
        Inputs per persisted block.
    mapper : callable, optional
        Computes ``compute`` of every block elsewhere (an engine's actors: :func:`kmq.engine.attach_scorer`),
        results in the blocks' order; None: here, block after block (:func:`kmq.cache.cached_map`).

    Returns
    -------
    values : ndarray of shape (n, dim), float64
    stats : dict
        ``inputs``, ``unique``, ``cached``, ``computed``, ``seconds``.
    """
    store = VectorStore(default_cache_dir() / "scores" / store_key, dim, dtype=np.float64) if store_key else None
    res = cached_map(
        inputs,
        compute,
        store,
        dim=dim,
        dtype=np.float64,
        block_size=block_size,
        longest_first=True,
        show_progress=show_progress,
        desc=desc,
        unit="ex",
        mapper=mapper,
    )
    stats = {"inputs": res.stats["items"], **{k: res.stats[k] for k in ("unique", "cached", "computed", "seconds")}}
    logger.debug("%s: %s", desc, stats)
    return res.values, stats
