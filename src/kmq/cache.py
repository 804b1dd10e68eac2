"""Content-addressed artifact store, atomic writes, and the cached block-map of embedders and scorers.

Everything expensive is cached under one directory (``$KMQ_CACHE_DIR``, default ``~/.cache/kmq``):

``vectors/<embedder-key>/shard-*/`` (and ``scores/<scorer-key>/shard-*/``)
    Per-text rows (vectors, or per-example scores) keyed by a 128-bit BLAKE2b digest of the text. A
    shard is written atomically (a folder renamed into place) as soon as a block is computed, so an
    interrupted run keeps what it finished and the next run computes only the rest. Any pool sharing a
    text reuses its row. :func:`cached_map` is that loop, for embedders and scorers alike. A process
    keeps one sorted index per store folder and catches it up with the folder on each open (shards
    another process wrote are seen, compacted ones dropped); lookups and gathers are O(n log n). Vectors
    may be stored as float16 (``--store-dtype float16``: half the disk and page cache, returned as
    float32, in a folder of their own). Small shards are compacted into shards of about 256 MiB once a
    folder holds 64 of them (:meth:`VectorStore.compact`).
``artifacts/<kind>/<key>/``
    Whole-array results (cluster labels and centroids, quality scores) keyed by a digest of
    everything that determines them.

Nothing is pickled: arrays are ``.npy`` (loaded with ``allow_pickle=False``) and metadata is JSON.

Integrity: every entry's ``meta.json`` records an XXH3-128 digest of each array (dtype, shape and bytes;
:func:`array_digest`). Reads check it: an entry that fails (edited, truncated, random bytes) is a miss. It
is recomputed and replaced, with one warning per entry and run that names it. Entries written by kmq
versions before digests existed have none; they are treated as misses too and rewritten. A vector shard
is checked when it is first read from, at most once per process; a warm run pays one hashing pass over
the shards it uses (``BENCHMARKS.md``, "Cache integrity").

A cache folder that cannot be written (read-only, full, a path under a regular file) is not an error:
the run goes on uncached, with one warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xxhash
from tqdm.auto import tqdm

from kmq.errors import InvalidParameterError

logger = logging.getLogger(__name__)

KEY_DTYPE = np.dtype("V16")


def default_cache_dir() -> Path:
    """``$KMQ_CACHE_DIR`` if set, else ``~/.cache/kmq``."""
    env = os.environ.get("KMQ_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kmq"


def digest(*parts: Any) -> str:
    """Stable hex digest (BLAKE2b-128) of JSON-serialisable parts, for cache keys.

    A ``bytes`` part is hashed as is; an ndarray part as its C-order bytes (``arr.tobytes()``, the same digest)
    in chunks, without a copy of the array (:func:`digest_update`).
    """
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, bytes):
            h.update(part)
        elif isinstance(part, np.ndarray):
            digest_update(h, part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def digest_update(h: Any, arr: np.ndarray, *, chunk_bytes: int = 64 << 20) -> None:
    """Feed ``arr.tobytes()`` to the hash ``h`` in slices of about ``chunk_bytes``: no copy of a contiguous array."""
    if not arr.flags.c_contiguous:  # a strided view: copy one slab of rows at a time
        rows = max(1, chunk_bytes // max(1, arr[:1].nbytes)) if arr.ndim else 1
        for lo in range(0, len(arr), rows):
            digest_update(h, np.ascontiguousarray(arr[lo : lo + rows]), chunk_bytes=chunk_bytes)
        return
    flat = arr.reshape(-1).view(np.uint8) if arr.size else np.empty(0, dtype=np.uint8)
    for lo in range(0, len(flat), chunk_bytes):
        h.update(memoryview(flat[lo : lo + chunk_bytes]))


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """128-bit BLAKE2b digests of UTF-8 texts.

    Returns
    -------
    keys : ndarray of shape (n,), dtype V16
    """
    blob = b"".join(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    return np.frombuffer(blob, dtype=KEY_DTYPE).copy() if texts else np.empty(0, dtype=KEY_DTYPE)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    Works for files and folders (a folder replaces only a missing target; an existing folder is left as is).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        if tmp.is_dir():
            if path.exists():  # someone else finished the same content-addressed folder first
                shutil.rmtree(tmp)
            else:
                os.rename(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write JSON atomically, indented, UTF-8."""
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def progress_enabled(show_progress: bool | None) -> bool:
    """``None`` means: show bars when kmq logs at INFO or below (the CLI does; libraries stay quiet)."""
    if show_progress is not None:
        return show_progress
    return logging.getLogger("kmq").getEffectiveLevel() <= logging.INFO


