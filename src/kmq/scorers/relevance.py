"""Offline prompt–response relevance: the cosine of the prompt's and the response's embeddings.

``relevance`` needs no LLM: it embeds the prompt view (system and user turns) and the response view
(assistant turns) of each conversation with a sentence encoder (the bundled MiniLM by default) and returns
their cosine, in [-1, 1]. An empty response scores 0. It is the cheap judge of ``kmq iterate --judge
relevance``: it rates how on-topic an answer is, not whether it is right.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from kmq.scorers.base import Scorer

Conversation = list[dict[str, str]]


def _views(conversation: Conversation) -> tuple[str, str]:
    prompt = "\n\n".join(t["content"] for t in conversation if t["role"] in ("system", "user"))
    response = "\n\n".join(t["content"] for t in conversation if t["role"] == "assistant")
    return prompt, response


class RelevanceScorer(Scorer):
    """Quality = cosine(embed(prompt), embed(response)).

    Parameters
    ----------
    embedder : Embedder or str, default "minilm"
        An :class:`kmq.embed.Embedder` or a spec for :func:`kmq.embed.get_embedder` (built on first use).
    show_progress : bool or None
        Progress bars on stderr; None shows them when the ``kmq`` logger is at INFO or below.

    Examples
    --------
    >>> scorer = RelevanceScorer("hashing")
    >>> conv = [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "A fruit: apple."}]
    >>> float(scorer.score_messages([conv])[0]) > 0
    True
    """

    name = "relevance"

    def __init__(self, embedder: Any = "minilm", *, show_progress: bool | None = None) -> None:
        super().__init__()
        self._embedder = embedder
        self.show_progress = show_progress

    @property
    def embedder(self) -> Any:
        if isinstance(self._embedder, str):
            from kmq.embed import get_embedder

            self._embedder = get_embedder(self._embedder)
        return self._embedder

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "encoder": self.embedder.key}

    def score_messages(self, conversations: list[Conversation]) -> np.ndarray:
        """Relevance of each conversation's response to its prompt.

        Returns
        -------
        relevance : ndarray of shape (len(conversations),), float64, in [-1, 1]
        """
        start = time.perf_counter()
        views = [_views(c) for c in conversations]
        emb = self.embedder
        pv = emb.encode([p for p, _ in views], show_progress=self.show_progress, desc="embedding prompts")
        rv = emb.encode([r for _, r in views], show_progress=self.show_progress, desc="embedding responses")
        rel = np.einsum("ij,ij->i", pv.astype(np.float64), rv.astype(np.float64))
        self.stats_ = {
            "scorer": self.name,
            "encoder": emb.name,
            "examples": len(conversations),
            "empty_responses": sum(not r.strip() for _, r in views),
            "seconds": round(time.perf_counter() - start, 3),
        }
        return np.clip(rel, -1.0, 1.0)

    def score(self, pool: Any) -> np.ndarray:
        return self.score_messages(pool.messages)
