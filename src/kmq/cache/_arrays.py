"""Array entries on disk: digests checked on read, and the whole-array :class:`ArtifactStore`.

``artifacts/<kind>/<key>/`` under the cache folder holds whole-array results (cluster labels and centroids,
quality scores) keyed by a digest of everything that determines them. Nothing is pickled: arrays are
``.npy`` (loaded with ``allow_pickle=False``) and metadata is JSON.

Integrity: every entry's ``meta.json`` records an XXH3-128 digest of each array (dtype, shape and bytes;
:func:`array_digest`). Reads check it: an entry that fails (edited, truncated, random bytes) is a miss. It
is recomputed and replaced, with one warning per entry and run that names it. Entries written by kmq
versions before digests existed have none; they are treated as misses too and rewritten. The vector
shards (:mod:`kmq.cache._vectors`) use the same digests and warnings.

A cache folder that cannot be written (read-only, full, a path under a regular file) is not an error:
the run goes on uncached, with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from kmq.cache._files import _json_default, atomic_path, default_cache_dir

logger = logging.getLogger("kmq.cache")  # the cache's one logger, whichever of its modules warns

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
