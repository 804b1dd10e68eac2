"""Reward-model scorer: ``reward:MODEL``, a sequence-classification model with one scalar output.

The whole conversation (system, user and assistant turns) is rendered with the model's chat template
(the Tulu fallback of :mod:`kmq.scorers._lm` when it has none) and tokenized without adding special
tokens, as ``apply_chat_template(tokenize=True)`` does. Quality is the raw scalar logit, read at the last
token (higher = better), as the paper's FsfairX-LLaMA3-RM usage does (paper.md §3.3). Inputs longer than
``max_length`` tokens keep their last ``max_length`` tokens, so the reward still reads the end of the
response (counted and logged).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from kmq._deps import require
from kmq.errors import InvalidParameterError
from kmq.scorers._blocks import cached_rows, length_batches
from kmq.scorers._lm import Conversation, HFModelScorer

logger = logging.getLogger(__name__)


class RewardScorer(HFModelScorer):
    """Quality = the reward model's scalar output for the rendered conversation.

    Parameters
    ----------
    model : str
        Hub name or local folder of a ``...ForSequenceClassification`` model with ``num_labels == 1``.
    **kwargs
        ``device``, ``precision``, ``batch_size``, ``max_length``, ``trust_remote_code``, ``show_progress``
        (see :class:`kmq.scorers._lm.HFModelScorer`).

    Examples
    --------
    >>> rm = RewardScorer("sfairXC/FsfairX-LLaMA3-RM-v0.1", device="cuda", precision="bf16")  # doctest: +SKIP
    >>> conv = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    >>> rm.score_messages([conv])  # doctest: +SKIP
    array([...])
    """

    kind = "reward"
    auto_class = "AutoModelForSequenceClassification"

    def _check_config(self, config: Any) -> None:
        labels = getattr(config, "num_labels", None)
        if labels != 1:
            raise InvalidParameterError(
                f"{self.name} is not a scalar reward model: its config has num_labels={labels}, expected 1. "
                "Pass a Bradley-Terry reward model (e.g. sfairXC/FsfairX-LLaMA3-RM-v0.1)."
            )

    @property
    def model(self) -> Any:
        model = super().model
        if getattr(model.config, "pad_token_id", None) is None:  # batching needs one; pooling is checked below
            tok = self.tokenizer
            model.config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return model

    def score_messages(self, conversations: list[Conversation]) -> np.ndarray:
        """Reward of each conversation.

        Returns
        -------
        reward : ndarray of shape (len(conversations),), float64
        """
        start = time.perf_counter()
        self._check_config(self.config)
        tok = self.tokenizer
        texts = [tok.apply_chat_template(conv, tokenize=False) for conv in conversations]
        rows, stats = cached_rows(
            texts, self.compute_block, store_key=self.store_key("reward-v1"), dim=2, block_size=self.block_size,
            show_progress=self.show_progress, desc="reward", mapper=self.mapper,
        )  # fmt: skip
        truncated = int(rows[:, 1].sum())
        if truncated:
            logger.warning("%s: %d of %d conversations are longer than %d tokens; their start was cut",
                           self.name, truncated, len(rows), self.max_tokens)  # fmt: skip
        self.stats_ = {
            "scorer": self.name,
            "examples": len(rows),
            "truncated": truncated,
            "cached": stats["cached"],
            "computed": stats["computed"],
            "template": self.template_source_,
            "seconds": round(time.perf_counter() - start, 3),
        }
        return rows[:, 0].copy()

    def compute_block(self, texts: list[str]) -> np.ndarray:
        """``[reward, truncated]`` of each rendered conversation, shape (len(texts), 2), float64."""
        torch = require("torch", purpose=f"the {self.name} scorer")
        model, limit = self.model, self.max_tokens
        encoded = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        cut = np.asarray([len(ids) > limit for ids in encoded], dtype=np.float64)
        seqs = [ids[-limit:] for ids in encoded]
        pad = int(model.config.pad_token_id)
        out = np.zeros(len(seqs), dtype=np.float64)
        alone = []  # sequences ending in the pad id: the model's own pooling would skip their last token
        with torch.inference_mode():
            for batch in length_batches([len(s) for s in seqs], self.batch_size):
                alone += [i for i in batch if seqs[i][-1] == pad]
                batch = [i for i in batch if seqs[i][-1] != pad]
                if not batch:
                    continue
                width = max(len(seqs[i]) for i in batch)
                ids = torch.full((len(batch), width), pad, dtype=torch.long)
                attn = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                    attn[row, : len(seqs[i])] = 1
                logits = model(input_ids=ids.to(model.device), attention_mask=attn.to(model.device)).logits
                out[batch] = logits[:, 0].double().cpu().numpy()
            for i in alone:  # one at a time, no padding, pooling at the last position
                model.config.pad_token_id = None
                try:
                    ids = torch.tensor([seqs[i]], device=model.device)
                    out[i] = float(model(input_ids=ids).logits[0, 0])
                finally:
                    model.config.pad_token_id = pad
        return np.column_stack([out, cut])
