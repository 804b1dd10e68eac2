"""Digests for cache keys, atomic writes, JSON, and the cache folder: what every kmq module that writes uses.

:func:`digest` (BLAKE2b-128 of JSON-serialisable parts, bytes or arrays) names cache entries and run folders;
:func:`atomic_path` is how every file and folder kmq publishes appears (whole, or not at all).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


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
