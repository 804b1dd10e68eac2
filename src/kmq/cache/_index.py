"""The per-process index of a vector-store folder: its shards, memory-mapped, and one sorted index of their keys.

A process keeps one :class:`_Index` per (folder, dim, stored dtype), the ``_MAX_OPEN`` most recently used
ones, and catches it up with the folder on each open (:func:`_open_index`): shards another process wrote
are opened, compacted or changed ones dropped. Lookups are a binary search over the keys' words: O(n log n).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kmq.cache._arrays import _NO_DIGEST, _VERIFIED, _report_bad, _stamp, array_digest, load_arrays
from kmq.cache._keys import KEY_DTYPE, _words

_MAX_OPEN = 64  # per-process indexes kept open (least recently used ones are closed)


class _Shard:
    """One shard as this process opened it: memory-mapped arrays, the digests its meta.json records."""

    __slots__ = ("name", "path", "keys", "vectors", "digests", "stamp")

    def __init__(self, name: str, path: Path | None, keys: np.ndarray, vectors: np.ndarray,
                 digests: dict | None, stamp: tuple | None) -> None:  # fmt: skip
        self.name, self.path, self.keys, self.vectors = name, path, keys, vectors
        self.digests, self.stamp = digests, stamp


class _Index:
    """The shards of one (folder, dim, stored dtype) in this process, and one sorted index over all their keys.

    The index holds each key's two 64-bit words (``hi``, ``lo``; sorted by ``hi``) and where its row is
    (``sid``: shard, ``row``: row in it). New shards are merged in (O(n + m log m)), vanished ones masked out
    (O(n)); nothing is re-sorted on a reopen.
    """

    def __init__(self, folder: Path, dim: int, sdtype: np.dtype) -> None:
        self.folder, self.dim, self.sdtype = folder, dim, sdtype
        self.lock = threading.RLock()
        self.shards: list[_Shard | None] = []
        self.by_name: dict[str, int] = {}  # on-disk shards in the index (or pending)
        self.foreign: set[str] = set()  # shards of another dim or dtype: never read
        self.pending: list[int] = []  # shards not yet merged into the index
        self.hi = np.empty(0, dtype=np.uint64)
        self.lo = np.empty(0, dtype=np.uint64)
        self.sid = np.empty(0, dtype=np.int32)
        self.row = np.empty(0, dtype=np.int32)
        self.writable = True

    # -- the folder
    def refresh(self) -> None:
        """Catch up with the folder: open shards that appeared, drop shards that vanished or changed."""
        for _ in range(8):  # a shard that vanishes while we open it was compacted: its rows are in a newer one
            if not self.folder.is_dir():
                self._drop(list(self.by_name.values()))
                return
            names = sorted(e.name for e in os.scandir(self.folder) if e.name.startswith("shard-") and e.is_dir())
            listed = set(names)
            gone = [i for name, i in self.by_name.items() if name not in listed]
            raced = False
            for name in names:
                if name in self.foreign:
                    continue
                i = self.by_name.get(name)
                if i is not None:
                    if _stamp(self.folder / name, ("keys", "vectors")) == self.shards[i].stamp:
                        continue
                    gone.append(i)  # rewritten or edited since we opened it: open it again
                    del self.by_name[name]
                raced |= self._open(name) == "vanished"
            self._drop(gone)
            if not raced:
                return

    def _open(self, name: str) -> str:
        path = self.folder / name
        stamp = _stamp(path, ("keys", "vectors"))
        try:
            k, v = load_arrays(path, "keys", "vectors", mmap=True)
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        except (FileNotFoundError, ValueError, EOFError) as err:  # an incomplete or damaged shard
            if not path.is_dir():
                return "vanished"
            self._discard(path, f"unreadable: {err}")
            return "bad"
        except OSError:  # not readable by us (permissions): leave it alone
            self.foreign.add(name)
            return "foreign"
        if v.ndim != 2 or v.shape[1] != self.dim or v.dtype != self.sdtype:
            self.foreign.add(name)
            return "foreign"
        if k.ndim != 1 or k.dtype != KEY_DTYPE or len(k) != len(v):
            self._discard(path, f"{len(k)} keys for {len(v)} vectors")
            return "bad"
        digests = meta.get("digests") if isinstance(meta, dict) else None
        self.by_name[name] = self._append(_Shard(name, path, k, v, digests if isinstance(digests, dict) else None,
                                                 stamp))  # fmt: skip
        return "ok"

    def _append(self, shard: _Shard) -> int:
        self.shards.append(shard)
        self.pending.append(len(self.shards) - 1)
        return len(self.shards) - 1

    def _discard(self, path: Path, reason: str) -> None:
        _report_bad(path, reason)
        shutil.rmtree(path, ignore_errors=True)

    def _drop(self, ids: Sequence[int]) -> None:
        """Forget shards (vanished, damaged or merged away): mask their keys out of the index."""
        if not ids:
            return
        dead = np.zeros(len(self.shards), dtype=bool)
        dead[list(ids)] = True
        for i in ids:
            shard = self.shards[i]
            if shard is not None and self.by_name.get(shard.name) == i:
                del self.by_name[shard.name]
            self.shards[i] = None
        self.pending = [i for i in self.pending if not dead[i]]
        keep = ~dead[self.sid]
        if not keep.all():
            self.hi, self.lo, self.sid, self.row = self.hi[keep], self.lo[keep], self.sid[keep], self.row[keep]

    # -- the index
    def merge_pending(self) -> None:
        """Merge the keys of the shards opened or added since the last query into the sorted index."""
        if not self.pending:
            return
        ids = [i for i in self.pending if self.shards[i] is not None]
        self.pending = []
        if not ids:
            return
        keys = np.concatenate([np.asarray(self.shards[i].keys) for i in ids])
        sizes = [len(self.shards[i].keys) for i in ids]
        w = _words(keys)
        order = np.argsort(w[:, 0], kind="stable")
        hi, lo = w[order, 0], w[order, 1]
        sid = np.repeat(np.asarray(ids, dtype=np.int32), sizes)[order]
        row = np.concatenate([np.arange(s, dtype=np.int32) for s in sizes])[order]
        if len(self.hi) == 0:
            self.hi, self.lo, self.sid, self.row = hi, lo, sid, row
            return
        at = np.searchsorted(self.hi, hi, side="right")  # a linear merge of two sorted runs
        self.hi, self.lo = np.insert(self.hi, at, hi), np.insert(self.lo, at, lo)
        self.sid, self.row = np.insert(self.sid, at, sid), np.insert(self.row, at, row)

    def search(self, keys: np.ndarray) -> np.ndarray:
        """Index position of each key (one of its copies), -1 when absent."""
        if len(self.hi) == 0 or len(keys) == 0:
            return np.full(len(keys), -1, dtype=np.int64)
        q = _words(keys)
        order = np.argsort(q[:, 0])  # searching in key order walks the index forwards: far fewer cache misses
        pos = np.empty(len(q), dtype=np.int64)
        pos[order] = np.minimum(np.searchsorted(self.hi, q[order, 0]), len(self.hi) - 1)
        same = self.hi[pos] == q[:, 0]
        found = same & (self.lo[pos] == q[:, 1])
        for i in np.flatnonzero(same & ~found):  # distinct keys sharing a first word (rare): scan that run
            j = pos[i] + 1
            while j < len(self.hi) and self.hi[j] == q[i, 0] and self.lo[j] != q[i, 1]:
                j += 1
            found[i] = j < len(self.hi) and self.hi[j] == q[i, 0]
            pos[i] = j
        return np.where(found, pos, -1)

    def verified(self, s: int) -> bool:
        """Whether shard ``s`` may be read: its digests checked once per process; a failing shard is deleted."""
        shard = self.shards[s]
        if shard.path is None or (shard.stamp is not None and shard.stamp in _VERIFIED):
            return True
        if shard.digests is None:
            reason = _NO_DIGEST
        elif shard.digests.get("keys") != array_digest(shard.keys):
            reason = "keys.npy does not match its checksum"
        elif shard.digests.get("vectors") != array_digest(shard.vectors):
            reason = "vectors.npy does not match its checksum"
        else:
            if shard.stamp is not None:
                _VERIFIED.add(shard.stamp)
            return True
        self._discard(shard.path, reason)
        self._drop([s])
        return False


def _open_index(folder: Path, dim: int, sdtype: np.dtype) -> _Index:
    """This process's index of ``folder`` (one per folder, dim and stored dtype), caught up with the folder."""
    key = (str(folder.absolute()), dim, sdtype.str)
    with _OPEN_LOCK:
        ix = _OPEN.pop(key, None) or _Index(folder, dim, sdtype)
        _OPEN[key] = ix  # most recently used last
        while len(_OPEN) > _MAX_OPEN:
            _OPEN.pop(next(iter(_OPEN)))
    with ix.lock:
        ix.refresh()
    return ix


_OPEN: dict[tuple, _Index] = {}
_OPEN_LOCK = threading.Lock()
