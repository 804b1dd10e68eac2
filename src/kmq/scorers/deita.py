"""Deita scorers (Liu et al. 2023): ``deita:COMPLEXITY_MODEL,QUALITY_MODEL``.

The prompts are the published ones (hkust-nlp/deita ``src/deita/selection/scorer/llama_scorer.py``,
identical in ``mistral_scorer.py``), tokenized with the tokenizer's special tokens (BOS) as Deita's
``tokenizer.encode`` does. A score is the expectation of 1..6 under the softmax of the next-token logits
of the tokens "1".."6" after the prompt: a float in [1, 6]. (The authors' kMQ code cast it to int before
multiplying: paper.md §7 item 20; we never truncate.)

Turns pair each user message with the assistant message(s) after it, by role, not by position (the
authors' ``2*i`` indexing breaks when a system message comes first). System messages are not scored
(Deita's scorers were trained on instruction-response pairs without one). A last user message without a
reply is rated with an empty response, as Deita's pipeline does; an assistant message with no user before
it gets an empty instruction. Quality of a conversation = evol score = Σ_turns complexity × quality.
Prompts longer than ``max_length`` tokens keep their last tokens (the rating follows them; counted).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from kmq._deps import require
from kmq.errors import InvalidParameterError
from kmq.scorers._blocks import cached_rows, length_batches
from kmq.scorers._lm import Conversation, HFModelScorer
from kmq.scorers.base import Scorer

COMPLEXITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the complexity score of the following user query. \n"
    "##Query: {instruction}  \n##Complexity: "
)
QUALITY_TEMPLATE = (
    "You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
    "Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: "
)
SCORE_VALUES = np.arange(1.0, 7.0)


def deita_turns(messages: Conversation) -> list[tuple[str, str]]:
    """(instruction, response) pairs of a conversation, paired by role; system messages are skipped.

    Examples
    --------
    >>> deita_turns([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
    ...              {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}])
    [('Hi', 'Hello'), ('Bye', '')]
    """
    turns: list[list[Any]] = []
    for m in messages:
        if m["role"] == "user":
            turns.append([m["content"], None])
        elif m["role"] == "assistant":
            if not turns:
                turns.append(["", None])
            prev = turns[-1][1]
            turns[-1][1] = m["content"] if prev is None else f"{prev}\n\n{m['content']}"
    return [(inst, resp or "") for inst, resp in turns]


def digit_token_ids(tokenizer: Any) -> list[int]:
    """Token ids of "1".."6" as the next token (the bare digit, as Deita's id2score tables hold)."""
    ids = []
    for d in "123456":
        tid = tokenizer.convert_tokens_to_ids(d)
        if tid is None or tid == tokenizer.unk_token_id:
            tid = tokenizer(d, add_special_tokens=False)["input_ids"][-1]
        ids.append(int(tid))
    if len(set(ids)) != 6:
        raise InvalidParameterError(f"Cannot find six distinct tokens for the digits 1..6 in this tokenizer: {ids}.")
    return ids


def expected_score(digit_logits: np.ndarray) -> np.ndarray:
    """Expectation of 1..6 under the softmax of the logits of "1".."6".

    Parameters
    ----------
    digit_logits : ndarray of shape (n, 6)

    Returns
    -------
    score : ndarray of shape (n,), float64, in [1, 6]
    """
    z = np.asarray(digit_logits, dtype=np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ SCORE_VALUES


class DigitExpectationScorer(HFModelScorer):
    """One Deita scorer model: prompt -> expected 1..6 rating from the next-token logits."""

    kind = "deita-scorer"
    label = "Deita"

    def rate(self, prompts: list[str], desc: str) -> tuple[np.ndarray, dict[str, Any]]:
        """Expected rating of each prompt, cached per prompt; returns (scores (n,), stats)."""
        key = self.store_key("deita-digits-v1", digit_token_ids(self.tokenizer))
        rows, stats = cached_rows(prompts, self.compute_block, store_key=key, dim=2, block_size=self.block_size,
                                  show_progress=self.show_progress, desc=desc, mapper=self.mapper)  # fmt: skip
        return rows[:, 0].copy(), {**stats, "truncated": int(rows[:, 1].sum())}

    def compute_block(self, prompts: list[str]) -> np.ndarray:
        """``[expected rating, truncated]`` of each prompt, shape (len(prompts), 2), float64."""
        torch = require("torch", purpose=f"the {self.name} scorer")
        from kmq.scorers.perplexity import _logits_at

        tok, model, limit = self.tokenizer, self.model, self.max_tokens
        digits = digit_token_ids(tok)
        encoded = [tok(p)["input_ids"] for p in prompts]
        cut = np.asarray([len(ids) > limit for ids in encoded], dtype=np.float64)
        seqs = [ids[-limit:] for ids in encoded]  # keep the end: the rating follows "##Quality: "
        pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        out = np.zeros(len(seqs), dtype=np.float64)
        for batch in length_batches([len(s) for s in seqs], self.batch_size):
            width = max(len(seqs[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)  # right padding, no mask needed
            keep = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, i in enumerate(batch):
                ids[row, : len(seqs[i])] = torch.tensor(seqs[i])
                keep[row, len(seqs[i]) - 1] = True
            logits = _logits_at(model, ids.to(model.device), keep.to(model.device))
            out[batch] = expected_score(logits[:, digits].double().cpu().numpy())
        return np.column_stack([out, cut])


class DeitaScorer(Scorer):
    """Deita evol score: Σ over turns of complexity(instruction) × quality(instruction, response).

    Parameters
    ----------
    complexity_model, quality_model : str
        Hub names or local folders (Deita's are ``hkust-nlp/deita-complexity-scorer`` and
        ``hkust-nlp/deita-quality-scorer``).
    **kwargs
        ``device``, ``precision``, ``batch_size``, ``max_length``, ``trust_remote_code``, ``show_progress``.

    Attributes
    ----------
    complexity_, quality_ : list of ndarray
        Per-turn scores of the last call, one array per conversation.

    Examples
    --------
    >>> deita = DeitaScorer("hkust-nlp/deita-complexity-scorer", "hkust-nlp/deita-quality-scorer")  # doctest: +SKIP
    >>> conv = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    >>> deita.score_messages([conv])  # doctest: +SKIP
    array([...])
    """

    def __init__(self, complexity_model: str, quality_model: str, **kwargs: Any) -> None:
        super().__init__()
        self.name = f"deita:{complexity_model},{quality_model}"
        self.complexity = DigitExpectationScorer(complexity_model, **kwargs)
        self.quality = DigitExpectationScorer(quality_model, **kwargs)
        self.complexity_: list[np.ndarray] = []
        self.quality_: list[np.ndarray] = []

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "complexity": self.complexity.identity(), "quality": self.quality.identity()}

    def model_parts(self) -> list[HFModelScorer]:
        return [self.complexity, self.quality]

    def score_messages(self, conversations: list[Conversation]) -> np.ndarray:
        """Evol score per conversation, shape (n,), float64."""
        start = time.perf_counter()
        turns = [deita_turns(conv) for conv in conversations]
        flat = [t for conv in turns for t in conv]
        bounds = np.cumsum([0] + [len(conv) for conv in turns])
        c, cstats = self.complexity.rate([COMPLEXITY_TEMPLATE.format(instruction=i) for i, _ in flat], "complexity")
        q, qstats = self.quality.rate([QUALITY_TEMPLATE.format(instruction=i, output=r) for i, r in flat], "quality")
        self.complexity_ = [c[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self.quality_ = [q[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        evol = np.array([float(np.dot(ci, qi)) for ci, qi in zip(self.complexity_, self.quality_, strict=True)])
        self.stats_ = {
            "scorer": self.name,
            "examples": len(conversations),
            "turns": len(flat),
            "complexity": cstats,
            "quality": qstats,
            "seconds": round(time.perf_counter() - start, 3),
        }
        return evol

    def score(self, pool: Any) -> np.ndarray:
        return self.score_messages(pool.messages)
