"""Content-addressed artifact store, atomic writes, and the cached block-map of embedders and scorers.

Everything expensive is cached under one directory (``$KMQ_CACHE_DIR``, default ``~/.cache/kmq``):

``vectors/<embedder-key>/shard-*/`` (and ``scores/<scorer-key>/shard-*/``)
    Per-text rows (vectors, or per-example scores) keyed by a 128-bit BLAKE2b digest of the text. A
    shard is written atomically (a folder renamed into place) as soon as a block is computed, so an
    interrupted run keeps what it finished and the next run computes only the rest. Any pool sharing a
    text reuses its row. :func:`cached_map` is that loop, for embedders and scorers alike.
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
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import xxhash
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

KEY_DTYPE = np.dtype("V16")


def default_cache_dir() -> Path:
    """``$KMQ_CACHE_DIR`` if set, else ``~/.cache/kmq``."""
    env = os.environ.get("KMQ_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "kmq"


def digest(*parts: Any) -> str:
    """Stable hex digest (BLAKE2b-128) of JSON-serialisable parts, for cache keys."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, bytes):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


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
class VectorStore:
    """Per-text vectors of one embedder, in shards that are each written atomically.

    Parameters
    ----------
    folder : path
        ``<cache>/vectors/<embedder-key>``.
    dim : int
        Vector size; shards of another size are ignored.
    dtype : numpy dtype, default float32
        Stored and returned dtype (float64 for quality scores); shards of another dtype are ignored.
    verify : bool, default True
        Check a shard's digests before its first read in this process (each shard at most once per
        process). A shard that fails, or has no digests (an older kmq wrote it), is deleted with one
        warning; its keys become misses, so the caller recomputes and re-adds them.

    When the folder cannot be written, :meth:`add` warns once and keeps the rows in memory only.
    """

    def __init__(self, folder: str | os.PathLike, dim: int, *, dtype: Any = np.float32, verify: bool = True) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.verify = verify
        self._keys = np.empty(0, dtype=KEY_DTYPE)  # sorted by (first half, second half) as uint64 words
        self._hi = np.empty(0, dtype=np.uint64)  # the first half of each sorted key, for a fast binary search
        self._shards: list[tuple[np.ndarray, np.ndarray]] = []  # (keys, vectors) per shard
        self._paths: list[Path | None] = []  # None: held in memory only
        self._checked: list[bool] = []
        self._where = np.empty((0, 2), dtype=np.int64)  # (shard, row) per sorted key
        self._pending: list[tuple[np.ndarray, int]] = []  # blocks added since the index was last sorted
        self._writable = True
        self._load()

    def _load(self) -> None:
        if not self.folder.is_dir():
            return
        for shard in sorted(p for p in self.folder.glob("shard-*") if p.is_dir()):
            try:
                k, v = load_arrays(shard, "keys", "vectors", mmap=True)
            except (FileNotFoundError, ValueError, EOFError) as err:  # an incomplete or damaged shard
                self._discard(shard, f"unreadable: {err}")
                continue
            except OSError:  # not readable by us (permissions): leave it alone
                continue
            if v.ndim != 2 or v.shape[1] != self.dim or v.dtype != self.dtype:
                continue
            if k.ndim != 1 or k.dtype != KEY_DTYPE or len(k) != len(v):
                self._discard(shard, f"{len(k)} keys for {len(v)} vectors")
                continue
            self._append(k, v, shard, checked=not self.verify)

    def _append(self, keys: np.ndarray, vectors: np.ndarray, path: Path | None, *, checked: bool) -> None:
        self._shards.append((keys, vectors))
        self._paths.append(path)
        self._checked.append(checked)
        self._pending.append((keys, len(self._shards) - 1))

    def _discard(self, shard: Path, reason: str) -> None:
        _report_bad(shard, reason)
        shutil.rmtree(shard, ignore_errors=True)

    def _verified(self, s: int) -> bool:
        """Whether shard ``s`` may be read: checked once; a failing shard is deleted and dropped."""
        if self._checked[s]:
            return True
        path, (keys, vectors) = self._paths[s], self._shards[s]
        stamp = _stamp(path, ("keys", "vectors"))
        if stamp is not None and stamp in _VERIFIED:
            reason = None
        else:
            reason = _check_digests(path, {"keys": keys, "vectors": vectors})
        if reason is None:
            self._checked[s] = True
            if stamp is not None:
                _VERIFIED.add(stamp)
            return True
        self._discard(path, reason)
        self._shards[s] = (keys[:0], vectors[:0])  # drop the mapping of the deleted files
        return False

    def _locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``found`` (n,) bool and ``loc`` (n, 2) (shard, row) of each key; only verified shards are used."""
        self._index()
        keys = np.ascontiguousarray(keys, dtype=KEY_DTYPE)
        while True:
            if len(self._keys) == 0 or len(keys) == 0:
                return np.zeros(len(keys), dtype=bool), np.zeros((len(keys), 2), dtype=np.int64)
            pos = _search(self._keys, self._hi, keys)
            found = pos >= 0
            loc = self._where[np.maximum(pos, 0)]
            bad = [s for s in np.unique(loc[found, 0]).tolist() if not self._verified(s)]
            if not bad:
                return found, loc
            keep = ~np.isin(self._where[:, 0], bad)  # a key may also sit in another shard: look again
            self._keys, self._hi, self._where = self._keys[keep], self._hi[keep], self._where[keep]

    def _copy_rows(self, out: np.ndarray, rows: np.ndarray, loc: np.ndarray) -> None:
        """``out[rows[i]] = shard loc[i, 0], row loc[i, 1]``, one fancy-indexed read per shard."""
        order = np.argsort(loc[:, 0], kind="stable")
        rows, loc = rows[order], loc[order]
        cuts = np.flatnonzero(np.diff(loc[:, 0])) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(loc)], strict=True):
            if hi > lo:
                out[rows[lo:hi]] = self._shards[loc[lo, 0]][1][loc[lo:hi, 1]]

    def __len__(self) -> int:
        self._index()
        return len(self._keys)

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
        found, loc = self._locate(keys)
        out = np.empty((int(found.sum()), self.dim), dtype=self.dtype)
        self._copy_rows(out, np.arange(len(out)), loc[found])
        return found, out

    def gather(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`lookup`, but one row per key: ``vectors`` has shape (n, d) with zero rows for misses."""
        found, loc = self._locate(keys)
        out = np.zeros((len(keys), self.dim), dtype=self.dtype)
        rows = np.flatnonzero(found)
        self._copy_rows(out, rows, loc[rows])
        return found, out

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Persist one block of vectors as a new shard (atomically); the in-memory index is rebuilt lazily."""
        if len(keys) == 0:
            return
        vectors = np.asarray(vectors, dtype=self.dtype)
        path = None
        if self._writable:
            path = self.folder / f"shard-{uuid.uuid4().hex}"
            try:
                save_arrays(path, {"n": len(keys)}, keys=keys, vectors=vectors)
            except OSError as err:  # read-only, full, or not a folder: keep the rows in memory from here on
                self._writable, path = False, None
                _warn_unwritable(err, self.folder)
            else:
                stamp = _stamp(path, ("keys", "vectors"))
                if stamp is not None:
                    _VERIFIED.add(stamp)
        self._append(keys, vectors, path, checked=True)

    def _index(self) -> None:
        if not self._pending:
            return
        keys = [self._keys] + [k for k, _ in self._pending]
        where = [self._where] + [np.column_stack([np.full(len(k), s), np.arange(len(k))]) for k, s in self._pending]
        allk = np.concatenate(keys)
        order = _key_order(allk)
        self._keys, self._where = allk[order], np.concatenate(where)[order]
        self._hi = _words(self._keys)[:, 0].copy()
        self._pending.clear()


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


def _search(sorted_keys: np.ndarray, hi: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Position of each key's first copy in ``sorted_keys`` (ordered by :func:`_key_order`), -1 when absent."""
    q = _words(keys)
    pos = np.minimum(np.searchsorted(hi, q[:, 0]), len(hi) - 1)
    found = sorted_keys[pos] == keys
    for i in np.flatnonzero(~found & (hi[pos] == q[:, 0])):  # same first word: the key may sit further on
        j = pos[i] + 1
        while j < len(hi) and hi[j] == q[i, 0] and sorted_keys[j] != keys[i]:
            j += 1
        found[i] = j < len(hi) and sorted_keys[j] == keys[i]
        pos[i] = j
    return np.where(found, pos, -1)


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
