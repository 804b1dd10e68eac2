"""Per-example score caching and length bucketing shared by the model-based scorers.

:func:`cached_rows` is the scorers' counterpart of :meth:`kmq.embed.base.Embedder.encode`: it deduplicates
the inputs, looks each one up in a content-addressed :class:`~kmq.cache.VectorStore` (float64 rows under
``$KMQ_CACHE_DIR/scores/<key>``), computes only the missing ones in blocks sorted by length, persists
every finished block at once (an interrupted run keeps what it finished; a second run computes nothing)
and shows a progress bar on stderr.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kmq.cache import VectorStore, default_cache_dir, text_keys
from kmq.embed.base import progress_enabled

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

    Returns
    -------
    values : ndarray of shape (n, dim), float64
    stats : dict
        ``inputs``, ``unique``, ``cached``, ``computed``, ``seconds``.
    """
    start = time.perf_counter()
    inputs = list(inputs)
    keys = text_keys(inputs)
    ukeys, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    uinputs = [inputs[i] for i in first]
    out = np.zeros((len(ukeys), dim), dtype=np.float64)
    store = VectorStore(default_cache_dir() / "scores" / store_key, dim, dtype=np.float64) if store_key else None
    found = np.zeros(len(ukeys), dtype=bool)
    if store is not None:
        found, vals = store.lookup(ukeys)
        out[found] = vals
    todo = np.flatnonzero(~found)
    todo = todo[np.argsort([-len(uinputs[i]) for i in todo], kind="stable")]
    bar = tqdm(total=len(todo), desc=desc, unit="ex", disable=not progress_enabled(show_progress) or not len(todo))
    try:
        for lo in range(0, len(todo), block_size):
            block = todo[lo : lo + block_size]
            vals = np.asarray(compute([uinputs[i] for i in block]), dtype=np.float64).reshape(len(block), dim)
            out[block] = vals
            keep = np.isfinite(vals).all(axis=1)  # failures (NaN rows) are returned, never cached
            if store is not None:
                store.add(ukeys[block][keep], vals[keep])
            bar.update(len(block))
    finally:
        bar.close()
    stats = {
        "inputs": len(inputs),
        "unique": len(ukeys),
        "cached": int(found.sum()),
        "computed": len(todo),
        "seconds": round(time.perf_counter() - start, 3),
    }
    logger.debug("%s: %s", desc, stats)
    return (out[inverse.reshape(-1)] if inputs else out), stats