# -- integrity ----------------------------------------------------------------------------------------------
_NO_DIGEST = "no checksum: written by an older kmq"
_WARNED: set[str] = set()  # what this process has already warned about (damaged entries, unwritable caches)
_VERIFIED: set[tuple] = set()  # file stamps of the shards that passed their check in this process


def array_digest(arr: np.ndarray) -> str:
    """``"xxh3_128:<hex>"`` of an array's dtype, shape and bytes (hashed in place, no copy of a contiguous array)."""
    arr = np.ascontiguousarray(arr)
    h = xxhash.xxh3_128(f"{arr.dtype.str}{arr.shape}".encode())
    h.update(memoryview(arr.reshape(-1).view(np.uint8)))
    return f"xxh3_128:{h.hexdigest()}"


def _check_digests(folder: Path, arrays: dict[str, np.ndarray]) -> str | None:
    """None when every array matches the digest in ``folder/meta.json``, else what is wrong."""
    try:
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"meta.json unreadable: {err}"
    digests = meta.get("digests") if isinstance(meta, dict) else None
    if not isinstance(digests, dict):
        return _NO_DIGEST
    for name, arr in arrays.items():
        if digests.get(name) != array_digest(arr):
            return f"{name}.npy does not match its checksum"
    return None


def _warn_once(key: str, msg: str, *args: Any) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(msg, *args)


def _report_bad(folder: Path, reason: str) -> None:
    if reason == _NO_DIGEST:  # one line per store after an upgrade, not one per shard
        _warn_once(f"old:{folder.parent}", "cache entries under %s carry no checksum (written by an older kmq): "
                   "they are recomputed and rewritten", folder.parent)  # fmt: skip
    else:
        _warn_once(f"bad:{folder}", "cache entry %s is damaged (%s): treated as a miss, recomputed and replaced",
                   folder, reason)  # fmt: skip


def _warn_unwritable(err: OSError, folder: Path) -> None:
    where = err.filename or folder
    _warn_once(f"unwritable:{default_cache_dir()}", "cannot write the cache at %s (%s): running uncached; set "
               "KMQ_CACHE_DIR to a writable folder to keep results", where, err.strerror or err)  # fmt: skip


def _stamp(folder: Path, names: Sequence[str]) -> tuple | None:
    """What identifies the files of a shard as this process last saw them (None when one is missing)."""
    try:
        stats = [os.stat(folder / f"{name}.npy") for name in names]
    except OSError:
        return None
    return (str(folder), *((st.st_ino, st.st_size, st.st_mtime_ns) for st in stats))


# -- whole-array entries ----------------------------------------------------------------------------------
def save_arrays(folder: str | os.PathLike, meta: dict[str, Any] | None = None, **arrays: np.ndarray) -> Path:
    """Write named arrays (``name.npy``) and ``meta.json`` into ``folder``, atomically as a whole.

    ``meta.json`` holds ``meta`` plus ``"digests"``: :func:`array_digest` of every array, checked on read.
    """
    arrays = {name: np.ascontiguousarray(arr) for name, arr in arrays.items()}
    meta = {**(meta or {}), "digests": {name: array_digest(arr) for name, arr in arrays.items()}}
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", arr, allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, default=_json_default), encoding="utf-8")
    return Path(folder)


