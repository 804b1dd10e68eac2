"""Precomputed embeddings: ``--embedder npy:PATH`` with an (n, d) array aligned with the pool's rows."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from kmq.embed.base import l2_normalize
from kmq.errors import DataFormatError, MissingArtifactError

logger = logging.getLogger(__name__)


def load_npy_embeddings(path: str | os.PathLike, n_rows: int) -> np.ndarray:
    """Load, check and L2-normalise a user's embedding matrix.

    Parameters
    ----------
    path : path to a ``.npy`` file (no pickled objects)
    n_rows : int
        The pool size; row i must be the embedding of pool record i.

    Returns
    -------
    embeddings : ndarray of shape (n_rows, d), float32, unit rows
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingArtifactError(f"Embeddings file {path} not found (--embedder npy:PATH).")
    try:
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except ValueError as err:
        raise DataFormatError(f"{path}: not a plain numeric .npy array ({err}).") from err
    if arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
        raise DataFormatError(
            f"{path}: expected a 2-D numeric array (n, d); got shape {arr.shape}, dtype {arr.dtype}."
        )
    if arr.shape[0] != n_rows:
        raise DataFormatError(
            f"{path} has {arr.shape[0]} rows but the pool has {n_rows} records: row i must embed record i "
            "(same order, same filtering). Recompute the embeddings for this pool."
        )
    arr = np.asarray(arr, dtype=np.float32)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DataFormatError(f"{path}: {int(bad.sum())} rows contain NaN or inf (first: row {int(np.argmax(bad))}).")
    norms = np.linalg.norm(arr, axis=1)
    if (norms == 0).any():
        logger.warning("%s: %d all-zero rows", path, int((norms == 0).sum()))
    if not np.allclose(norms[norms > 0], 1.0, atol=1e-3):
        logger.info("%s: rows are not unit-norm; normalising them (k-means runs on cosine geometry)", path)
    return l2_normalize(arr)
