"""The cached block-map: :func:`cached_map`, the loop of every embedder and model scorer.

Deduplicate the items by content key, look them up in a :class:`~kmq.cache.VectorStore`, compute the rest in
blocks sorted by length (here, or elsewhere through an engine's ``mapper``: :mod:`kmq.engine`), persist every
finished block at once, and gather one row per item.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
from tqdm.auto import tqdm

from kmq.cache._files import progress_enabled
from kmq.cache._keys import text_keys, unique_keys
from kmq.cache._vectors import COMPACT_AFTER, VectorStore


class CachedMap(NamedTuple):
    """What :func:`cached_map` returns."""

    values: np.ndarray  #: shape (n, dim): one row per item
    keys: np.ndarray  #: shape (n,), V16: the content key of every item
    stats: dict[str, Any]  #: ``items``, ``unique``, ``cached``, ``computed``, ``skipped``, ``seconds``


def cached_map(
    items: Sequence[str],
    compute_block: Callable[[list[str]], np.ndarray],
    store: VectorStore | None,
    *,
    dim: int,
    dtype: Any = np.float32,
    block_size: int,
    longest_first: bool = False,
    skip_blank: bool = False,
    show_progress: bool | None = None,
    desc: str = "computing",
    unit: str = "item",
    mapper: Callable[[Iterable[list[str]]], Iterable[Any]] | None = None,
) -> CachedMap:
    """One row per item, computing only the distinct items that ``store`` lacks, block by block.

    The loop behind :meth:`kmq.embed.base.Embedder.encode` and the model scorers: deduplicate the items
    by content key, look them up, compute the rest in blocks sorted by length, persist every finished
    block at once (an interrupted run keeps what it finished; a second run computes nothing) and show a
    progress bar on stderr.

    Parameters
    ----------
    items : sequence of str, length n
        The exact input of every item; its :func:`text_keys` digest is the cache key.
    compute_block : callable
        ``compute_block(list_of_items) -> ndarray of shape (len, dim)`` (or ``(len,)`` when ``dim == 1``)
        for one block of distinct uncached items. Rows with a NaN or inf are returned but not cached, so
        the next run tries them again.
    store : VectorStore or None
        Where rows are read and persisted; None computes every distinct item and keeps nothing.
    dim : int
        Values per item.
    dtype : numpy dtype, default float32
        Dtype of the values (the store's).
    block_size : int
        Items per ``compute_block`` call (and per persisted shard).
    longest_first : bool, default False
        Order of the blocks: by length, shortest first (the embedders) or longest first (the scorers).
    skip_blank : bool, default False
        Items that are empty or whitespace are never computed: their rows are zero.
    mapper : callable, optional
        ``mapper(blocks) -> results``: computes ``compute_block`` of every block, results in the blocks' order,
        elsewhere (Ray Data actors: :mod:`kmq.engine`); each result is persisted as it arrives. None: here, in turn.

    Returns
    -------
    CachedMap
        ``values`` of shape (n, dim), ``dtype``; ``keys`` of shape (n,), V16; ``stats``.
    """
    start = time.perf_counter()
    items = list(items)
    keys = text_keys(items)
    ukeys, first, inverse = unique_keys(keys)
    found = store.contains(ukeys) if store is not None else np.zeros(len(ukeys), dtype=bool)
    blank = np.zeros(len(ukeys), dtype=bool)
    if skip_blank:
        blank = np.fromiter((not items[i].strip() for i in first), dtype=bool, count=len(first))
    todo = np.flatnonzero(~found & ~blank)
    lengths = np.fromiter((len(items[first[i]]) for i in todo), dtype=np.int64, count=len(todo))
    todo = todo[np.argsort(-lengths if longest_first else lengths, kind="stable")]
    fresh = np.zeros((0 if store is not None else len(ukeys), dim), dtype=dtype)
    unkept: list[tuple[np.ndarray, np.ndarray]] = []  # computed rows that the store must not keep
    show = progress_enabled(show_progress) and len(todo) > 0
    blocks = [todo[lo : lo + block_size] for lo in range(0, len(todo), block_size)]
    texts = ([items[first[i]] for i in block] for block in blocks)
    with tqdm(total=len(todo), desc=desc, unit=unit, disable=not show) as bar:
        for block, raw in zip(blocks, map(compute_block, texts) if mapper is None else mapper(texts), strict=True):
            vals = _block_rows(raw, len(block), dim, dtype, compute_block)
            if store is None:
                fresh[block] = vals
            else:
                keep = np.isfinite(vals).all(axis=1)
                store.add(ukeys[block[keep]], vals[keep])  # persisted now: an interrupted run resumes after this
                if not keep.all():
                    unkept.append((block[~keep], vals[~keep]))
            bar.update(len(block))
    if store is None:
        out = fresh[inverse]
    else:  # one gather straight into the output; skipped items stay zero rows
        out = store.gather(keys)[1]
        for rows, vals in unkept:
            slot = np.full(len(ukeys), -1, dtype=np.int64)
            slot[rows] = np.arange(len(rows))
            at = slot[inverse]
            out[at >= 0] = vals[at[at >= 0]]
        store.compact(min_shards=COMPACT_AFTER)  # a run that left many small shards merges them (after the gather)
    stats = {
        "items": len(items),
        "unique": len(ukeys),
        "cached": int(found.sum()),
        "computed": len(todo),
        "skipped": int(blank.sum()),
        "seconds": round(time.perf_counter() - start, 3),
    }
    return CachedMap(out, keys, stats)


def _block_rows(raw: Any, n: int, dim: int, dtype: Any, fn: Callable) -> np.ndarray:
    vals = np.asarray(raw, dtype=dtype)
    if dim == 1 and vals.shape == (n,):
        vals = vals.reshape(n, 1)
    if vals.shape != (n, dim):
        name = getattr(fn, "__qualname__", type(fn).__name__)
        raise RuntimeError(f"{name} returned shape {vals.shape}, expected {(n, dim)}")
    return vals
