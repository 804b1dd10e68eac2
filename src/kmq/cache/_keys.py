"""Per-text content keys: 128-bit BLAKE2b digests as V16 scalars, and their fast sort and deduplication.

NumPy sorts void scalars slowly, so keys are sorted and searched as two big-endian uint64 words
(:func:`_words`); :func:`unique_keys` returns exactly ``np.unique``'s arrays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

KEY_DTYPE = np.dtype("V16")


def text_keys(texts: Sequence[str]) -> np.ndarray:
    """128-bit BLAKE2b digests of UTF-8 texts.

    Returns
    -------
    keys : ndarray of shape (n,), dtype V16
    """
    blob = b"".join(hashlib.blake2b(t.encode("utf-8", "surrogatepass"), digest_size=16).digest() for t in texts)
    return np.frombuffer(blob, dtype=KEY_DTYPE).copy() if texts else np.empty(0, dtype=KEY_DTYPE)


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
