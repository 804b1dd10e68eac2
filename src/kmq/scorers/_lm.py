"""Shared plumbing of the Hugging Face model scorers: lazy loading, identity, chat rendering with masks.

Loading goes through :mod:`kmq.hf` (local folder or hub name, revision, offline hint, one error form).

Chat rendering
--------------
A conversation is rendered with the tokenizer's own chat template. A tokenizer without one gets
:data:`kmq.hf.FALLBACK_CHAT_TEMPLATE`, the Tulu format the paper's authors generate with (``<|user|>\\n...``,
``<|assistant|>\\n...`` + EOS; paper.md §3.4). Assistant spans are found by rendering prefixes: the span
of assistant turn *i* is what ``render(messages[:i + 1])`` adds to ``render(messages[:i],
add_generation_prompt=True)``, i.e. the turn's content plus the template's end-of-turn marker (what a
model trained on the template learns to produce). Templates whose prefixes are not prefixes of the full
rendering (some drop earlier reasoning) fall back to locating the turn's content in the text.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from kmq import hf
from kmq._deps import require
from kmq.cache import digest
from kmq.embed.base import progress_enabled
from kmq.errors import DataFormatError
from kmq.hf import FALLBACK_CHAT_TEMPLATE, PRECISIONS  # noqa: F401  (re-exported: kmq.scorers._lm's names)
from kmq.scorers.base import Scorer

logger = logging.getLogger(__name__)

Conversation = list[dict[str, str]]


def render_with_spans(tokenizer: Any, messages: Conversation) -> tuple[str, list[tuple[int, int]]]:
    """Render a conversation with the tokenizer's chat template and locate every assistant turn.

    Returns
    -------
    text : str
        The whole conversation as the model sees it.
    spans : list of (start, end)
        Character spans of the assistant turns in ``text`` (content plus end-of-turn marker), in order.
    """
    from jinja2 import TemplateError

    full = tokenizer.apply_chat_template(messages, tokenize=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, turn in enumerate(messages):
        if turn["role"] != "assistant":
            continue
        try:
            pre = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True) if i else ""
            upto = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        except (TemplateError, ValueError, TypeError, IndexError, KeyError):
            pre = upto = None
        if pre is not None and full.startswith(upto) and upto.startswith(pre) and len(pre) >= cursor:
            start, end = len(pre), len(upto)
        else:  # the template rewrites earlier turns: find the content itself
            start = full.find(turn["content"], cursor)
            if start < 0:
                raise DataFormatError(
                    f"Cannot locate assistant turn {i} in the chat-template rendering; the template rewrites "
                    "message contents. Pass a model whose template keeps them."
                )
            end = start + len(turn["content"])
        spans.append((start, end))
        cursor = end
    return full, spans


def check_responses(conversations: list[Conversation], ids: list[str] | None, *, scorer: str) -> None:
    """Raise :class:`DataFormatError` if a conversation has no assistant turn (nothing to score)."""
    missing = [i for i, conv in enumerate(conversations) if not any(t["role"] == "assistant" for t in conv)]
    if missing:
        name = (lambda i: repr(ids[i])) if ids is not None else str
        raise DataFormatError(
            f"{scorer} rates responses, but {len(missing)} conversation(s) have no assistant turn (first: "
            f"{', '.join(name(i) for i in missing[:5])}). Drop instruction-only records first."
        )


class HFModelScorer(Scorer):
    """Base of scorers built on a Hugging Face model: lazy tokenizer/config/model, identity, pool scoring.

    Parameters
    ----------
    model : str
        Hub name or local folder.
    device : str, default "cpu"
        Torch device (``"cuda"``, ``"cuda:1"``, ``"mps"``).
    precision : {"fp32", "bf16", "fp16"}, default "fp32"
        Weights and compute dtype; part of the cache key.
    batch_size : int, default 8
        Sequences per forward pass (sorted by length, so little padding is computed).
    max_length : int, default 2048
        Longest input in tokens (capped by the model's position limit). Longer inputs keep their **last**
        ``max_length`` tokens (the start of the context goes first, so the response and the position a
        rating is read at survive); they are counted in ``stats_["truncated"]`` and logged as a warning.
    trust_remote_code : bool, default False
        Let the model repository run its own code. Off unless you pass it.
    revision : str or None, default None
        Hub revision (branch, tag or commit) to load; None is the repository's default branch. Ignored,
        with a warning, for a local folder.
    show_progress : bool or None
        Progress bar on stderr; None shows it when the ``kmq`` logger is at INFO or below.
    cache : bool, default True
        Read and write the per-example cache (``$KMQ_CACHE_DIR/scores/<key>``).
    """

    kind = "model"
    #: how errors name the scorer ("the <label> scorer's tokenizer"); None: ``kind``
    label: str | None = None
    auto_class = "AutoModelForCausalLM"
    #: inputs per persisted cache block
    block_size = 256
    #: the constructor's options that change where or how the model runs; :meth:`options` returns them
    OPTIONS = ("device", "precision", "batch_size", "max_length", "trust_remote_code", "revision")
    #: computes the blocks of cache misses elsewhere (:func:`kmq.engine.attach_scorer`); None: here, in turn
    mapper: Any = None

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 8,
        max_length: int = 2048,
        trust_remote_code: bool = False,
        revision: str | None = None,
        show_progress: bool | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__()
        self.model_name = model
        self.name = f"{self.kind}:{model}"
        self.device = device
        self.precision = precision
        self.batch_size = batch_size
        self.max_length = max_length
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self.show_progress = show_progress
        self.cache = cache
        self._tokenizer: Any = None
        self._config: Any = None
        self._model: Any = None
        self._resolved: tuple[tuple[str, str | None], hf.ModelSource] | None = None
        self.template_source_: str | None = None

    # -- lazy resources -----------------------------------------------------------------------------
    def _purpose(self, what: str) -> str:
        """What a load is for, as errors name it: "the perplexity scorer's tokenizer"."""
        return f"the {self.label or self.kind} scorer's {what}"

    def _source(self) -> hf.ModelSource:
        """Local folder or hub name, decided once per (model, revision): a folder's revision is warned about once."""
        key = (self.model_name, self.revision)
        if self._resolved is None or self._resolved[0] != key:
            self._resolved = (key, hf.resolve(self.model_name, revision=self.revision, purpose=self._purpose("model")))
        return self._resolved[1]

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            tok = hf.load_tokenizer(self._source(), trust_remote_code=self.trust_remote_code,
                                    purpose=self._purpose("tokenizer"))  # fmt: skip
            self._tokenizer = hf.chat_tokenizer(tok, name=self.model_name)
            self.template_source_ = hf.template_source(self._tokenizer)
        return self._tokenizer

    @property
    def config(self) -> Any:
        if self._config is None:
            self._config = hf.load_config(self._source(), trust_remote_code=self.trust_remote_code,
                                          purpose=self._purpose("config"))  # fmt: skip
        return self._config

    def _check_config(self, config: Any) -> None:
        """Validate the model's config before its weights load (subclasses override)."""

    @property
    def model(self) -> Any:
        if self._model is None:
            tf = require("transformers", purpose=f"the {self.name} scorer")
            self._check_config(self.config)
            if not progress_enabled(self.show_progress):
                tf.utils.logging.disable_progress_bar()
            self._model = hf.load_model(
                self.auto_class, self._source(), trust_remote_code=self.trust_remote_code, device=self.device,
                precision=self.precision, purpose=self._purpose("weights"),
            )  # fmt: skip
        return self._model

    @property
    def max_tokens(self) -> int:
        """``max_length`` capped by the model's position limit."""
        limit = getattr(self.config, "max_position_embeddings", None)
        return min(self.max_length, limit) if isinstance(limit, int) and limit > 0 else self.max_length

    # -- identity and scoring -------------------------------------------------------------------------
    def model_identity(self) -> dict[str, Any]:
        """Hub name and revision, or a local folder's file fingerprint."""
        source = self._source()
        if source.local:
            return {"model": self.model_name, "files": hf.fingerprint(Path(source.location))}
        ident = {"model": self.model_name, "revision": getattr(self.config, "_commit_hash", None)}  # commit loaded
        if self.revision is not None:  # only when pinned: caches keyed before the option stay valid
            ident["requested_revision"] = self.revision
        return ident

    def identity(self) -> dict[str, Any]:
        return {
            **super().identity(),
            **self.model_identity(),
            "precision": self.precision,
            "max_tokens": self.max_tokens,
            "template": digest(self.tokenizer.chat_template),
        }

    def store_key(self, kind: str, *extra: Any) -> str | None:
        """Cache folder of one computation kind for this model and every setting that changes its values.

        None when ``cache`` is off. The folder holds one float64 row per distinct model input, keyed by the
        digest of that exact input (rendered text and scored spans). Device and batch size are left out:
        they change values only at rounding level.
        """
        if not self.cache:
            return None
        return digest(kind, self.model_identity(), self.precision, self.max_tokens, *extra)

    def options(self) -> dict[str, Any]:
        """The keyword arguments that rebuild this scorer elsewhere (a Ray actor): ``type(self)(model, **options)``."""
        return {name: getattr(self, name) for name in self.OPTIONS}

    def model_parts(self) -> list[HFModelScorer]:
        return [self]

    def compute_block(self, block: list[str]) -> np.ndarray:
        """Values of one block of distinct model inputs (the cache's misses), shape (len(block), dim), float64.

        What :func:`~kmq.scorers._blocks.cached_rows` calls for every block, here or in an engine's actor.
        """
        raise NotImplementedError

    def score_messages(self, conversations: list[Conversation]) -> np.ndarray:
        """Score conversations that need not belong to any pool.

        Returns
        -------
        quality : ndarray of shape (len(conversations),), float64, higher is better
        """
        raise NotImplementedError

    def score(self, pool: Any) -> np.ndarray:
        check_responses(pool.messages, pool.ids, scorer=self.name)
        return self.score_messages(pool.messages)


def encode_item(text: str, spans: list[tuple[int, int]]) -> str:
    """One cache/compute input: the exact text and the spans to score, as JSON."""
    return json.dumps([text, spans], ensure_ascii=False)
