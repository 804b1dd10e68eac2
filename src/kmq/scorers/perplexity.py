"""Perplexity and IFD (instruction-following difficulty) with any Hugging Face causal LM.

What is scored
--------------
The conversation is rendered with the model's chat template (:mod:`kmq.scorers._lm`; a documented Tulu
fallback when it has none). The loss is the mean token negative log-likelihood (nats) over the
**assistant turns only**, every assistant turn conditioned on everything before it; system and user
tokens are context, never scored. Each assistant turn's scored tokens are its content plus the template's
end-of-turn marker. (The authors' code scored prompt and padding tokens and crashed: paper.md §7 item 14.)

``loss(response)`` for IFD is the same response text (the assistant spans, concatenated) after only
``bos_token`` (nothing when the tokenizer has none): no prompt, no template. Then

- ``perplexity:MODEL``: quality = −meanNLL(response | prompt). Higher = the model finds the response
  more likely (lower perplexity).
- ``ifd:MODEL``: IFD = meanNLL(response | prompt) / meanNLL(response) (Cherry LLM, Li et al. 2024).
  Cherry LLM selects **high** IFD (the prompt helps little: a hard instruction) but drops IFD ≥ 1
  (the prompt does not help at all: misaligned pair). Quality is therefore IFD for IFD < 1, and
  1 − IFD (≤ 0, below every kept example, lower the more misaligned) for IFD ≥ 1.

The raw numbers stay available: :meth:`PerplexityScorer.mean_nll` (the paper's Eq. 7 is
``S = mean_nll(gold) − mean_nll(generated)``) and :meth:`IFDScorer.losses` / :meth:`IFDScorer.ifd`.

Inputs longer than ``max_length`` tokens keep their last ``max_length`` tokens: the start of the context is
dropped first, then the start of a response longer than the window (counted and logged).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np

from kmq._deps import require
from kmq.errors import DataFormatError
from kmq.scorers._blocks import cached_rows, length_batches
from kmq.scorers._lm import Conversation, HFModelScorer, encode_item, render_with_spans

logger = logging.getLogger(__name__)


def tokenize_masked(tokenizer: Any, text: str, spans: list[tuple[int, int]]) -> tuple[list[int], np.ndarray]:
    """Token ids of ``text`` (no special tokens added) and which of them fall in ``spans``.

    Returns
    -------
    ids : list of int
    scored : ndarray of shape (len(ids),), bool
    """
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        offsets = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)
        scored = np.zeros(len(offsets), dtype=bool)
        for s, e in spans:
            scored |= (offsets[:, 0] < e) & (offsets[:, 1] > s)
        return list(enc["input_ids"]), scored
    # slow tokenizers have no offsets: tokenize the scored and unscored pieces separately
    ids: list[int] = []
    flags: list[bool] = []
    cursor = 0
    for s, e in [*spans, (len(text), len(text))]:
        for piece, flag in ((text[cursor:s], False), (text[s:e], True)):
            if piece:
                part = tokenizer(piece, add_special_tokens=False)["input_ids"]
                ids += part
                flags += [flag] * len(part)
        cursor = e
    return ids, np.asarray(flags, dtype=bool)


def token_nll(model: Any, seqs: list[tuple[list[int], np.ndarray]], *, batch_size: int, pad_id: int) -> np.ndarray:
    """Summed NLL and count of the scored tokens of each sequence, batched by length with right padding.

    Token ``t`` is scored when ``scored[t]`` and ``t >= 1`` (it is predicted from tokens ``< t``). Right
    padding needs no attention mask in a causal LM: a real token never attends to the pads after it and
    position ids start at 0 in every row, so each row's logits equal its unpadded forward pass (and the
    attention kernels keep their fast causal path).

    Returns
    -------
    out : ndarray of shape (len(seqs), 2), float64
        ``[sum of NLL in nats, number of scored tokens]`` per sequence.
    """
    torch = require("torch", purpose="perplexity scoring")
    out = np.zeros((len(seqs), 2), dtype=np.float64)
    for batch in length_batches([len(ids) for ids, _ in seqs], batch_size):
        width = max(len(seqs[i][0]) for i in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        target = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, i in enumerate(batch):
            tok, scored = seqs[i]
            ids[row, : len(tok)] = torch.tensor(tok, dtype=torch.long)
            target[row, 1 : len(tok)] = torch.from_numpy(scored[1:])
        keep = torch.zeros_like(target)
        keep[:, :-1] = target[:, 1:]  # logits at t-1 predict token t
        logits = _logits_at(model, ids.to(model.device), keep.to(model.device))
        gold = ids[:, 1:][target[:, 1:]].to(model.device)
        nll = _cross_entropy(logits, gold)
        rows = torch.arange(len(batch)).unsqueeze(1).expand_as(keep)[keep]
        sums = torch.zeros(len(batch), dtype=torch.float64).index_add_(0, rows, nll.double().cpu())
        out[batch, 0] = sums.numpy()
        out[batch, 1] = target.sum(1).numpy()
    return out


#: float32 logits materialised at once by :func:`_cross_entropy` (2**28 floats = 1 GiB)
CE_CHUNK_FLOATS = 2**28


def _cross_entropy(logits: Any, gold: Any) -> Any:
    """Per-position NLL in float32, upcasting ``CE_CHUNK_FLOATS`` logits at a time.

    A bf16 model's kept logits can already be gigabytes (8 sequences x 2,048 response tokens x a 152k
    vocabulary is 5 GB); upcasting them all at once would double that.
    """
    torch = require("torch", purpose="perplexity scoring")
    rows = max(1, CE_CHUNK_FLOATS // max(1, logits.shape[-1]))
    if logits.shape[0] <= rows:
        return torch.nn.functional.cross_entropy(logits.float(), gold, reduction="none")
    return torch.cat(
        [
            torch.nn.functional.cross_entropy(logits[s : s + rows].float(), gold[s : s + rows], reduction="none")
            for s in range(0, logits.shape[0], rows)
        ]
    )


def _logits_at(model: Any, ids: Any, keep: Any) -> Any:
    """Logits of the positions where ``keep`` (bool, batch x length) is True, flattened row by row.

    ``ids`` is right-padded and passed without an attention mask (see :func:`token_nll`).
    """
    torch = require("torch", purpose="perplexity scoring")
    with torch.inference_mode():
        if getattr(model, "_kmq_keep_mask", True):  # project only the kept positions onto the vocabulary
            try:
                logits = model(input_ids=ids, logits_to_keep=keep).logits
                if logits.dim() == 2 and logits.shape[0] == int(keep.sum()):
                    return logits
            except (TypeError, IndexError, ValueError):  # an older transformers or a custom forward
                pass
            model._kmq_keep_mask = False
        return model(input_ids=ids).logits[keep]


class PerplexityScorer(HFModelScorer):
    """Quality = −mean NLL of the assistant turns given their context, with a causal LM.

    Parameters
    ----------
    model : str
        Hub name or local folder of a causal LM.
    **kwargs
        ``device``, ``precision``, ``batch_size``, ``max_length``, ``trust_remote_code``, ``show_progress``
        (see :class:`kmq.scorers._lm.HFModelScorer`).

    Attributes
    ----------
    stats_ : dict
        ``examples``, ``scored_tokens``, ``truncated``, ``cached``, ``computed``, ``template``, ``seconds``.
    template_source_ : {"model", "fallback"}
        Whether the model's own chat template was used.

    Examples
    --------
    >>> scorer = PerplexityScorer("Qwen/Qwen2.5-0.5B-Instruct", device="cuda", batch_size=16)  # doctest: +SKIP
    >>> conv = [{"role": "user", "content": "Add 2 and 3."}, {"role": "assistant", "content": "5"}]
    >>> scorer.mean_nll([conv]), scorer.score_messages([conv])  # doctest: +SKIP
    (array([1.93...]), array([-1.93...]))
    """

    kind = "perplexity"

    def _nll(self, items: list[tuple[str, list[tuple[int, int]]]], desc: str) -> tuple[np.ndarray, dict[str, Any]]:
        """``[sum NLL, scored tokens, truncated]`` per (text, spans) item, cached per item."""
        inputs = [encode_item(text, spans) for text, spans in items]
        return cached_rows(
            inputs, self.compute_block, store_key=self.store_key("causal-lm-nll-v1"), dim=3,
            block_size=self.block_size, show_progress=self.show_progress, desc=desc, mapper=self.mapper,
        )  # fmt: skip

    def compute_block(self, block: list[str]) -> np.ndarray:
        """``[sum NLL, scored tokens, truncated]`` of each :func:`~kmq.scorers._lm.encode_item` input, (len, 3)."""
        tok, limit = self.tokenizer, self.max_tokens
        seqs, cut = [], []
        for text, spans in (json.loads(x) for x in block):
            ids, scored = tokenize_masked(tok, text, spans)
            cut.append(len(ids) > limit)
            seqs.append((ids[-limit:], scored[-limit:]))
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        nll = token_nll(self.model, seqs, batch_size=self.batch_size, pad_id=pad)
        return np.column_stack([nll, np.asarray(cut, dtype=np.float64)])

    def _conditional(self, conversations: list[Conversation]) -> list[tuple[str, list[tuple[int, int]]]]:
        return [render_with_spans(self.tokenizer, conv) for conv in conversations]

    def _mean(self, rows: np.ndarray, what: str) -> np.ndarray:
        empty = np.flatnonzero(rows[:, 1] == 0)
        if len(empty):
            raise DataFormatError(
                f"{self.name}: {len(empty)} conversation(s) have no {what} token to score (first at positions "
                f"{empty[:5].tolist()}): no assistant turn, or the prompt fills max_length={self.max_tokens}."
            )
        if rows[:, 2].any():
            logger.warning(
                "%s: %d of %d inputs are longer than %d tokens; only their last %d tokens were used",
                self.name, int(rows[:, 2].sum()), len(rows), self.max_tokens, self.max_tokens,
            )  # fmt: skip
        return rows[:, 0] / rows[:, 1]

    def mean_nll(self, conversations: list[Conversation]) -> np.ndarray:
        """Mean NLL (nats per token) of the assistant turns given their context.

        Returns
        -------
        nll : ndarray of shape (len(conversations),), float64
        """
        start = time.perf_counter()
        rows, stats = self._nll(self._conditional(conversations), "perplexity")
        nll = self._mean(rows, "response")
        self.stats_ = self._stats(rows, stats, start)
        return nll

    def _stats(self, rows: np.ndarray, stats: dict[str, Any], start: float) -> dict[str, Any]:
        return {
            "scorer": self.name,
            "examples": len(rows),
            "scored_tokens": int(rows[:, 1].sum()),
            "truncated": int(rows[:, 2].sum()),
            "cached": stats["cached"],
            "computed": stats["computed"],
            "template": self.template_source_,
            "seconds": round(time.perf_counter() - start, 3),
        }

    def score_messages(self, conversations: list[Conversation]) -> np.ndarray:
        """Quality = −:meth:`mean_nll` (higher = lower perplexity)."""
        return -self.mean_nll(conversations)


class IFDScorer(PerplexityScorer):
    """Quality from IFD = meanNLL(response | prompt) / meanNLL(response) (see the module docstring).

    The conditional losses share the cache with :class:`PerplexityScorer` on the same model.
    """

    kind = "ifd"

    def losses(self, conversations: list[Conversation]) -> tuple[np.ndarray, np.ndarray]:
        """Mean NLL of the response with and without its prompt.

        Returns
        -------
        conditional, unconditional : ndarray of shape (len(conversations),), float64
        """
        start = time.perf_counter()
        cond_items = self._conditional(conversations)
        bos = self.tokenizer.bos_token or ""
        uncond_items = [
            (bos + "".join(text[s:e] for s, e in spans), [(len(bos), len(bos) + sum(e - s for s, e in spans))])
            for text, spans in cond_items
        ]
        rows, stats = self._nll(cond_items + uncond_items, "ifd")
        n = len(conversations)
        cond, uncond = self._mean(rows[:n], "response"), self._mean(rows[n:], "response")
        self.stats_ = self._stats(rows[:n], stats, start)
        self.stats_["ifd_ge_1"] = int((cond >= uncond).sum())
        return cond, uncond

    def ifd(self, conversations: list[Conversation]) -> np.ndarray:
        """Raw IFD per conversation, shape (n,), float64."""
        cond, uncond = self.losses(conversations)
        return cond / uncond

    def score_messages(self, conversations: list[Conversation]) -> np.ndarray:
        """Quality = IFD where IFD < 1, else 1 − IFD (≤ 0): Cherry LLM's direction, misaligned pairs last."""
        ifd = self.ifd(conversations)
        return np.where(ifd < 1.0, ifd, 1.0 - ifd)
