"""A model-free embedder: signed feature hashing of word unigrams and bigrams.

Each text becomes the sublinear term counts (``sign(c) * log1p(|c|)``) of its lower-cased word
unigrams (minus a short stop-word list) and bigrams, hashed with BLAKE2b into ``dim`` buckets with a
random sign (a sparse Johnson–Lindenstrauss projection of the bag of n-grams), then L2-normalised.
A text's vector depends on that text alone, so vectors are cacheable per text and the same everywhere.
It is fast (tens of thousands of texts per second), offline, and good enough for lexical clustering,
tests and benchmarks; it knows no semantics.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from kmq.embed.base import Embedder, l2_normalize

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    "a an and are as at be but by for from has have he her his i in is it its me my no not of on or our she so "
    "than that the their them then there these they this to was we were what when which who will with you your".split()
)


class HashingEmbedder(Embedder):
    """Signed feature hashing of word n-grams.

    Parameters
    ----------
    dim : int, default 512
        Number of hash buckets (vector size).
    """

    block_size = 8192

    def __init__(self, dim: int = 512) -> None:
        super().__init__()
        self.name = "hashing" if dim == 512 else f"hashing:{dim}"
        self._dim = int(dim)
        self._bucket: dict[str, tuple[int, float]] = {}

    @property
    def dim(self) -> int:
        return self._dim

    def identity(self) -> dict:
        return {**super().identity(), "version": 1, "ngrams": [1, 2], "hash": "blake2b-8"}

    def _hash(self, feature: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(feature.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
        return h % self._dim, (1.0 if (h >> 63) & 1 else -1.0)

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        vocab: dict[str, int] = {}
        rows: list[int] = []
        cols: list[int] = []
        for r, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            feats = [w for w in words if w not in _STOP]
            feats += [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]
            ids = [vocab.setdefault(f, len(vocab)) for f in feats]
            cols.extend(ids)
            rows.extend([r] * len(ids))
        if len(self._bucket) > 5_000_000:  # bound the per-feature memo kept across blocks
            self._bucket.clear()
        buckets = np.empty(len(vocab), dtype=np.int64)
        signs = np.empty(len(vocab), dtype=np.float64)
        for f, i in vocab.items():
            b = self._bucket.get(f)
            if b is None:
                b = self._bucket[f] = self._hash(f)
            buckets[i], signs[i] = b
        col = np.asarray(cols, dtype=np.int64)
        flat = np.asarray(rows, dtype=np.int64) * self._dim + buckets[col]
        counts = np.bincount(flat, weights=signs[col], minlength=len(texts) * self._dim).reshape(len(texts), -1)
        return l2_normalize(np.sign(counts) * np.log1p(np.abs(counts)))
