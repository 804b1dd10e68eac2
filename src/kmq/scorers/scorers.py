"""Scorer specs -> scorer objects (``--scorer``), and the offline heuristic scorer class.

Specs (higher quality = better for selection in every case):

- ``heuristic``: offline default, see :mod:`kmq.scorers.heuristic`;
- ``column:FIELD``: a numeric field of the data;
- ``relevance``: cosine of the prompt's and the response's embeddings (:mod:`kmq.scorers.relevance`; offline,
  no LLM; it rates how on-topic an answer is, not whether it is right);
- ``perplexity:MODEL``: −mean NLL of the assistant turns given their context (:mod:`kmq.scorers.perplexity`);
- ``ifd:MODEL``: Cherry LLM's instruction-following difficulty, high IFD first, IFD >= 1 last;
- ``reward:MODEL``: a scalar reward model's output (:mod:`kmq.scorers.reward`);
- ``deita:COMPLEXITY_MODEL,QUALITY_MODEL``: Deita evol score, Σ complexity × quality (:mod:`kmq.scorers.deita`);
- ``judge:MODEL@URL``: an LLM judge's MT-Bench 1-10 rating over an OpenAI-compatible endpoint
  (:mod:`kmq.scorers.judge`).

MODEL is a Hugging Face hub name or a local folder.
"""

from __future__ import annotations

import re
import time
from typing import Any

import numpy as np

from kmq.errors import InvalidParameterError
from kmq.scorers.base import Scorer
from kmq.scorers.column import ColumnScorer

SPECS = (
    "heuristic",
    "column:FIELD",
    "relevance",
    "perplexity:MODEL",
    "ifd:MODEL",
    "reward:MODEL",
    "deita:COMPLEXITY_MODEL,QUALITY_MODEL",
    "judge:MODEL@URL",
)
MODEL_OPTIONS = ("device", "precision", "batch_size", "max_length", "trust_remote_code", "revision")
JUDGE_OPTIONS = (
    "concurrency", "max_retries", "timeout", "api_key_env", "on_unparsable", "temperature", "max_tokens",
)  # fmt: skip


class HeuristicScorer(Scorer):
    """The offline quality heuristic over a pool's prompt and response views.

    Parameters
    ----------
    embedder : Embedder or None
        Encoder for prompt–response relevance. Pass the clustering encoder: every text is embedded
        once and cached, so prompts embedded for ``--embed-on prompt`` are reused. None drops the
        relevance signal.
    show_progress : bool or None

    Attributes
    ----------
    features_ : dict of str to ndarray of shape (n,), float64
        The last :meth:`score` call's per-record features (:func:`~kmq.scorers.heuristic.heuristic_features`), in
        the formula's order (:data:`~kmq.scorers.heuristic.FEATURE_NAMES`); ``relevance``, ``focus`` and
        ``off_topic`` only with an embedder. ``kmq score --explain`` writes them as columns.
    """

    name = "heuristic"

    def __init__(self, embedder: Any = None, *, show_progress: bool | None = None) -> None:
        super().__init__()
        self.embedder = embedder
        self.show_progress = show_progress
        self.features_: dict[str, np.ndarray] = {}

    def identity(self) -> dict[str, Any]:
        from kmq.scorers import heuristic

        return {
            **super().identity(),
            "version": getattr(heuristic, "VERSION", 1),
            "encoder": self.embedder.key if self.embedder is not None else None,
        }

    def score(self, pool) -> np.ndarray:
        from kmq.scorers.heuristic import FEATURE_NAMES, combine_features, heuristic_features

        start = time.perf_counter()
        prompts, responses = pool.texts("prompt"), pool.texts("response")
        pv = rv = None
        if self.embedder is not None:
            pv = self.embedder.encode(prompts, show_progress=self.show_progress, desc="embedding prompts")
            rv = self.embedder.encode(responses, show_progress=self.show_progress, desc="embedding responses")
        features = heuristic_features(prompts, responses, pv, rv)
        scores, stats = combine_features(features)
        self.features_ = {name: features[name] for name in FEATURE_NAMES if name in features}
        self.stats_ = {
            "scorer": self.name,
            "relevance_encoder": self.embedder.name if self.embedder is not None else None,
            **stats,
            "seconds": round(time.perf_counter() - start, 3),
        }
        return scores


