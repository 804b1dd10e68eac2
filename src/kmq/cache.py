"""Content-addressed artifact store and atomic writes.

Everything expensive is cached under one directory (``$KMQ_CACHE_DIR``, default ``~/.cache/kmq``):

``vectors/<embedder-key>/shard-*/``
    Text vectors keyed by a 128-bit BLAKE2b digest of the text. A shard is written atomically (a
    folder renamed into place) as soon as a block of texts is encoded, so an interrupted run keeps
    what it finished and the next run encodes only the rest. Any pool sharing a text reuses its vector.
``artifacts/<kind>/<key>/``
    Whole-array results (cluster labels and centroids, quality scores) keyed by a digest of
    everything that determines them.

Nothing is pickled: arrays are ``.npy`` (loaded with ``allow_pickle=False``) and metadata is JSON.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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


def save_arrays(folder: str | os.PathLike, meta: dict[str, Any] | None = None, **arrays: np.ndarray) -> Path:
    """Write named arrays (``name.npy``) and ``meta.json`` into ``folder``, atomically as a whole."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        for name, arr in arrays.items():
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
        (tmp / "meta.json").write_text(json.dumps(meta or {}, indent=2, default=_json_default), encoding="utf-8")
    return Path(folder)


def load_arrays(folder: str | os.PathLike, *names: str, mmap: bool = False) -> list[np.ndarray]:
    """Load named arrays written by :func:`save_arrays`."""
    mode = "r" if mmap else None
    return [np.load(Path(folder) / f"{name}.npy", allow_pickle=False, mmap_mode=mode) for name in names]


class ArtifactStore:
    """Whole-array artifacts addressed by ``(kind, key)``: ``get`` returns None on a miss."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()

    def path(self, kind: str, key: str) -> Path:
        return self.root / "artifacts" / kind / key

    def get(self, kind: str, key: str, *names: str) -> list[np.ndarray] | None:
        folder = self.path(kind, key)
        if not (folder / "meta.json").is_file():
            return None
        try:
            return load_arrays(folder, *names)
        except (OSError, ValueError):  # a damaged entry is a miss; it is rewritten
            return None

    def put(self, kind: str, key: str, meta: dict[str, Any] | None = None, **arrays: np.ndarray) -> Path:
        folder = self.path(kind, key)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        return save_arrays(folder, meta, **arrays)


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
    """

    def __init__(self, folder: str | os.PathLike, dim: int, *, dtype: Any = np.float32) -> None:
        self.folder = Path(folder)
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self._keys = np.empty(0, dtype=KEY_DTYPE)
        self._shards: list[np.ndarray] = []
        self._where = np.empty((0, 2), dtype=np.int64)  # (shard, row) per sorted key
        self._pending: list[tuple[np.ndarray, int]] = []  # blocks added since the index was last sorted
        self._load()

    def _load(self) -> None:
        keys, where, shards = [], [], []
        if self.folder.is_dir():
            for shard in sorted(p for p in self.folder.glob("shard-*") if p.is_dir()):
                try:
                    k, v = load_arrays(shard, "keys", "vectors", mmap=True)
                except (OSError, ValueError):
                    continue
                if v.ndim != 2 or v.shape[1] != self.dim or len(k) != len(v) or v.dtype != self.dtype:
                    continue
                keys.append(k)
                shards.append(v)
                where.append(np.column_stack([np.full(len(k), len(shards) - 1), np.arange(len(k))]))
        if keys:
            allk = np.concatenate(keys)
            order = np.argsort(allk, kind="stable")
            self._keys = allk[order]
            self._where = np.concatenate(where)[order]
        self._shards = shards

    def __len__(self) -> int:
        self._index()
        return len(self._keys)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Find cached vectors.

        Returns
        -------
        found : ndarray of shape (n,), bool
        vectors : ndarray of shape (found.sum(), d), ``dtype`` (float32 by default), in the order of ``keys[found]``
        """
        if len(self._keys) == 0 or len(keys) == 0:
            return np.zeros(len(keys), dtype=bool), np.empty((0, self.dim), dtype=self.dtype)
        pos = np.searchsorted(self._keys, keys)
        pos_c = np.minimum(pos, len(self._keys) - 1)
        found = self._keys[pos_c] == keys
        loc = self._where[pos_c[found]]
        out = np.empty((len(loc), self.dim), dtype=self.dtype)
        for s in np.unique(loc[:, 0]):
            sel = loc[:, 0] == s
            out[sel] = self._shards[s][loc[sel, 1]]
        return found, out

    def gather(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`lookup`, but one row per key: ``vectors`` has shape (n, d) with zero rows for misses."""
        self._index()
        out = np.zeros((len(keys), self.dim), dtype=self.dtype)
        if len(self._keys) == 0 or len(keys) == 0:
            return np.zeros(len(keys), dtype=bool), out
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        found = self._keys[pos] == keys
        loc = self._where[pos]
        for s in np.unique(loc[found, 0]):
            rows = np.flatnonzero(found & (loc[:, 0] == s))
            out[rows] = self._shards[s][loc[rows, 1]]
        return found, out

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Persist one block of vectors as a new shard (atomically); the in-memory index is rebuilt lazily."""
        if len(keys) == 0:
            return
        name = f"shard-{uuid.uuid4().hex}"
        vectors = np.asarray(vectors, dtype=self.dtype)
        save_arrays(self.folder / name, {"n": len(keys)}, keys=keys, vectors=vectors)
        self._shards.append(vectors)
        self._pending.append((keys, len(self._shards) - 1))

    def _index(self) -> None:
        if not self._pending:
            return
        keys = [self._keys] + [k for k, _ in self._pending]
        where = [self._where] + [np.column_stack([np.full(len(k), s), np.arange(len(k))]) for k, s in self._pending]
        allk = np.concatenate(keys)
        order = np.argsort(allk, kind="stable")
        self._keys, self._where = allk[order], np.concatenate(where)[order]
        self._pending.clear()
