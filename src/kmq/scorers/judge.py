"""LLM-as-judge over an OpenAI-compatible chat endpoint: ``judge:MODEL@URL`` (vLLM, Ollama, TGI, OpenAI).

The prompt is MT-Bench's single-answer grading prompt, FastChat ``judge_prompts.jsonl`` "single-v1"
(system "You are a helpful assistant."; the judge explains, then rates 1-10 as ``[[rating]]``), sent with
temperature 0 and ``max_tokens=2048`` as FastChat does. The paper uses this template's 1-10 scale (paper.md
§3.3). The rating is the last ``[[n]]`` or ``[[n.5]]`` in the answer within [1, 10]; anything else is
*unparsable* and never silently scored: ``on_unparsable="error"`` (default) raises after every request has
finished (the parsed ratings stay cached, so a rerun asks only for the rest), ``"nan"`` returns NaN for them
(for callers that skip unscored rows, like the iterative loop), ``"min"`` fills the scale minimum 1.0 with a
warning. Either way ``stats_`` counts them and names them.

What is judged: the last assistant turn. Its question is the single user message before it, or, when
there is more context (a system message, earlier turns), a transcript of every turn before it in FastChat's
multi-turn style (``### User:\\n...\\n\\n### Assistant:\\n...``).

Requests go through :class:`kmq.endpoints.Endpoint` on ``concurrency`` threads: the openai SDK retries 429,
408/409, 5xx answers, timeouts and dropped connections up to ``max_retries`` times with backoff (honouring
``Retry-After``); other HTTP errors fail at once; a refused connection or an unknown host fails within a
second (tried twice), and the first failure cancels the requests not yet sent. The API key is read only
from the environment variable ``api_key_env``; it is never logged, never part of the cache key, the stats
or any manifest, and neither is a ``user:password@`` in the URL (the name, identity and messages show
``***@``; credentials do not change which server answers, so the cache key does not need them). Ratings
are cached per request (model, URL, prompt, sampling settings and the rendered judge messages).
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, Literal

import numpy as np

from kmq.cache import digest
from kmq.endpoints import Endpoint
from kmq.errors import InvalidParameterError, JudgeError
from kmq.redact import redact_url
from kmq.scorers._blocks import cached_rows
from kmq.scorers._lm import Conversation, check_responses
from kmq.scorers.base import Scorer

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a helpful assistant."
PROMPT_TEMPLATE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the "
    "helpfulness, relevance, accuracy, depth, creativity, and level of detail of the response. Begin your "
    "evaluation by providing a short explanation. Be as objective as possible. After providing your explanation, "
    'you must rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for '
    'example: "Rating: [[5]]".\n\n[Question]\n{question}\n\n[The Start of Assistant\'s Answer]\n{answer}\n'
    "[The End of Assistant's Answer]"
)
RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
UNPARSABLE = ("error", "nan", "min")


def parse_rating(text: str) -> float | None:
    """The last ``[[n]]`` rating in [1, 10], or None.

    Examples
    --------
    >>> parse_rating("Helpful and correct. Rating: [[8.5]]"), parse_rating("Rating: 8"), parse_rating("[[11]]")
    (8.5, None, None)
    """
    found = RATING.findall(text or "")
    if not found:
        return None
    value = float(found[-1])
    return value if 1.0 <= value <= 10.0 else None


def judge_messages(conversation: Conversation) -> list[dict[str, str]]:
    """The chat request that asks the judge to rate the conversation's last assistant turn."""
    last = max(i for i, t in enumerate(conversation) if t["role"] == "assistant")
    context, answer = conversation[:last], conversation[last]["content"]
    if len(context) == 1 and context[0]["role"] == "user":
        question = context[0]["content"]
    else:
        question = "\n\n".join(f"### {t['role'].title()}:\n{t['content']}" for t in context)
    prompt = PROMPT_TEMPLATE.format(question=question, answer=answer)
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