def get_scorer(spec: str, *, embedder: Any = None, show_progress: bool | None = None, **options: Any) -> Scorer:
    """Build the scorer a spec names; an unknown spec lists the valid ones.

    Parameters
    ----------
    spec : str
        One of :data:`SPECS` (see the module docstring).
    embedder : Embedder or None
        Relevance encoder of the ``heuristic`` and ``relevance`` scorers (``relevance`` without one uses
        the bundled MiniLM).
    show_progress : bool or None
    **options
        Model scorers: ``device``, ``precision``, ``batch_size``, ``max_length``, ``trust_remote_code``,
        ``revision``.
        ``judge:``: ``concurrency``, ``max_retries``, ``timeout``, ``api_key_env``, ``on_unparsable``,
        ``temperature``, ``max_tokens``. None values mean the scorer's default;
        options that do not apply to the spec are ignored, unknown names are an error.
    """
    unknown = sorted(set(options) - set(MODEL_OPTIONS) - set(JUDGE_OPTIONS))
    if unknown:
        raise InvalidParameterError(
            f"Unknown scorer option(s) {unknown}; valid: {sorted(MODEL_OPTIONS + JUDGE_OPTIONS)}."
        )
    kind, sep, arg = spec.partition(":")
    if spec == "heuristic":
        return HeuristicScorer(embedder, show_progress=show_progress)
    if kind == "column" and arg:
        return ColumnScorer(arg)
    if spec == "relevance":
        from kmq.scorers.relevance import RelevanceScorer

        return RelevanceScorer(embedder if embedder is not None else "minilm", show_progress=show_progress)
    if kind in ("perplexity", "ifd", "reward", "deita") and arg:
        kw = {k: v for k, v in options.items() if k in MODEL_OPTIONS and v is not None}
        return _model_scorer(kind, arg, show_progress=show_progress, **kw)
    if kind == "judge" and arg:
        from kmq.scorers.judge import JudgeScorer

        match = re.fullmatch(r"(.+?)@(https?://\S+)", arg)
        if match is None:
            raise InvalidParameterError(
                f"The 'scorer' spec judge:MODEL@URL needs a model and an http(s) base URL, e.g. "
                f"judge:Qwen/Qwen2.5-7B-Instruct@http://localhost:8000/v1. Got {spec!r} instead."
            )
        kw = {k: v for k, v in options.items() if k in JUDGE_OPTIONS and v is not None}
        return JudgeScorer(match[1], match[2], show_progress=show_progress, **kw)
    raise InvalidParameterError(f"The 'scorer' parameter must be one of {list(SPECS)}. Got {spec!r} instead.")


def _model_scorer(kind: str, arg: str, **kw: Any) -> Scorer:
    if kind == "perplexity":
        from kmq.scorers.perplexity import PerplexityScorer

        return PerplexityScorer(arg, **kw)
    if kind == "ifd":
        from kmq.scorers.perplexity import IFDScorer

        return IFDScorer(arg, **kw)
    if kind == "reward":
        from kmq.scorers.reward import RewardScorer

        return RewardScorer(arg, **kw)
    from kmq.scorers.deita import DeitaScorer

    models = [m.strip() for m in arg.split(",")]
    if len(models) != 2 or not all(models):
        raise InvalidParameterError(
            "The 'scorer' spec deita: needs two models, COMPLEXITY_MODEL,QUALITY_MODEL (e.g. "
            f"deita:hkust-nlp/deita-complexity-scorer,hkust-nlp/deita-quality-scorer). Got 'deita:{arg}' instead."
        )
    return DeitaScorer(models[0], models[1], **kw)
