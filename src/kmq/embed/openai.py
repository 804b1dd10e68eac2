"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint: ``openai:MODEL@URL`` (vLLM, TEI, Ollama, OpenAI).

Texts are sent ``batch_size`` per request, at most ``concurrency`` requests in flight, through
:class:`kmq.endpoints.Endpoint` (kmq's one OpenAI client): the SDK retries 429, 408/409, 5xx answers,
timeouts and dropped connections ``max_retries`` times with backoff (honouring ``Retry-After``), other
HTTP errors fail at once, a dead endpoint fails within a second, and the first failure cancels the
requests not yet sent. Vectors are asked for as base64 float32 (the SDK's own default; an endpoint that
answers JSON floats instead is read too), put back in input order by each item's ``index``, checked
(one vector per input, all of the same dimension, finite) and L2-normalised to float32. An answer that
fails a check is an :class:`EmbeddingEndpointError` naming the endpoint and the batch.

The API key is read only from the environment variable ``api_key_env`` (unset sends the placeholder
``EMPTY``, fine for local servers) and sent as ``Authorization: Bearer``; a ``user:password@`` in the URL is
sent as HTTP Basic auth. Neither is part of the name, the cache key, the stats or any message.

The cache key holds the model, the base URL without credentials and the vector dimension. The dimension
is ``dimensions`` when given (sent to the endpoint, which then shortens the vectors as OpenAI's
text-embedding-3 models do); otherwise one request embeds the text ``"dimension probe"`` the first time a
model and URL are used, and the answer's dimension is remembered in
``$KMQ_CACHE_DIR/endpoints/<key>.json``, so a warm run sends no request at all. Texts are not cut: a text
longer than the model's input limit is the endpoint's error (vLLM and TEI can truncate on their side).
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import numpy as np

from kmq._deps import require
from kmq.cache import default_cache_dir, digest, write_json
from kmq.data.formats import LONE_SURROGATE
from kmq.embed.base import Embedder, l2_normalize
from kmq.endpoints import Endpoint, _Cancelled
from kmq.errors import EmbeddingEndpointError, InvalidParameterError
from kmq.redact import redact_url

__all__ = ["EmbeddingEndpointError", "OpenAIEmbedder"]

logger = logging.getLogger(__name__)

PROBE_TEXT = "dimension probe"


class OpenAIEmbedder(Embedder):
    """Vectors from an OpenAI-compatible embeddings endpoint (see the module docstring).

    Parameters
    ----------
    model : str
        Model name the endpoint serves (``BAAI/bge-m3``, ``text-embedding-3-small``, ``nomic-embed-text``).
    base_url : str
        OpenAI-compatible base URL, e.g. ``http://localhost:8000/v1``.
    batch_size : int, default 64
        Texts per request.
    concurrency : int, default 4
        Requests in flight at most.
    max_retries : int, default 5
        Retries of a request after a retryable failure (the SDK's backoff).
    timeout : float, default 120.0
        Seconds per HTTP attempt.
    api_key_env : str, default "OPENAI_API_KEY"
        Environment variable holding the API key.
    dimensions : int or None, default None
        Vector size to ask for (the ``dimensions`` request field); None takes the model's own.

    Attributes
    ----------
    stats_ : dict
        The base class's counts plus ``requests`` (answered embedding requests, a dimension probe
        included) and ``http_attempts`` (HTTP attempts, retries included).

    Examples
    --------
    >>> emb = OpenAIEmbedder("BAAI/bge-m3", "http://localhost:8000/v1", concurrency=8)  # doctest: +SKIP
    >>> emb.encode(["hello", "world"]).shape  # doctest: +SKIP
    (2, 1024)
    """

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        batch_size: int = 64,
        concurrency: int = 4,
        max_retries: int = 5,
        timeout: float = 120.0,
        api_key_env: str = "OPENAI_API_KEY",
        dimensions: int | None = None,
    ) -> None:
        super().__init__()
        self.model_name = model
        self.base_url = base_url
        self.name = redact_url(f"openai:{model}@{base_url}")
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.api_key_env = api_key_env
        self.dimensions = dimensions
        self._endpoint: Endpoint | None = None
        self._dim: int | None = None
        self._requests = 0

    @property
    def block_size(self) -> int:  # type: ignore[override]
        """Texts per persisted block: enough requests to keep ``concurrency`` of them busy a while."""
        return max(1024, 4 * self.batch_size * self.concurrency)

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint all requests go through (built on first use; building sends nothing)."""
        if self._endpoint is None:
            self._endpoint = Endpoint(
                self.base_url, label=self.name, error=EmbeddingEndpointError, api_key_env=self.api_key_env,
                max_retries=self.max_retries, timeout=self.timeout,
            )  # fmt: skip
        return self._endpoint

    def _check_params(self) -> None:
        for name, low in (("batch_size", 1), ("concurrency", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InvalidParameterError(
                    f"The {name!r} parameter of {self.name} must be an int >= {low}. Got {value!r} instead."
                )
        d = self.dimensions
        if d is not None and (not isinstance(d, int) or isinstance(d, bool) or d < 1):
            raise InvalidParameterError(
                f"The 'dimensions' parameter of {self.name} must be None or an int >= 1. Got {d!r} instead."
            )

    # -- the dimension --------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        if self._dim is None:
            self._check_params()
            self._dim = self.dimensions or self._remembered_dim() or self._probe_dim()
        return self._dim

    def _dim_file(self):
        key = digest("openai-embed-dim-v1", self.model_name, redact_url(self.base_url), self.dimensions)
        return default_cache_dir() / "endpoints" / f"{key}.json"

    def _remembered_dim(self) -> int | None:
        try:
            dim = json.loads(self._dim_file().read_text(encoding="utf-8")).get("dim")
        except (OSError, ValueError, AttributeError):
            return None
        return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim > 0 else None

    def _probe_dim(self) -> int:
        self.endpoint._stop.clear()  # a request outside Endpoint.map: no earlier batch's failure cancels it
        vecs = self._request([PROBE_TEXT], dim=None)
        dim = int(vecs.shape[1])
        logger.info("%s: the endpoint's vectors have %d dimensions", self.name, dim)
        try:
            write_json(self._dim_file(), {"model": self.model_name, "base_url": redact_url(self.base_url), "dim": dim})
        except OSError as err:  # an unwritable cache: the next run asks again
            logger.debug("%s: could not remember the dimension (%s)", self.name, err)
        return dim

    def identity(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "model": self.model_name, "base_url": redact_url(self.base_url),
                "dim": self.dim, "normalize": "l2"}  # fmt: skip

    # -- requests -------------------------------------------------------------------------------------
    def encode(self, texts: Any, **kwargs: Any) -> np.ndarray:
        requests, attempts = self._requests, self.endpoint.attempts
        out = super().encode(texts, **kwargs)
        self.stats_["requests"] = self._requests - requests
        self.stats_["http_attempts"] = self.endpoint.attempts - attempts
        return out

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        self._check_params()
        dim = self.dim
        batches = [texts[lo : lo + self.batch_size] for lo in range(0, len(texts), self.batch_size)]
        rows = self.endpoint.map(lambda batch: self._request(batch, dim=dim), batches, concurrency=self.concurrency)
        return np.concatenate(rows, axis=0) if rows else np.zeros((0, dim), dtype=np.float32)

    def _request(self, texts: list[str], *, dim: int | None) -> np.ndarray:
        """Unit vectors of one request's texts, shape (len(texts), d), float32, checked against ``dim``."""
        endpoint = self.endpoint
        client = endpoint.client
        openai = require("openai", purpose=self.name)
        params: dict[str, Any] = {"model": self.model_name, "encoding_format": "base64"}
        if self.dimensions is not None:
            params["dimensions"] = self.dimensions
        inputs = [LONE_SURROGATE.sub("\ufffd", t) for t in texts]  # JSON bodies are UTF-8; cache keys keep them
        endpoint._local.attempts = 0
        try:  # Endpoint.chat's error handling, for embeddings
            resp = client.embeddings.create(input=inputs, **params)
        except openai.APIError as err:
            if endpoint._stop.is_set():  # another request of the batch failed first; that one is reported
                raise _Cancelled() from err
            msg = str(endpoint._wrap(openai, err)).rstrip(". ")
            raise EmbeddingEndpointError(f"{msg}. The request held {_batch(texts)}.") from err
        vecs = self._vectors(resp, texts, dim)
        with endpoint._lock:
            self._requests += 1
        return l2_normalize(vecs)

    def _vectors(self, resp: Any, texts: list[str], dim: int | None) -> np.ndarray:
        data = getattr(resp, "data", None)
        if not isinstance(data, list):
            raise self._bad(texts, "has no 'data' list. Is the URL an embeddings endpoint (POST /v1/embeddings)?")
        if len(data) != len(texts):
            raise self._bad(texts, f"has {len(data)} vectors for {len(texts)} inputs")
        index = [getattr(item, "index", None) for item in data]
        if all(isinstance(i, int) for i in index):
            if sorted(index) != list(range(len(texts))):
                raise self._bad(texts, f"has the item indices {sorted(index)[:10]}, not 0..{len(texts) - 1}")
            data = [data[j] for j in np.argsort(index, kind="stable")]
        out = [_decode(getattr(item, "embedding", None)) for item in data]
        want = dim if dim is not None else (len(out[0]) if out and out[0] is not None else 0)
        for i, vec in enumerate(out):
            if vec is None or len(vec) != want or want == 0:
                got = "no vector" if vec is None else f"a vector of dimension {len(vec)}"
                raise self._bad(texts, f"has {got} for input {i}; expected dimension {want or '>= 1'}"
                                + self._dim_hint(dim))  # fmt: skip
        vecs = np.stack(out).astype(np.float32, copy=False)
        bad = ~np.isfinite(vecs).all(axis=1)
        if bad.any():
            raise self._bad(texts, f"has non-finite values (NaN or inf) in the vectors of inputs "
                                   f"{np.flatnonzero(bad)[:10].tolist()}")  # fmt: skip
        return vecs

    def _dim_hint(self, dim: int | None) -> str:
        if dim is None or self.dimensions is not None:
            return ""
        return (f" (the dimension an earlier answer gave, remembered in {self._dim_file()}: delete that file if the "
                "endpoint now serves another model)")  # fmt: skip

    def _bad(self, texts: list[str], what: str) -> EmbeddingEndpointError:
        return EmbeddingEndpointError(f"{self.name}: the answer to {_batch(texts)} {what}.")


def _batch(texts: list[str]) -> str:
    """``a batch of 64 texts (the first starts 'Give three...')`` (for messages)."""
    first = texts[0] if texts else ""
    head = first[:40] + ("..." if len(first) > 40 else "")
    return f"a batch of {len(texts)} text{'s' if len(texts) != 1 else ''} (the first starts {head!r})"


def _decode(embedding: Any) -> np.ndarray | None:
    """One item's vector: base64 float32 (little-endian, as OpenAI sends it) or a list of numbers."""
    if isinstance(embedding, str):
        try:
            raw = base64.b64decode(embedding, validate=True)
        except ValueError:
            return None
        return np.frombuffer(raw, dtype="<f4") if len(raw) % 4 == 0 else None
    if isinstance(embedding, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in embedding):
        return np.asarray(embedding, dtype=np.float32)
    return None