class JudgeScorer(Scorer):
    """Quality = an LLM judge's 1-10 rating of the last assistant turn (see the module docstring).

    Parameters
    ----------
    model : str
        Model name the endpoint serves.
    base_url : str
        OpenAI-compatible base URL, e.g. ``http://localhost:8000/v1`` (a ``user:password@`` in it is sent but
        never recorded).
    concurrency : int, default 8
        Requests in flight at most.
    max_retries : int, default 5
        Retries of a request after a retryable failure (the SDK's backoff; a refused connection gets one).
    timeout : float, default 120.0
        Seconds per request.
    api_key_env : str, default "OPENAI_API_KEY"
        Environment variable holding the API key; unset sends the placeholder ``EMPTY`` (local servers).
    on_unparsable : {"error", "nan", "min"}, default "error"
        ``"nan"`` makes :attr:`allows_missing` true: ``kmq score`` writes those records as missing.
    temperature : float, default 0.0
    max_tokens : int, default 2048
    show_progress : bool or None
    cache : bool, default True
        Read and write the per-request rating cache.

    Examples
    --------
    >>> judge = JudgeScorer("Qwen/Qwen2.5-72B-Instruct", "http://localhost:8000/v1", concurrency=32)  # doctest: +SKIP
    >>> conv = [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
    >>> judge.score_messages([conv])  # doctest: +SKIP
    array([9.])
    """

    #: requests per persisted cache block (at least 4 x concurrency)
    block_size = 64

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 120.0,
        api_key_env: str = "OPENAI_API_KEY",
        on_unparsable: Literal["error", "nan", "min"] = "error",
        temperature: float = 0.0,
        max_tokens: int = 2048,
        show_progress: bool | None = None,
        cache: bool = True,
    ) -> None:
        super().__init__()
        self.model_name = model
        self.base_url = base_url
        self.name = redact_url(f"judge:{model}@{base_url}")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.timeout = timeout
        self.api_key_env = api_key_env
        self.on_unparsable = on_unparsable
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.show_progress = show_progress
        self.cache = cache
        self._endpoint: Endpoint | None = None
        self._answers: dict[str, str] = {}
        self._lock = threading.Lock()

    @property
    def allows_missing(self) -> bool:
        """True with ``on_unparsable="nan"``: unparsable answers are scored NaN on purpose."""
        return self.on_unparsable == "nan"

    def identity(self) -> dict[str, Any]:
        return {
            **super().identity(),
            "model": self.model_name,
            "base_url": redact_url(self.base_url),
            "prompt": digest(SYSTEM_PROMPT, PROMPT_TEMPLATE),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "on_unparsable": self.on_unparsable,
        }

    @property
    def endpoint(self) -> Endpoint:
        """The endpoint all requests go through (built on first use)."""
        if self._endpoint is None:
            self._endpoint = Endpoint(
                self.base_url, label=self.name, error=JudgeError, api_key_env=self.api_key_env,
                max_retries=self.max_retries, timeout=self.timeout,
            )  # fmt: skip
        return self._endpoint

    def _check_params(self) -> None:
        if self.on_unparsable not in UNPARSABLE:
            raise InvalidParameterError(
                f"The 'on_unparsable' parameter of JudgeScorer must be one of {list(UNPARSABLE)}. "
                f"Got {self.on_unparsable!r} instead."
            )
        for name in ("concurrency", "max_retries"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (1 if name == "concurrency" else 0):
                raise InvalidParameterError(
                    f"The {name!r} parameter of JudgeScorer must be an int >= {1 if name == 'concurrency' else 0}. "
                    f"Got {value!r} instead."
                )

    # -- requests -------------------------------------------------------------------------------------
    def _rate_block(self, requests: list[str]) -> np.ndarray:
        endpoint = self.endpoint

        def one(request: str) -> float:
            answer = endpoint.chat(
                model=self.model_name, messages=json.loads(request), temperature=self.temperature,
                max_tokens=self.max_tokens,
            )  # fmt: skip
            rating = parse_rating(answer)
            if rating is None:
                with self._lock:
                    self._answers[request] = answer
                return float("nan")
            return rating

        return np.asarray(endpoint.map(one, requests, concurrency=self.concurrency), dtype=np.float64)

    # -- scoring --------------------------------------------------------------------------------------
    def score_messages(self, conversations: list[Conversation], ids: list[str] | None = None) -> np.ndarray:
        """Judge rating per conversation, shape (n,), float64 (see ``on_unparsable`` for failures)."""
        start = time.perf_counter()
        self._check_params()
        check_responses(conversations, ids, scorer=self.name)
        requests = [json.dumps(judge_messages(c), ensure_ascii=False) for c in conversations]
        self._answers = {}
        attempts = self.endpoint.attempts
        ident = self.identity()
        key = digest("judge-v1", *(ident[k] for k in ("model", "base_url", "prompt", "temperature", "max_tokens")))
        rows, stats = cached_rows(
            requests,
            self._rate_block,
            store_key=key if self.cache else None,
            dim=1,
            block_size=max(self.block_size, 4 * self.concurrency),
            show_progress=self.show_progress,
            desc="judging",
        )
        ratings = rows[:, 0].copy()
        bad = np.flatnonzero(np.isnan(ratings))
        names = [ids[i] if ids is not None else int(i) for i in bad]
        self.stats_ = {
            "scorer": self.name,
            "examples": len(ratings),
            "cached": stats["cached"],
            "requested": stats["computed"],
            "http_attempts": self.endpoint.attempts - attempts,
            "unparsable": len(bad),
            "unparsable_examples": names[:20],
            "on_unparsable": self.on_unparsable,
            "seconds": round(time.perf_counter() - start, 3),
        }
        if len(bad):
            sample = self._answers.get(requests[bad[0]], "")[:200]
            msg = (f"{self.name}: {len(bad)} of {len(ratings)} answers have no [[rating]] in 1-10 (first: "
                   f"{names[:5]}; answer starts {sample!r}).")  # fmt: skip
            if self.on_unparsable == "error":
                raise JudgeError(f"{msg} The parsed ratings are cached; rerun to retry the rest, or pass "
                                 "--judge-unparsable nan|min.")  # fmt: skip
            logger.warning("%s Scoring them %s.", msg, "NaN" if self.on_unparsable == "nan" else "1.0 (the minimum)")
            if self.on_unparsable == "min":
                ratings[bad] = 1.0
        return ratings

    def score(self, pool: Any) -> np.ndarray:
        return self.score_messages(pool.messages, pool.ids)
