"""Shared plumbing of the Hugging Face model scorers: lazy loading, identity, chat rendering with masks.

Chat rendering
--------------
A conversation is rendered with the tokenizer's own chat template. A tokenizer without one gets
:data:`FALLBACK_CHAT_TEMPLATE`, the Tulu format the paper's authors generate with (``<|user|>\\n...``,
``<|assistant|>\\n...`` + EOS; paper.md §3.4). Assistant spans are found by rendering prefixes: the span
of assistant turn *i* is what ``render(messages[:i + 1])`` adds to ``render(messages[:i],
add_generation_prompt=True)``, i.e. the turn's content plus the template's end-of-turn marker (what a
model trained on the template learns to produce). Templates whose prefixes are not prefixes of the full
rendering (some drop earlier reasoning) fall back to locating the turn's content in the text.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from kmq._deps import require
from kmq.cache import digest
from kmq.embed.base import progress_enabled
from kmq.embed.sentence import _fingerprint as fingerprint
from kmq.errors import DataFormatError, MissingArtifactError, invalid_parameter
from kmq.score.base import Scorer

logger = logging.getLogger(__name__)

#: Tulu chat format (``{{ bos_token }}`` first); used when a tokenizer has no chat template.
FALLBACK_CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}"
    "{% else %}{{ '<|assistant|>\\n' + message['content'] + (eos_token if eos_token else '') + '\\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
)
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
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
    auto_class = "AutoModelForCausalLM"
    #: inputs per persisted cache block
    block_size = 256

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
        self.template_source_: str | None = None

    # -- lazy resources -----------------------------------------------------------------------------
    def _source(self) -> str:
        local = os.path.expanduser(self.model_name)
        return local if os.path.isdir(local) else self.model_name

    def _load(self, what: str, loader: Any, **kwargs: Any) -> Any:
        source = self._source()
        if self.revision is not None:
            if os.path.isdir(source):
                if what == "config":  # once per model: the config loads first
                    logger.warning("%s is a local folder: revision %r is ignored", self.model_name, self.revision)
            else:
                kwargs["revision"] = self.revision
        try:
            return loader.from_pretrained(source, trust_remote_code=self.trust_remote_code, **kwargs)
        except OSError as err:
            hint = (
                " HF_HUB_OFFLINE is set: only models in the local cache load."
                if os.environ.get("HF_HUB_OFFLINE") == "1"
                else ""
            )
            raise MissingArtifactError(
                f"Cannot load the {what} of {self.name}: {err}.{hint} Pass a local folder or a hub name."
            ) from err

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            tf = require("transformers", purpose=f"the {self.name} scorer")
            tok = self._load("tokenizer", tf.AutoTokenizer)
            self.template_source_ = "model" if getattr(tok, "chat_template", None) else "fallback"
            if self.template_source_ == "fallback":
                logger.info("%s has no chat template: using kmq's Tulu fallback template", self.model_name)
                tok.chat_template = FALLBACK_CHAT_TEMPLATE
            self._tokenizer = tok
        return self._tokenizer

    @property
    def config(self) -> Any:
        if self._config is None:
            tf = require("transformers", purpose=f"the {self.name} scorer")
            self._config = self._load("config", tf.AutoConfig)
        return self._config

    def _check_config(self, config: Any) -> None:
        """Validate the model's config before its weights load (subclasses override)."""

    @property
    def model(self) -> Any:
        if self._model is None:
            if self.precision not in PRECISIONS:
                raise invalid_parameter("precision", type(self).__name__, f"one of {list(PRECISIONS)}", self.precision)
            torch = require("torch", purpose=f"the {self.name} scorer")
            tf = require("transformers", purpose=f"the {self.name} scorer")
            self._check_config(self.config)
            if not progress_enabled(self.show_progress):
                tf.utils.logging.disable_progress_bar()
            dtype = getattr(torch, PRECISIONS[self.precision])
            model = self._load("weights", getattr(tf, self.auto_class), dtype=dtype)
            self._model = model.to(self.device).eval()
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
        if os.path.isdir(source):
            return {"model": self.model_name, "files": fingerprint(Path(source))}
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
