"""Per-text rows: the :class:`VectorStore` of an embedder's vectors (or a scorer's scores), and its compaction.

``vectors/<embedder-key>/shard-*/`` (and ``scores/<scorer-key>/shard-*/``) under the cache folder hold
per-text rows (vectors, or per-example scores) keyed by a 128-bit BLAKE2b digest of the text. A shard is
written atomically (a folder renamed into place) as soon as a block is computed, so an interrupted run keeps
what it finished and the next run computes only the rest. Any pool sharing a text reuses its row. A process
keeps one sorted index per store folder (:mod:`kmq.cache._index`); lookups and gathers are O(n log n).
Vectors may be stored as float16 (``--store-dtype float16``: half the disk and page cache, returned as
float32, in a folder of their own). Small shards are compacted into shards of about 256 MiB once a folder
holds 64 of them (:meth:`VectorStore.compact`).

A vector shard's digests are checked when it is first read from, at most once per process; a warm run
pays one hashing pass over the shards it uses (``BENCHMARKS.md``, "Cache integrity").
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache._arrays import _VERIFIED, _stamp, _warn_unwritable, load_arrays, save_arrays
from kmq.cache._index import _open_index, _Shard
from kmq.cache._keys import KEY_DTYPE, unique_keys
from kmq.errors import InvalidParameterError

logger = logging.getLogger("kmq.cache")  # the cache's one logger, whichever of its modules logs

#: compaction merges small shards into shards of about this many bytes of vectors (256 MiB: 175k rows of 384
#: float32, 350k of float16); a shard under half of it is "small"
COMPACT_BYTES = 256 << 20
#: :func:`cached_map` compacts a store once its folder holds at least this many small shards
COMPACT_AFTER = 64
#: rows per fancy-indexed read while gathering: bounds the temporary copy of a float16 store's rows
GATHER_ROWS = 65536
_LOCK_STALE_S = 3600  # a compaction lock older than this was left by a crashed process


class VectorStore:
    """Per-text vectors of one embedder, in shards that are each written atomically.

    A process keeps one index per (folder, dim, stored dtype): constructing a store again (each
    :meth:`kmq.embed.base.Embedder.encode` does) costs one listing of the folder, plus opening the shards
    that appeared since (another process's, or this one's); shards that vanished (compacted by another
    process) or changed are dropped. Queries are a binary search over the sorted keys and one read per
    shard in row order: O(n log n) for n keys.

    Parameters
    ----------
    folder : path
        ``<cache>/vectors/<embedder-key>``.
    dim : int
        Vector size; shards of another size are ignored.
    dtype : numpy dtype, default float32
        Returned dtype (float64 for quality scores).
    store_dtype : numpy dtype or None, default None (``dtype``)
        Dtype of the shards written and read; shards of another dtype are ignored (the dtype is in each
        shard's ``vectors.npy`` header), so a float32 request never gets float16 rows. float16 halves the
        disk and page cache; its rounding is at most 2**-11 (4.9e-4) of each coordinate's magnitude, so a
        unit vector keeps a cosine >= 0.9999 with its float32 original (``tests/test_cache.py``).
    verify : bool, default True
        Check a shard's digests before its first read in this process (each shard at most once per
        process). A shard that fails, or has no digests (an older kmq wrote it), is deleted with one
        warning; its keys become misses, so the caller recomputes and re-adds them.

    When the folder cannot be written, :meth:`add` warns once and keeps the rows in memory only.

    Compaction (:meth:`compact`; :func:`cached_map` runs it once a folder holds ``COMPACT_AFTER`` small
    shards) merges small shards into shards of about ``COMPACT_BYTES``: it writes the merged shard
    atomically, then deletes the small ones. A crash in between leaves duplicate rows, which lookups
    tolerate (either copy is the same vector); a reader never misses a key (it keeps the old shards
    mapped, or sees the merged one).
    """

    def __init__(self, folder: str | os.PathLike, dim: int, *, dtype: Any = np.float32, store_dtype: Any = None,
                 verify: bool = True) -> None:  # fmt: skip
        self.folder = Path(folder)
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.store_dtype = np.dtype(store_dtype if store_dtype is not None else dtype)
        self.verify = verify
        self._ix = _open_index(self.folder, dim, self.store_dtype)

    def _locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``found`` (n,) bool and, for the found keys in order, ``sid`` and ``row`` of a verified copy."""
        keys = np.ascontiguousarray(keys, dtype=KEY_DTYPE)
        ix = self._ix
        with ix.lock:
            ix.merge_pending()
            while True:
                pos = ix.search(keys)
                found = pos >= 0
                sid, row = ix.sid[pos[found]], ix.row[pos[found]]
                used = np.flatnonzero(np.bincount(sid, minlength=len(ix.shards))).tolist()
                if not self.verify or all([ix.verified(s) for s in used]):
                    return found, sid, row
                # a damaged shard was dropped: its keys may sit in another shard, look again

    def _copy_rows(self, out: np.ndarray, rows: np.ndarray, sid: np.ndarray, row: np.ndarray) -> None:
        """``out[rows[i]] = shard sid[i], row row[i]``: shard by shard, rows in file order, in bounded reads."""
        if len(sid) == 0:
            return
        order = np.argsort((sid.astype(np.int64) << 32) | row, kind="stable")
        rows, sid, row = rows[order], sid[order], row[order]
        cuts = np.flatnonzero(np.diff(sid)) + 1
        shards = self._ix.shards
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(sid)], strict=True):
            vectors = shards[sid[lo]].vectors
            for a in range(lo, hi, GATHER_ROWS):
                b = min(a + GATHER_ROWS, hi)
                r = row[a:b]
                run = r[-1] - r[0] == b - a - 1 and bool((np.diff(r) == 1).all())
                block = vectors[r[0] : r[-1] + 1] if run else vectors[r]  # a run of consecutive rows: a slice
                out[rows[a:b]] = block

    def __len__(self) -> int:
        """Rows in the index (a key held by two shards counts twice)."""
        with self._ix.lock:
            self._ix.merge_pending()
            return len(self._ix.hi)

    def contains(self, keys: np.ndarray) -> np.ndarray:
        """Which keys have a (verified) cached row: ndarray of shape (n,), bool."""
        return self._locate(keys)[0]

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Find cached vectors.

        Returns
        -------
        found : ndarray of shape (n,), bool
        vectors : ndarray of shape (found.sum(), d), ``dtype`` (float32 by default), in the order of ``keys[found]``
        """
        found, sid, row = self._locate(keys)
        out = np.empty((len(sid), self.dim), dtype=self.dtype)
        self._copy_rows(out, np.arange(len(sid)), sid, row)
        return found, out

    def gather(self, keys: np.ndarray, *, out: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`lookup`, but one row per key: zero rows for misses.

        Parameters
        ----------
        keys : ndarray of shape (n,), V16
        out : ndarray of shape (n, d) or None
            Where to write the rows (for instance an ``np.memmap`` of float32, so that the (n, d) matrix is
            never a second copy in memory); None allocates one of ``dtype``.

        Returns
        -------
        found : ndarray of shape (n,), bool
        vectors : ``out``, or a new ndarray of shape (n, d), ``dtype``
        """
        found, sid, row = self._locate(keys)
        if out is None:
            out = np.zeros((len(keys), self.dim), dtype=self.dtype)
        elif out.shape != (len(keys), self.dim):
            raise ValueError(f"out has shape {out.shape}; expected {(len(keys), self.dim)}")
        else:
            out[~found] = 0
        self._copy_rows(out, np.flatnonzero(found), sid, row)
        return found, out

    def iter_gather(
        self, keys: np.ndarray, *, chunk_rows: int = GATHER_ROWS
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """:meth:`gather` in blocks of ``chunk_rows`` keys: yields ``(start, found, vectors)`` per block.

        ``vectors`` has shape (len(block), d), ``dtype`` (float32 rows of a float16 store): a consumer that
        takes batches (a faiss assignment) never holds the whole matrix. Each block reads every shard it
        touches once, so a compacted store (few shards) serves it fastest.
        """
        for lo in range(0, len(keys), chunk_rows):
            found, vectors = self.gather(keys[lo : lo + chunk_rows])
            yield lo, found, vectors

    def iter_found(
        self, keys: np.ndarray, *, chunk_rows: int = GATHER_ROWS
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The cached rows of ``keys`` in blocks in storage order: yields ``(positions, vectors)`` per block.

        ``positions`` (m,) int64 indexes ``keys``; ``vectors`` has shape (m, d), ``dtype``. Every found key
        comes once; misses never. One sequential pass over the shards however many there are: the cheapest
        way to stream a store to a consumer that does not need pool order (assigning rows to centroids).
        """
        found, sid, row = self._locate(keys)
        positions = np.flatnonzero(found)
        order = np.argsort((sid.astype(np.int64) << 32) | row, kind="stable")
        for lo in range(0, len(order), chunk_rows):
            take = order[lo : lo + chunk_rows]
            out = np.empty((len(take), self.dim), dtype=self.dtype)
            self._copy_rows(out, np.arange(len(take)), sid[take], row[take])
            yield positions[take], out

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Persist one block of vectors as a new shard (atomically); the in-memory index is updated lazily."""
        if len(keys) == 0:
            return
        stored = np.asarray(vectors, dtype=self.store_dtype)
        if stored.dtype.itemsize < np.asarray(vectors).dtype.itemsize and not np.isfinite(stored).all():
            raise InvalidParameterError(
                f"vectors for the {self.store_dtype} store {self.folder} overflow {self.store_dtype} "
                f"(|x| <= {float(np.finfo(self.store_dtype).max):g}); store them as float32 (--store-dtype float32)."
            )
        ix = self._ix
        with ix.lock:
            path = None
            if ix.writable:
                name = f"shard-{uuid.uuid4().hex}"
                path = self.folder / name
                try:
                    save_arrays(path, {"n": len(keys)}, keys=keys, vectors=stored)
                    k, v = load_arrays(path, "keys", "vectors", mmap=True)
                except OSError as err:  # read-only, full, or not a folder: keep the rows in memory from here on
                    ix.writable, path = False, None
                    _warn_unwritable(err, self.folder)
                else:
                    stamp = _stamp(path, ("keys", "vectors"))
                    if stamp is not None:
                        _VERIFIED.add(stamp)
                    ix.by_name[name] = ix._append(_Shard(name, path, k, v, None, stamp))
            if path is None:
                ix._append(_Shard("", None, np.array(keys, dtype=KEY_DTYPE), stored.copy(), None, None))

    def compact(self, *, target_bytes: int = COMPACT_BYTES, min_shards: int = 2) -> dict[str, int]:
        """Merge the folder's small shards (under half of ``target_bytes``) into shards of about ``target_bytes``.

        Each input shard's digests are checked first (a damaged one is deleted, as on a read, and not merged);
        keys held twice are merged once. The merged shard is written atomically, then the small ones are
        deleted. One process compacts a folder at a time (a ``.compact.lock`` file; one older than an hour is
        taken over); the others skip. Nothing happens with fewer than ``min_shards`` small shards.

        Returns
        -------
        stats : dict
            ``merged`` (small shards merged and deleted), ``written`` (new shards), ``rows`` (rows written).
        """
        stats = {"merged": 0, "written": 0, "rows": 0}
        ix = self._ix
        target = max(1, target_bytes // (self.dim * self.store_dtype.itemsize))
        with ix.lock:
            ix.refresh()
            small = [i for i, s in enumerate(ix.shards) if s is not None and s.path is not None
                     and len(s.keys) < target // 2]  # fmt: skip
            if len(small) < max(2, min_shards) or not ix.writable:
                return stats
            lock = self.folder / ".compact.lock"
            if not _take_lock(lock):
                return stats
            try:
                for group in _groups(small, [len(ix.shards[i].keys) for i in small], target):
                    self._merge(group, stats)
            finally:
                with contextlib.suppress(OSError):
                    lock.unlink()
            ix.refresh()
        logger.info("compacted %s: %d shards merged into %d", self.folder, stats["merged"], stats["written"])
        return stats

    def _merge(self, group: list[int], stats: dict[str, int]) -> None:
        ix = self._ix
        ok = [i for i in group if ix.verified(i)]
        if len(ok) < 2:
            return
        keys = np.concatenate([np.asarray(ix.shards[i].keys) for i in ok])
        _, first, _ = unique_keys(keys)
        first.sort()
        vectors = np.concatenate([np.asarray(ix.shards[i].vectors) for i in ok])[first]
        path = self.folder / f"shard-{uuid.uuid4().hex}"
        try:
            save_arrays(path, {"n": len(first), "merged": len(ok)}, keys=keys[first], vectors=vectors)
        except OSError as err:
            _warn_unwritable(err, self.folder)
            return
        stamp = _stamp(path, ("keys", "vectors"))
        if stamp is not None:
            _VERIFIED.add(stamp)
        for i in ok:  # a crash before this leaves duplicates, which lookups tolerate
            shutil.rmtree(ix.shards[i].path, ignore_errors=True)
        stats["merged"] += len(ok)
        stats["written"] += 1
        stats["rows"] += len(first)


def _groups(ids: list[int], sizes: list[int], target: int) -> list[list[int]]:
    """Consecutive runs of ``ids`` of about ``target`` rows each (a last run of one shard is left alone)."""
    groups, cur, rows = [], [], 0
    for i, n in zip(ids, sizes, strict=True):
        if cur and rows + n > target:
            groups.append(cur)
            cur, rows = [], 0
        cur.append(i)
        rows += n
    groups.append(cur)
    return [g for g in groups if len(g) > 1]


def _take_lock(lock: Path) -> bool:
    """Create ``lock`` exclusively (taking over one left by a crash an hour ago); False when another holds it."""
    for _ in range(2):
        try:
            os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            try:
                if time.time() - lock.stat().st_mtime < _LOCK_STALE_S:
                    return False
                lock.unlink()
            except FileNotFoundError:
                continue
        except OSError:
            return False
    return False
