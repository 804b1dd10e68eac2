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

With ``--engine ray`` (``engine``) the model judges (``perplexity``, ``perplexity:MODEL``, ``reward:MODEL``)
compute their cache misses on Ray actors and ``relevance`` its encoder's (:func:`kmq.engine.attach_scorer`,
:func:`kmq.engine.attach`: the same blocks, so exactly the local values). ``judge:MODEL@URL`` stays in this
process: its work is on the server, and the client only waits on HTTP with ``--judge-concurrency`` requests in
flight; Ray actors would add a process hop per block and multiply the requests in flight past the limit the
user set for the server, so it is not moved (the step's stats name the engine of a judge that ran on one: ``engine``).

``direction = −1`` for perplexity gives ``S = meanNLL(gold) − meanNLL(gen)``, the paper's Eq. 7 as printed
(see :mod:`kmq.loop.signal` for why this is the opposite of Eq. 4 applied to the perplexity quality score).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kmq.config import EmbedConfig, EngineConfig, ScoreConfig
from kmq.errors import InvalidParameterError
from kmq.redact import redact_url

JUDGES = ("relevance", "perplexity", "perplexity:MODEL", "reward:MODEL", "judge:MODEL@URL")
Conversation = list[dict[str, str]]
logger = logging.getLogger(__name__)


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
    engine : EngineConfig or engine, optional
        Where the model judges and the relevance encoder compute their cache misses (None: here); an engine
        object (:func:`kmq.engine.get_engine`) is taken as it is.
    """

    spec: str
    cfg: ScoreConfig
    embed: EmbedConfig
    show_progress: bool | None = None
    engine: EngineConfig | Any = None

    @property
    def engine_name(self) -> str:
        """The engine's name (``local`` without one)."""
        return getattr(self.engine, "engine", None) or getattr(self.engine, "name", None) or "local"

    @property
    def on_engine(self) -> bool:
        """Whether this judge's work moves to the engine (not ``judge:MODEL@URL``: an HTTP client stays here)."""
        return self.engine_name != "local" and not self.spec.startswith("judge:")

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
            if self.on_engine:
                from kmq.engine import attach

                enc = attach(enc, spec, e.encoder_options(), self.engine)
            return RelevanceScorer(enc, show_progress=self.show_progress)
        from kmq.scorers import get_scorer

        spec = f"perplexity:{round_model}" if uses_round_model(self.spec) else self.spec
        scorer = get_scorer(
            spec, show_progress=self.show_progress, device=c.device or e.device, precision=c.precision,
            batch_size=c.batch_size, max_length=c.max_length, trust_remote_code=c.trust_remote_code,
            revision=None if uses_round_model(self.spec) else c.revision,  # the round's model is a local folder
            concurrency=c.judge_concurrency, max_retries=c.judge_max_retries, timeout=c.judge_timeout,
            api_key_env=c.judge_api_key_env, on_unparsable=c.judge_unparsable,
        )  # fmt: skip
        if self.on_engine:
            from kmq.engine import attach_scorer

            scorer = attach_scorer(scorer, self.engine)
        return scorer

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
        if self.engine_name != "local" and not self.on_engine:
            logger.info("--engine %s: the %s judge calls its endpoint from this process (--judge-concurrency %d "
                        "requests in flight); its work is on the server", self.engine_name,
                        redact_url(self.spec), self.cfg.judge_concurrency)  # fmt: skip
        scorer = self.scorer(round_model)
        values = np.asarray(scorer.score_messages(list(gold) + list(generated)), dtype=np.float64)
        m = len(gold)
        stats = {**getattr(scorer, "stats_", {}), "judge": self.spec, "direction": self.direction}
        if self.on_engine:  # as the stages' stats: only where it is not this process
            stats["engine"] = self.engine_name
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
