"""Judges of iterative kMQ (``--judge``): a scorer that rates (prompt, gold) and (prompt, generated).

Every judge is a :class:`kmq.scorers.Scorer` with ``score_messages(conversations)``; the instance score is
``S = direction * (score(prompt ⊕ gold) − score(prompt ⊕ generated))`` (:func:`kmq.loop.signal.instance_scores`).

=======================  ===================================================================  =========
spec                     score                                                                direction
=======================  ===================================================================  =========
``relevance``            cosine of prompt and answer embeddings (``--embedder``; offline)      +1
``perplexity``           −meanNLL of the answer under the *current round's* model (Eq. 7)      −1
``perplexity:MODEL``     the same with a fixed model                                           −1
``reward:MODEL``         a reward model's scalar (the paper's best judge)                      +1
``judge:MODEL@URL``      an LLM judge's 1-10 rating (MT-Bench prompt; unparsable = unscored)   +1
=======================  ===================================================================  =========

``direction = −1`` for perplexity gives ``S = meanNLL(gold) − meanNLL(gen)``, the paper's Eq. 7 as printed
(see :mod:`kmq.loop.signal` for why this is the opposite of Eq. 4 applied to the perplexity quality score).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kmq.config import EmbedConfig, ScoreConfig
from kmq.errors import InvalidParameterError

JUDGES = ("relevance", "perplexity", "perplexity:MODEL", "reward:MODEL", "judge:MODEL@URL")
Conversation = list[dict[str, str]]


def check_judge(spec: str) -> None:
    """Raise :class:`InvalidParameterError` unless ``spec`` is one of :data:`JUDGES`."""
    kind, sep, arg = spec.partition(":")
    ok = spec in ("relevance", "perplexity") or (kind in ("perplexity", "reward", "judge") and sep and arg)
    if not ok:
        raise InvalidParameterError(f"The 'judge' parameter must be one of {list(JUDGES)}. Got {spec!r} instead.")


def uses_round_model(spec: str) -> bool:
    """True when the judge scores with the round's own checkpoint (bare ``perplexity``)."""
    return spec == "perplexity"


@dataclass
class Judge:
    """Scores gold and generated answers; see the module docstring.

    Parameters
    ----------
    spec : str
        One of :data:`JUDGES`.
    cfg : ScoreConfig
        Model options (device, precision, batch size, max length) and the LLM judge's options.
    embed : EmbedConfig
        The encoder of ``relevance`` (``embedder``; ``npy:`` falls back to the bundled MiniLM).
    """

    spec: str
    cfg: ScoreConfig
    embed: EmbedConfig
    show_progress: bool | None = None

    @property
    def direction(self) -> float:
        return -1.0 if self.spec.partition(":")[0] == "perplexity" else 1.0

    def scorer(self, round_model: str | None) -> Any:
        """The scorer for this round (a new one for ``perplexity``, whose model changes every round)."""
        check_judge(self.spec)
        c, e = self.cfg, self.embed
        if self.spec == "relevance":
            from kmq.embed import get_embedder, is_precomputed
            from kmq.scorers.relevance import RelevanceScorer

            spec = "minilm" if is_precomputed(e.embedder) else e.embedder
            enc = get_embedder(spec, **e.encoder_options())
            return RelevanceScorer(enc, show_progress=self.show_progress)
        from kmq.scorers import get_scorer

        spec = f"perplexity:{round_model}" if uses_round_model(self.spec) else self.spec
        return get_scorer(
            spec, show_progress=self.show_progress, device=c.device or e.device, precision=c.precision,
            batch_size=c.batch_size, max_length=c.max_length, trust_remote_code=c.trust_remote_code,
            revision=None if uses_round_model(self.spec) else c.revision,  # the round's model is a local folder
            concurrency=c.judge_concurrency, max_retries=c.judge_max_retries, timeout=c.judge_timeout,
            api_key_env=c.judge_api_key_env, on_unparsable=c.judge_unparsable,
        )  # fmt: skip

    def score_pairs(
        self, gold: list[Conversation], generated: list[Conversation], *, round_model: str | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Judge scores of the gold and generated conversations (one call, so batches are full).

        Returns
        -------
        gold_scores, generated_scores : ndarray of shape (m,), float64
            NaN where the judge gave no score (an unparsable LLM-judge answer with ``judge_unparsable=nan``).
        stats : dict
        """
        start = time.perf_counter()
        scorer = self.scorer(round_model)
        values = np.asarray(scorer.score_messages(list(gold) + list(generated)), dtype=np.float64)
        m = len(gold)
        stats = {**getattr(scorer, "stats_", {}), "judge": self.spec, "direction": self.direction}
        stats["seconds"] = round(time.perf_counter() - start, 3)
        return values[:m], values[m:], stats


def split_prompt(messages: Conversation) -> tuple[Conversation, str]:
    """The prompt (turns before the first assistant turn) and the gold answer (that turn; ``""`` if none).

    Like the authors' code, the loop answers and judges the first exchange of a multi-turn conversation.
    """
    for i, turn in enumerate(messages):
        if turn["role"] == "assistant":
            return [dict(t) for t in messages[:i]], turn["content"]
    return [dict(t) for t in messages], ""


def with_answer(prompt: Conversation, answer: str) -> Conversation:
    return [*prompt, {"role": "assistant", "content": answer}]
