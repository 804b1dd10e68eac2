"""Precomputed embeddings: ``--embedder npy:PATH`` with an (n, d) array aligned with the pool's rows."""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import mmap
import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache import digest_update
from kmq.errors import DataFormatError, MissingArtifactError

logger = logging.getLogger(__name__)

_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK\x03\x04"
_SAVE_HINT = "Save one 2-D float array with np.save(path, np.asarray(vectors, dtype=np.float32))."
_CHUNK_ROWS = 65536


def resident_dtype(file_dtype: Any) -> np.dtype:
    """The dtype kmq holds a ``.npy`` file's normalised rows in: float16 for a float16 file, else float32.

    A float16 file's rows are normalised in float32 and stored back as float16 (half the memory: 7.2 GiB
    instead of 14.3 GiB at 10M x 384); the stages that use them (k-means, centroid distances, the
    diagnostics, the map) read them in float32 chunks and never copy the whole matrix to float32. Every
    other float dtype is held as float32, as before.
    """
    return np.dtype(np.float16) if np.dtype(file_dtype) == np.float16 else np.dtype(np.float32)


def load_npy_embeddings(
    path: str | os.PathLike,
    n_rows: int,
    *,
    on_chunk: Callable[[np.ndarray], Any] | None = None,
    keep_float16: bool = False,
) -> np.ndarray:
    """Load, check and L2-normalise a user's embedding matrix.

    Parameters
    ----------
    path : path to a ``.npy`` file (no pickled objects)
        A 2-D array of any float dtype (float16, float32, float64, longdouble), at least one column.
    n_rows : int
        The pool size; row i must be the embedding of pool record i.
    on_chunk : callable, optional
        Called with each finished block of output rows, in order (a view, not a copy).
    keep_float16 : bool, default False
        Return a float16 file's rows as float16 (:func:`resident_dtype`): normalised in float32, then rounded.

    Returns
    -------
    embeddings : ndarray of shape (n_rows, d), float32 (float16 with ``keep_float16`` and a float16 file), unit rows
        float64 rows are normalised in float64, so values beyond float32's range keep their direction.

    Raises
    ------
    MissingArtifactError
        ``path`` is not a file.
    DataFormatError
        Not a ``.npy`` file (an ``.npz`` archive, a pickle, truncated), not 2-D, no columns, a dtype that is
        not a float, a row count other than ``n_rows``, or rows with NaN or inf; the message says which.
    """
    path = Path(path).expanduser()
    arr = _load(path)
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataFormatError(
            f"{path}: expected a float array (float16, float32 or float64); got dtype {arr.dtype}. If these are "
            "real embeddings, convert them: np.save(path, vectors.astype(np.float32))."
        )
    if arr.ndim != 2 or arr.shape[1] == 0:
        what = "no columns" if arr.ndim == 2 else f"{arr.ndim} dimension(s)"
        raise DataFormatError(
            f"{path}: expected a 2-D array (n, d) with d >= 1; got shape {arr.shape} ({what}). {_SAVE_HINT}"
        )
    if arr.shape[0] != n_rows:
        raise DataFormatError(
            f"{path} has {arr.shape[0]} rows but the pool has {n_rows} records: row i must embed record i "
            "(same order, same filtering). Recompute the embeddings for this pool."
        )
    out_dtype = resident_dtype(arr.dtype) if keep_float16 else np.dtype(np.float32)
    release_freed_memory()  # the matrix is allocated next: not on top of what the pool read freed
    return _normalize_rows(path, arr, on_chunk, out_dtype)


def release_freed_memory() -> None:
    """Hand memory that earlier stages freed back to the OS (Arrow's allocator and glibc's heap keep it).

    Reading a JSON Lines pool frees its parse buffers, but the process keeps most of them: at 1M short records
    the RSS after :func:`~kmq.data.read_pool` fell from +396 MiB to +234 MiB once released, about 1.6 GB at
    10M, which the (n, d) matrix would otherwise sit on top of. A no-op where the calls do not exist.
    """
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL(None).malloc_trim(0)  # glibc
    except (OSError, AttributeError):
        pass


def load_npy_source(path: str | os.PathLike, n_rows: int, *, keep_float16: bool = False) -> tuple[np.ndarray, str]:
    """:func:`load_npy_embeddings` and the key of its rows, read in one pass.

    The key is ``kmq.cache.digest("npy", X)`` (BLAKE2b-128 of ``"npy"`` and X's float32 bytes: the digest
    kmq always gave these rows, so cached clusterings stay valid); float16-resident rows (``keep_float16``)
    are keyed ``digest("npy-float16", X)``, their float16 bytes (other values: another key). Each chunk of
    rows is hashed as soon as it is normalised, in a second thread (BLAKE2b releases the GIL), and X is never
    copied.

    Returns
    -------
    embeddings : ndarray of shape (n_rows, d), float32 (or float16: ``keep_float16``), unit rows
    key : str
        32 hex digits.
    """
    path = Path(path).expanduser()
    h = hashlib.blake2b(digest_size=16)
    tag = "npy-float16" if keep_float16 and resident_dtype(_load(path).dtype) == np.float16 else "npy"
    h.update(json.dumps(tag).encode() + b"\x00")  # what kmq.cache.digest feeds for a str part
    with ThreadPoolExecutor(max_workers=1) as pool:  # one worker: the chunks are hashed in order
        pending = []
        def hash_rows(rows: np.ndarray) -> None:
            pending.append(pool.submit(digest_update, h, rows))

        X = load_npy_embeddings(path, n_rows, on_chunk=hash_rows, keep_float16=keep_float16)
        for job in pending:
            job.result()
    h.update(b"\x00")
    return X, h.hexdigest()


