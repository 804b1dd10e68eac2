"""Pooled hidden states of any Hugging Face ``AutoModel``: ``hf:MODEL[:POOLING]`` (encoders and decoders).

The model loads through :mod:`kmq.hf` (a hub name or a local folder; ``trust_remote_code`` off unless
asked) with ``AutoModel``, so a causal-LM checkpoint (Llama, GPT-2, Qwen...) gives its base model and
an encoder-decoder (T5) its encoder. Each text is tokenised with the tokenizer's own special tokens
(``add_special_tokens=True``: BOS for Llama, ``[CLS]``/``[SEP]`` for BERT) and **cut at the model's
window**: ``max_length`` when given, else the smaller of the tokenizer's ``model_max_length`` and the
config's ``max_position_embeddings``; the tokens past it are dropped (not chunked: a last-token vector
of a chunk means nothing), and :attr:`HFEmbedder.stats_` counts the texts cut (``truncated``).

Texts are sorted by token length and batched ``batch_size`` at a time, so short texts are not padded to
long ones; rows come back in input order. Batches are padded on the right whatever the tokenizer's
``padding_side``: for a causal model the real tokens then never see a pad and keep positions 0..n-1,
and for an encoder the attention mask hides the pads, so every vector equals the unpadded forward pass
up to float rounding. Pooling, over the last layer's hidden states in float32:

``mean`` (default)  the mean over the text's tokens (special tokens included, as sentence-transformers does)
``last``            the hidden state of the last real token: the paper's Llama-2-7B ablation encoder (paper.md §4)
``cls``             the hidden state of the first token (BERT-style ``[CLS]``)

then L2-normalised. Precision ``fp32``, ``bf16`` or ``fp16`` (the weights' dtype; ``auto`` is
:func:`kmq._cpu.resolve_precision`: bf16 on a GPU that supports it, else fp16; on a CPU bf16 where it
multiplies bf16 natively, else fp32); bf16 on a GPU without it is an error. The cache
key holds the model (a hub model's commit, a folder's file fingerprint), pooling, precision, window and
dimension; device and batch size are left out (they change vectors only at rounding level).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np

from kmq import hf
from kmq._cpu import resolve_precision
from kmq._deps import require
from kmq.data.formats import LONE_SURROGATE
from kmq.embed.base import Embedder, l2_normalize
from kmq.errors import InvalidParameterError, invalid_parameter

__all__ = ["POOLINGS", "HFEmbedder"]

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "last", "cls")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: a window used when neither the tokenizer nor the config gives one
FALLBACK_WINDOW = 512


class HFEmbedder(Embedder):
    """Mean, last-token or first-token pooling over a Hugging Face model's last hidden layer.

    Parameters
    ----------
    model : str
        Hub name or local folder of any ``AutoModel`` checkpoint.
    pooling : {"mean", "last", "cls"}, default "mean"
    device : str, default "cpu"
        Torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
    precision : {"auto", "fp32", "bf16", "fp16"}, default "auto"
    batch_size : int, default 32
        Texts per forward pass.
    max_length : int or None, default None
        Tokens per text at most (special tokens included); None: the model's window.
    revision : str or None, default None
        Hub revision (ignored for a folder).
    trust_remote_code : bool, default False
        Only for models whose code you trust.

    Attributes
    ----------
    stats_ : dict
        The base class's counts plus ``truncated`` (texts cut at the window; None when the tokenizer is not
        a fast one and cannot tell), ``precision`` and ``device``.

    Examples
    --------
    >>> emb = HFEmbedder("meta-llama/Llama-2-7b-hf", pooling="last", device="cuda", precision="bf16")  # doctest: +SKIP
    >>> emb.encode(["hello", "world"]).shape  # doctest: +SKIP
    (2, 4096)
    """

    block_size = 512

    def __init__(
        self,
        model: str,
        *,
        pooling: Literal["mean", "last", "cls"] = "mean",
        device: str = "cpu",
        precision: Literal["auto", "fp32", "bf16", "fp16"] | str = "auto",
        batch_size: int = 32,
        max_length: int | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        super().__init__()
        self.model_name = model
        self.name = f"hf:{model}" + (f":{pooling}" if pooling != "mean" else "")
        self.pooling = pooling
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.max_length = max_length
        self.revision = revision
        self.trust_remote_code = trust_remote_code
        self._source: hf.ModelSource | None = None
        self._config: Any = None
        self._tokenizer: Any = None
        self._model: Any = None
        self._precision: str | None = None
        self._truncated: int | None = 0
        self._show_progress: bool | None = None

    # -- checks and lazy resources ----------------------------------------------------------------
    def _check_params(self) -> None:
        if self.pooling not in POOLINGS:
            raise invalid_parameter("pooling", self.name, f"one of {list(POOLINGS)}", self.pooling)
        if self.precision not in PRECISIONS:
            raise invalid_parameter("precision", self.name, f"one of {list(PRECISIONS)}", self.precision)
        for name, value, allow_none in (("batch_size", self.batch_size, False), ("max_length", self.max_length, True)):
            if value is None and allow_none:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name == "batch_size" else 2):
                expected = f"{'None or ' if allow_none else ''}an int >= {1 if name == 'batch_size' else 2}"
                raise invalid_parameter(name, self.name, expected, value)

    def _purpose(self, what: str) -> str:
        return f"the {self.name} encoder's {what}"

    @property
    def source(self) -> hf.ModelSource:
        if self._source is None:
            self._check_params()
            self._source = hf.resolve(self.model_name, revision=self.revision, purpose=self._purpose("model"))
        return self._source

    @property
    def config(self) -> Any:
        if self._config is None:
            self._config = hf.load_config(self.source, trust_remote_code=self.trust_remote_code,
                                          purpose=self._purpose("config"))  # fmt: skip
        return self._config

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            with hf.library_output(self._show_progress):
                self._tokenizer = hf.load_tokenizer(self.source, trust_remote_code=self.trust_remote_code,
                                                    purpose=self._purpose("tokenizer"))  # fmt: skip
        return self._tokenizer

    @property
    def model(self) -> Any:
        """The network whose last hidden states are pooled (an encoder-decoder's encoder), in eval mode."""
        if self._model is None:
            with hf.library_output(self._show_progress):
                model = hf.load_model("AutoModel", self.source, trust_remote_code=self.trust_remote_code,
                                      device=self.device, precision=self.resolved_precision,
                                      purpose=self._purpose("weights"))  # fmt: skip
            if getattr(model.config, "use_cache", None):
                model.config.use_cache = False  # one forward pass per batch: no key/value cache to build
            if getattr(self.config, "is_encoder_decoder", False):
                model = model.get_encoder()
            self._model = model
        return self._model

    @property
    def resolved_precision(self) -> str:
        """``precision`` with ``auto`` decided for the device; checked against what the device supports."""
        if self._precision is None:
            self._check_params()
            torch = require("torch", purpose=f"the {self.name} encoder")
            on_cuda = str(self.device).startswith("cuda")
            bf16_ok = on_cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            precision = resolve_precision(self.precision, str(self.device))
            if precision == "bf16" and on_cuda and torch.cuda.is_available() and not bf16_ok:
                raise InvalidParameterError(
                    f"The 'precision' parameter of {self.name}: the GPU {torch.cuda.get_device_name(self.device)} "
                    "does not support bf16. Use --precision fp16 or fp32."
                )
            self._precision = precision
        return self._precision

    # -- shape and identity -----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        cfg = self.config
        cfg = getattr(cfg, "text_config", None) or cfg
        size = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None)
        if not isinstance(size, int) or size < 1:
            raise InvalidParameterError(
                f"{self.name}: the model's config gives no hidden size (hidden_size / d_model), so the vector "
                "size is unknown. Use a model with a standard Hugging Face config."
            )
        return size

    @property
    def window(self) -> int:
        """Tokens per text at most (see the module docstring)."""
        self._check_params()
        if self.max_length is not None:
            return self.max_length
        limits = []
        tok_limit = getattr(self.tokenizer, "model_max_length", None)
        if isinstance(tok_limit, int) and 1 < tok_limit < 10**7:  # huge values mean "not set"
            limits.append(tok_limit)
        positions = getattr(getattr(self.config, "text_config", None) or self.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 1:
            limits.append(positions)
        if not limits:
            logger.warning("%s: neither the tokenizer nor the config gives a window; cutting texts at %d tokens "
                           "(set max_length to change it)", self.name, FALLBACK_WINDOW)  # fmt: skip
            return FALLBACK_WINDOW
        return min(limits)

    def identity(self) -> dict[str, Any]:
        source = self.source
        if source.local:
            model: dict[str, Any] = {"model": self.model_name, "files": hf.fingerprint(Path(source.location))}
        else:
            model = {"model": self.model_name, "revision": getattr(self.config, "_commit_hash", None)}
        return {
            "class": type(self).__name__, **model, "pooling": self.pooling, "precision": self.resolved_precision,
            "window": self.window, "dim": self.dim, "special_tokens": True, "padding": "right-v1",
        }  # fmt: skip

    # -- encoding ---------------------------------------------------------------------------------
    def encode(self, texts: Any, *, show_progress: bool | None = None, **kwargs: Any) -> np.ndarray:
        self._show_progress = show_progress  # the model loads inside (on a cache miss): its bars follow this
        self._truncated = 0
        out = super().encode(texts, show_progress=show_progress, **kwargs)
        self.stats_.update(truncated=self._truncated, precision=self.resolved_precision, device=str(self.device))
        return out

    def text_weights(self, texts: Any) -> np.ndarray:
        """Tokens each text is encoded from (cut at the window, special tokens included; 0 for a blank text)."""
        texts = list(texts)
        full = [i for i, t in enumerate(texts) if t.strip()]
        weights = np.zeros(len(texts), dtype=np.float64)
        if full:
            truncated = self._truncated
            ids = self._tokenize([LONE_SURROGATE.sub("\ufffd", texts[i]) for i in full])
            self._truncated = truncated  # counting, not encoding
            weights[full] = [len(x) for x in ids]
        return weights

    def embed_batch(self, texts: list[str]) -> np.ndarray:
        ids = self._tokenize([LONE_SURROGATE.sub("\ufffd", t) for t in texts])
        torch = require("torch", purpose=f"the {self.name} encoder")
        model = self.model
        device = next(model.parameters()).device
        pad = self._pad_id()
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: a batch too big for memory fails at once
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for lo in range(0, len(order), self.batch_size):
                idx = order[lo : lo + self.batch_size]
                width = int(lengths[idx].max())
                input_ids = torch.full((len(idx), width), pad, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):  # right padding (see the module docstring)
                    input_ids[row, : lengths[i]] = torch.as_tensor(ids[i], dtype=torch.long)
                    mask[row, : lengths[i]] = 1
                hidden = _last_hidden(model(input_ids=input_ids.to(device), attention_mask=mask.to(device)))
                out[idx] = pool(hidden.float(), mask.to(hidden.device), self.pooling).cpu().numpy()
        return l2_normalize(out)

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text, cut at :attr:`window` (special tokens kept); counts the texts cut."""
        tok, window = self.tokenizer, self.window
        if not getattr(tok, "is_fast", False):
            self._truncated = None
            return list(tok(texts, add_special_tokens=True, truncation=True, max_length=window)["input_ids"])
        enc = tok(texts, add_special_tokens=True, truncation=True, max_length=window, return_overflowing_tokens=True,
                  return_attention_mask=False)  # fmt: skip
        owner = np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64)
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])  # each text's first window
        if self._truncated is not None:  # texts with more than one window
            self._truncated += int(np.count_nonzero(np.diff(np.r_[first, len(owner)]) > 1))
        return [enc["input_ids"][i] for i in first]

    def _pad_id(self) -> int:
        """Any token id: pads sit right of the real tokens and are masked, so their value never matters."""
        tok = self.tokenizer
        for value in (tok.pad_token_id, tok.eos_token_id, 0):
            if isinstance(value, int):
                return value
        return 0  # pragma: no cover


def _last_hidden(output: Any) -> Any:
    hidden = getattr(output, "last_hidden_state", None)
    return hidden if hidden is not None else output[0]


def pool(hidden: Any, mask: Any, pooling: str) -> Any:
    """Pooled rows of a right- or left-padded batch.

    Parameters
    ----------
    hidden : tensor of shape (batch, length, d), float
    mask : tensor of shape (batch, length), 1 on real tokens, 0 on pads
    pooling : {"mean", "last", "cls"}

    Returns
    -------
    pooled : tensor of shape (batch, d)
    """
    if pooling == "mean":
        m = mask.to(hidden.dtype).unsqueeze(-1)
        return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    rows = range(hidden.shape[0])
    if pooling == "last":  # the last position whose mask is 1
        at = mask.shape[1] - 1 - mask.flip(dims=[1]).argmax(dim=1)
    else:  # "cls": the first position whose mask is 1
        at = mask.argmax(dim=1)
    return hidden[list(rows), at]