def load_arrays(folder: str | os.PathLike, *names: str, mmap: bool = False) -> list[np.ndarray]:
    """Load named arrays written by :func:`save_arrays` (unchecked; :class:`ArtifactStore` checks digests)."""
    mode = "r" if mmap else None
    return [np.load(Path(folder) / f"{name}.npy", allow_pickle=False, mmap_mode=mode) for name in names]


class ArtifactStore:
    """Whole-array artifacts addressed by ``(kind, key)``: ``get`` returns None on a miss.

    An entry whose arrays do not match the digests in its ``meta.json`` (damaged, or written by a kmq
    without digests) is a miss, with one warning; the caller's :meth:`put` replaces it. A :meth:`put`
    that cannot write (read-only or full disk) warns once and returns None: the run goes on uncached.
    """

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        return self.root / "artifacts" / kind / key

    def get(self, kind: str, key: str, *names: str) -> list[np.ndarray] | None:
        folder = self.path(kind, key)
        if not (folder / "meta.json").is_file():
            return None
        try:
            arrays = load_arrays(folder, *names)
        except (OSError, ValueError, EOFError) as err:
            reason = f"unreadable: {err}"
        else:
            reason = _check_digests(folder, dict(zip(names, arrays, strict=True)))
        if reason is None:
            return arrays
        _report_bad(folder, reason)
        return None

    def put(self, kind: str, key: str, meta: dict[str, Any] | None = None, **arrays: np.ndarray) -> Path | None:
        folder = self.path(kind, key)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            return save_arrays(folder, meta, **arrays)
        except OSError as err:
            _warn_unwritable(err, folder)
            return None


# -- per-text rows ------------------------------------------------------------------------------------------
#: compaction merges small shards into shards of about this many bytes of vectors (256 MiB: 175k rows of 384
#: float32, 350k of float16); a shard under half of it is "small"
COMPACT_BYTES = 256 << 20
#: :func:`cached_map` compacts a store once its folder holds at least this many small shards
COMPACT_AFTER = 64
#: rows per fancy-indexed read while gathering: bounds the temporary copy of a float16 store's rows
GATHER_ROWS = 65536
_LOCK_STALE_S = 3600  # a compaction lock older than this was left by a crashed process
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


def _words(keys: np.ndarray) -> np.ndarray:
    """V16 keys as (n, 2) uint64 words read big-endian, so that word order is the keys' byte order."""
    return np.ascontiguousarray(keys, dtype=KEY_DTYPE).view(">u8").reshape(-1, 2).astype(np.uint64)


def _key_order(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of V16 keys (byte order, as NumPy sorts them) by an integer sort: NumPy sorts void slowly."""
    w = _words(keys)
    order = np.argsort(w[:, 0], kind="stable")
    hi, lo = w[order, 0], w[order, 1]
    if ((hi[1:] == hi[:-1]) & (lo[1:] != lo[:-1])).any():  # distinct keys sharing a first word (rare)
        order = np.lexsort((w[:, 1], w[:, 0]))
    return order


def unique_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``np.unique(keys, return_index=True, return_inverse=True)`` for V16 keys, the same arrays, faster.

    Returns
    -------
    ukeys : ndarray of shape (u,), V16, sorted
    first : ndarray of shape (u,), int64: where each unique key first occurs
    inverse : ndarray of shape (n,), int64: ``ukeys[inverse] == keys``
    """
    order = _key_order(keys)
    ordered = np.asarray(keys)[order]
    new = np.ones(len(ordered), dtype=bool)
    new[1:] = ordered[1:] != ordered[:-1]
    inverse = np.empty(len(ordered), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ordered[new], order[new].astype(np.int64), inverse


# -- the cached block-map ---------------------------------------------------------------------------------
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