def _load(path: Path) -> np.ndarray:
    """Memory-map a plain ``.npy`` array; anything else is a DataFormatError that says what the file is."""
    if not path.is_file():
        raise MissingArtifactError(f"Embeddings file {path} not found (--embedder npy:PATH).")
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head.startswith(_ZIP_MAGIC):
        raise DataFormatError(
            f"{path} is a NumPy .npz archive (np.savez), not a .npy array. Load it and save the embedding "
            f"array alone: np.save('emb.npy', np.load('{path.name}')['NAME'])."
        )
    if head != _NPY_MAGIC:
        what = f"it starts with {head!r}" if head else "it is empty"
        raise DataFormatError(f"{path} is not a .npy file ({what}). {_SAVE_HINT}")
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, EOFError, OSError) as err:
        if "object" in str(err):
            reason = "it holds Python objects (dtype object)"
        elif "mmap length" in str(err) or isinstance(err, EOFError):
            reason = "it is truncated (shorter than its header says)"
        else:
            reason = str(err)
        raise DataFormatError(f"{path}: not a plain numeric .npy array: {reason}. {_SAVE_HINT}") from err


def _normalize_rows(
    path: Path, arr: np.ndarray, on_chunk: Callable[[np.ndarray], Any] | None = None, out_dtype: Any = np.float32
) -> np.ndarray:
    """Check every row is finite and return the rows scaled to unit norm as ``out_dtype``, a chunk at a time.

    float16/float32 rows are normalised in float32 (as :func:`~kmq.embed.l2_normalize` does); wider floats in
    their own dtype after dividing each row by its largest magnitude, so no square overflows or underflows.
    A float16 ``out_dtype`` gets each chunk's float32 rows rounded to float16.
    """
    out = np.empty(arr.shape, dtype=out_dtype)
    narrow = out.dtype != np.float32
    wide = arr.dtype.itemsize > 4
    zero, unit = 0, True
    for lo in range(0, len(arr), _CHUNK_ROWS):
        block = np.asarray(arr[lo : lo + _CHUNK_ROWS], dtype=arr.dtype if wide else np.float32)
        scale = 1.0
        if wide:
            scale = np.abs(block).max(axis=1, keepdims=True)
            if not np.isfinite(scale).all():
                _check_finite(path, arr, block, lo)
            block = np.divide(block, scale, out=np.zeros_like(block), where=scale > 0)
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.linalg.norm(block, axis=1, keepdims=True)
        if not np.isfinite(norms).all():  # NaN or inf propagate to the norm (or a huge float32 row overflows it)
            _check_finite(path, arr, block, lo)
        zero += int((norms == 0).sum())
        with np.errstate(over="ignore"):
            unit = unit and bool(np.allclose((norms * scale)[norms > 0], 1.0, atol=1e-3))
        rows = np.empty(block.shape, np.float32) if narrow else out[lo : lo + len(block)]
        np.divide(block, norms, out=rows, where=norms > 0)
        rows[(norms <= 0)[:, 0]] = 0
        if narrow:
            out[lo : lo + len(block)] = rows
            rows = out[lo : lo + len(block)]
        if on_chunk is not None:
            on_chunk(rows)
        _drop_pages(arr, lo, lo + len(block))
    if zero:
        logger.warning("%s: %d all-zero rows (they stay zero and match no centroid well)", path, zero)
    if not unit:
        logger.info("%s: rows are not unit-norm; normalising them (k-means runs on cosine geometry)", path)
    return out


def _drop_pages(arr: np.ndarray, lo: int, hi: int) -> None:
    """Drop the mapped file pages of rows ``lo:hi`` (read once): while mapped they count in the process's RSS,
    which would hold the file beside its float32 copy (2x the matrix at peak). Added by H8 (scale)."""
    mm = getattr(arr, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED") or not arr.flags.c_contiguous:
        return
    row = arr.strides[0]
    base = arr.offset - arr.offset % mmap.ALLOCATIONGRANULARITY  # where np.memmap's mapping starts in the file
    start, stop = arr.offset - base + lo * row, arr.offset - base + hi * row
    start -= start % mmap.PAGESIZE
    mm.madvise(mmap.MADV_DONTNEED, start, stop - start)


def _check_finite(path: Path, arr: np.ndarray, block: np.ndarray, lo: int) -> None:
    bad = ~np.isfinite(block).all(axis=1)
    if bad.any():
        first = lo + int(np.argmax(bad))
        raise DataFormatError(
            f"{path}: row {first} contains NaN or inf (dtype {arr.dtype}); every row must be a finite vector. "
            "Recompute the embedding of that record."
        )
