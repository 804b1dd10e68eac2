"""The offline ``heuristic`` quality scorer: a few cheap, documented signals, no LLM and no learned weights.

``score = 0.25 * log_length + 0.75 * log_vocab + 0.5 * focus - OFF_TOPIC_WEIGHT * off_topic - penalties``

Features (float64, one value per example; see :func:`heuristic_features`):

``log_length``
    ``log1p`` of the number of characters of the stripped response.
``log_vocab``
    ``log1p`` of the number of distinct casefolded whitespace-separated words of the response. Averaged with
    ``log_length`` it measures how much content the answer carries: padding an answer by repeating itself adds
    length but no vocabulary. The log gives diminishing returns (doubling an answer always adds the same).
``relevance`` (only with vectors; reported, weight 0)
    Cosine of the prompt and response embeddings from the clustering encoder.
``focus`` (only with vectors)
    ``relevance`` on *short-answer* prompts, 0 elsewhere. A prompt is short-answer when the answers to the
    ``SHORT_TASK_NEIGHBOURS`` most similar other prompts (among a seeded reference sample of at most
    ``SHORT_TASK_REFERENCE`` prompts of the pool) have a median length below the pool's median of that
    statistic: titles, edits, one-line facts, classifications. There, an answer that addresses the prompt
    directly is better than a longer one; on open-ended prompts relevance is not rewarded (a creative or
    explanatory answer is rightly far from its prompt in embedding space).
``off_topic`` (only with vectors)
    ``max(0, threshold - relevance)`` for responses of at least ``OFF_TOPIC_MIN_WORDS`` words (the embedding of
    "Polynesia" or "true" says little about whether it answers the prompt). ``threshold`` is calibrated on the pool:
    the 95th percentile of the cosine between prompts and the responses of *other* prompts (a fixed random
    pairing), i.e. a response is penalised only when it is as unrelated to its prompt as a random response is.
    High similarity is deliberately not rewarded: the closest responses are often echoes of the prompt.
``empty``
    1 when the response is empty or whitespace (instruction-only data).
``refusal``
    1 when a short response (fewer than ``REFUSAL_MAX_CHARS`` characters) refuses or is a placeholder: "As an AI
    language model, I cannot ...", "I'm sorry, but I don't have access ...", "<nooutput>", "N/A", "this task
    requires a visual output ...". A long answer that merely *starts* with such a disclaimer is not a refusal:
    its content is what the length terms measure.
``truncated``
    1 when the response looks cut off: an unclosed code fence, a trailing separator (``, : ( [ { = -``), an
    ellipsis right after a word, or a long prose last line ending on an article, preposition or conjunction.
``duplicate``
    ``log1p`` of the number of *other* prompts in the pool answered with the same normalized response
    (casefolded, whitespace collapsed), e.g. canned "I am Vicuna, a language model trained by ..." answers.
    Responses shorter than ``DUPLICATE_MIN_CHARS`` ("Positive", "42", "Declarative sentence") are exempt:
    repeating a label is not junk.
``boilerplate``
    Number of assistant filler patterns at the start or end of the response: "I hope this helps", "Great
    question", "As of my knowledge cutoff", self-introductions ("I am Vicuna, a language model ...", "I was
    trained by ..."). Phrases that are also natural in letters and e-mails ("let me know if you have any
    questions", "feel free to ask") are deliberately not counted.

The weights are few and round. The content weights (``log_vocab`` over ``log_length``) and ``focus`` were
chosen while looking at the datakit's weak labels (BENCHMARKS.md reports them, and a split-half check); every
other weight was fixed a priori and not fitted to any label (:data:`HEURISTIC_WEIGHTS`). The unit is
one natural-log unit of content (an answer about 2.7 times longer): a refusal costs as much as a 20 times shorter
answer, a random-looking answer about one unit. Empty responses score ``-EMPTY_PENALTY`` and every other score is
floored just above that, so instruction-only rows always rank last.

``kmq score --explain`` writes every feature as a column after the score (in :data:`FEATURE_NAMES` order), so a
low score can be traced to its cause.
"""

from __future__ import annotations

import re
import warnings
from collections import defaultdict

import numpy as np

from kmq.errors import InvalidParameterError

__all__ = [
    "FEATURE_NAMES",
    "HEURISTIC_WEIGHTS",
    "VERSION",
    "combine_features",
    "heuristic_features",
    "heuristic_scores",
]

VERSION = 2  # part of the quality cache key: bump it whenever a feature or weight changes

EMPTY_PENALTY = 10.0
REFUSAL_PENALTY = 3.0
TRUNCATED_PENALTY = 1.0
DUPLICATE_PENALTY = 1.0
BOILERPLATE_PENALTY = 0.5
OFF_TOPIC_WEIGHT = 5.0
OFF_TOPIC_QUANTILE = 0.95
OFF_TOPIC_DEFAULT_THRESHOLD = 0.2  # all-MiniLM-L6-v2's value; used for pools of fewer than 100 responses
OFF_TOPIC_MIN_WORDS = 5
REFUSAL_MAX_CHARS = 400
DUPLICATE_MIN_CHARS = 30
EDGE_CHARS = 300
SHORT_TASK_NEIGHBOURS = 30
SHORT_TASK_REFERENCE = 5000

HEURISTIC_WEIGHTS: dict[str, float] = {
    "log_length": 0.25,
    "log_vocab": 0.75,
    "relevance": 0.0,
    "focus": 0.5,
    "off_topic": -OFF_TOPIC_WEIGHT,
    "empty": -EMPTY_PENALTY,
    "refusal": -REFUSAL_PENALTY,
    "truncated": -TRUNCATED_PENALTY,
    "duplicate": -DUPLICATE_PENALTY,
    "boilerplate": -BOILERPLATE_PENALTY,
}
"""Weight of each feature: ``score = sum(HEURISTIC_WEIGHTS[f] * features[f])``."""

FEATURE_NAMES: tuple[str, ...] = tuple(HEURISTIC_WEIGHTS)
"""Every feature, in the formula's order: the order of ``kmq score --explain``'s columns."""

_AI = (
    r"(?:an? )?(?:ai|a\.i\.|artificial intelligence|(?:ai |large )?language model|llm|ai assistant|text-based ai"
    r"|chatbot|virtual assistant)"
)
# an AI self-reference always contains one of these
_AI_HINTS = (
    "an ai",
    "a ai",
    "an a.i",
    "artificial intelligence",
    "language model",
    "llm",
    "ai assistant",
    "text-based ai",
    "chatbot",
    "virtual assistant",
)
_Rule = tuple[tuple[str, ...], re.Pattern[str]]
# Rules see casefolded text. A rule's hints are literal substrings that every match contains; its pattern only
# runs on the rows that contain a hint, which keeps 60k rows well under a second.
_REFUSAL_RULES: list[_Rule] = [
    (
        (
            "cannot",
            "can't",
            "can not",
            "unable",
            "not able",
            "don't have",
            "do not have",
            "do not possess",
            "not capable",
            "not program",
            "not possible for me",
        ),
        re.compile(
            r"\bnot possible for me\b|\b(?:i|model|ai|assistant)(?: and)? (?:cannot|can't|can not|am unable to"
            r"|'m unable to|am not able to|'m not able to|do not have|don't have|do not possess|am not capable of"
            r"|'m not capable of|am not programmed to)\s+(?:access|the ability|the capability|the capacity|personal"
            r"|real-time|browse|provide|answer|fulfil|complete|perform|generate|create|draw|produce|predict|see|view"
            r"|display|play|record|retrieve|help with|assist|comply|do that)"
        ),
    ),
    (("output",), re.compile(r"<\s*no\s*_?output\b")),
    (
        ("visual", "audio", "audible", "physical", "graphic", "non-text"),
        re.compile(
            r"\b(?:task|instruction|request) (?:requires|involves|needs|asks for) (?:a |an )?"
            r"(?:visual|audio|audible|physical|graphic|non-text)"
        ),
    ),
    (
        (
            "models cannot",
            "model cannot",
            "models can't",
            "model can't",
            "models are unable",
            "model is unable",
            "model is not able",
            "models are not able",
        ),
        re.compile(
            r"\b(?:gpt|language|ai|text-based) models? (?:cannot|can't|is unable|are unable|is not able|are not able)"
        ),
    ),
    (
        ("cannot be",),
        re.compile(
            r"\bcannot be (?:generated|completed|performed|fulfilled|done) by (?:a |an |the )?"
            r"(?:gpt|ai|language|model)"
        ),
    ),
]
_PLACEHOLDERS = frozenset({"n/a", "na", "no output", "nooutput", "not applicable"})
_BOILERPLATE_RULES: list[_Rule] = [
    (("hope this helps", "hope that helps", "hope it helps"), re.compile(r"\bi hope (?:this|that|it) helps\b")),
    (("as of my",), re.compile(r"\bas of my (?:last )?(?:knowledge|training)\b")),
    (("great question",), re.compile(r"\bgreat question\b")),
    (
        _AI_HINTS + ("trained by", "developed by", "created by", "built by"),
        re.compile(
            rf"\b(?:i am|i'm) \w+, {_AI}\b|\bmy name is \w+,? and i(?:'m| am) {_AI}\b"
            rf"|\b(?:i am|i'm|i was) (?:{_AI} )?(?:trained|developed|created|built) by\b"
        ),
    ),
]
_DANGLING = frozenset("a an the and or but nor of to in on at for with by from into as than that whose".split())
_ELLIPSIS_END = re.compile(r"[^\W\d_]\s*(?:\.\.\.|…)$")


def _rule_hits(texts: list[str], rules: list[_Rule]) -> np.ndarray:
    """Which of ``rules`` match each text: bool of shape (len(texts), len(rules))."""
    lengths = np.fromiter((len(t) + 1 for t in texts), dtype=np.int64, count=len(texts))
    starts = np.cumsum(lengths) - lengths
    joined = "\x00".join(texts)  # one C-level substring scan per hint instead of one per hint and row
    hits = np.zeros((len(texts), len(rules)), dtype=bool)
    for j, (hints, pattern) in enumerate(rules):
        candidates: set[int] = set()
        for hint in hints:
            positions, pos = [], joined.find(hint)
            while pos >= 0:
                positions.append(pos)
                pos = joined.find(hint, pos + 1)
            candidates.update((np.searchsorted(starts, positions, side="right") - 1).tolist())
        for row in candidates:
            hits[row, j] = pattern.search(texts[row]) is not None
    return hits


def _relevance(prompt_vecs: np.ndarray, response_vecs: np.ndarray, n: int) -> np.ndarray:
    """Row-wise dot product of two (n, d) L2-normalised matrices, float64; zero rows give 0."""
    p, r = np.asarray(prompt_vecs), np.asarray(response_vecs)
    if p.shape != r.shape or p.ndim != 2 or p.shape[0] != n:
        raise InvalidParameterError(
            f"prompt_vecs {p.shape} and response_vecs {r.shape} must both have shape (n_examples={n}, d): one "
            "row per example, from the same encoder."
        )
    return np.nan_to_num(np.einsum("ij,ij->i", p, r, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _off_topic_threshold(prompt_vecs: np.ndarray, response_vecs: np.ndarray, rows: np.ndarray) -> float:
    """95th percentile of prompt–response cosines under a fixed random pairing of ``rows`` (a null of unrelated pairs).

    Falls back to ``OFF_TOPIC_DEFAULT_THRESHOLD`` when fewer than 100 rows are given.
    """
    if len(rows) < 100:
        return OFF_TOPIC_DEFAULT_THRESHOLD
    partner = rows[np.random.default_rng(0).permutation(len(rows))]
    keep = partner != rows
    null = np.einsum("ij,ij->i", prompt_vecs[rows[keep]], response_vecs[partner[keep]], dtype=np.float64)
    null = np.nan_to_num(null, nan=0.0, posinf=0.0, neginf=0.0)
    return float(np.quantile(null, OFF_TOPIC_QUANTILE))


def _short_task(
    prompts: list[str], prompt_vecs: np.ndarray, log_length: np.ndarray, answered: np.ndarray
) -> np.ndarray:
    """1.0 for prompts whose nearest other prompts have shorter answers than the pool's median prompt, else 0.0.

    Neighbours come from a seeded reference sample of answered rows (at most ``SHORT_TASK_REFERENCE``), so the
    cost is O(n * reference * d) in bounded chunks; rows with the same (normalized) prompt are not neighbours.
    """
    n = len(prompts)
    rows = np.flatnonzero(answered & (np.abs(prompt_vecs).sum(axis=1) > 0))
    if len(rows) <= SHORT_TASK_NEIGHBOURS:
        return np.zeros(n, dtype=np.float64)
    ref = np.sort(np.random.default_rng(0).choice(rows, min(len(rows), SHORT_TASK_REFERENCE), replace=False))
    keys = np.array([hash(" ".join(p.casefold().split())) for p in prompts], dtype=np.int64)
    ref_vecs = np.ascontiguousarray(prompt_vecs[ref], dtype=np.float32)
    top = min(len(ref), SHORT_TASK_NEIGHBOURS + 1)
    expected = np.empty(n, dtype=np.float64)
    for lo in range(0, n, 2048):
        sims = np.asarray(prompt_vecs[lo : lo + 2048], dtype=np.float32) @ ref_vecs.T
        part = np.argpartition(-sims, top - 1, axis=1)[:, :top]
        order = np.take_along_axis(part, np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1), axis=1)
        nb = ref[order]
        lengths = np.where(keys[nb] == keys[lo : lo + 2048, None], np.nan, log_length[nb])
        lengths[:, SHORT_TASK_NEIGHBOURS:] = np.where(
            np.isnan(lengths[:, :SHORT_TASK_NEIGHBOURS]).any(axis=1, keepdims=True),
            lengths[:, SHORT_TASK_NEIGHBOURS:],
            np.nan,
        )  # the (k+1)-th neighbour only stands in for an excluded same-prompt row
        with warnings.catch_warnings():  # a row whose neighbours all share its prompt has no estimate (NaN)
            warnings.simplefilter("ignore", RuntimeWarning)
            expected[lo : lo + 2048] = np.nanmedian(lengths, axis=1)
    valid = np.isfinite(expected)
    if not valid.any():
        return np.zeros(n, dtype=np.float64)
    median = np.median(expected[valid & answered])
    return (valid & (expected < median)).astype(np.float64)


def _refusal_and_boilerplate(folded: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The ``refusal`` and ``boilerplate`` features of casefolded, stripped responses."""
    short = np.array([len(r) < REFUSAL_MAX_CHARS for r in folded], dtype=bool)
    heads = [r[:EDGE_CHARS] for r in folded]
    head_hits = _rule_hits(heads, _REFUSAL_RULES + _BOILERPLATE_RULES)
    n_refusal = len(_REFUSAL_RULES)
    placeholder = np.array([h.strip(" .!?<>()[]'\"") in _PLACEHOLDERS for h in heads], dtype=bool)
    refusal = short & (head_hits[:, :n_refusal].any(axis=1) | placeholder)
    tails = [r[-EDGE_CHARS:] if len(r) > EDGE_CHARS else "" for r in folded]
    boilerplate = head_hits[:, n_refusal:].sum(axis=1) + _rule_hits(tails, _BOILERPLATE_RULES).sum(axis=1)
    return refusal.astype(np.float64), boilerplate.astype(np.float64)


def _is_truncated(text: str) -> bool:
    """Whether a stripped, non-empty response looks cut off."""
    last = text[-1]
    last_line = text[text.rfind("\n") + 1 :]
    before = text[-2:-1]
    # "x =" and "between 1-" are cut; "====" rules and "-rrb-" tokens are not
    dangling_operator = (last == "=" and before not in ("=", "-", "_", "|")) or (
        last == "-" and (before.isdigit() or before.isspace())
    )
    if last in ",:([{" or dangling_operator:
        # a letter's sign-off ("Best regards,") on its own line is not a cut
        return not (last == "," and "\n" in text and len(last_line.split()) <= 4)
    if text.count("```") % 2 == 1 or _ELLIPSIS_END.search(text[-6:]):
        return True
    words = last_line[-40:].split()
    return last.isalpha() and len(last_line) >= 60 and bool(words) and words[-1].lower() in _DANGLING


def _duplicate_counts(prompts: list[str], keys: list[str]) -> np.ndarray:
    """For each example, how many *other* distinct prompts share its normalized (long enough) response ``key``."""
    groups: dict[str, set[str]] = defaultdict(set)
    for key, prompt in zip(keys, prompts, strict=True):
        if len(key) >= DUPLICATE_MIN_CHARS:
            groups[key].add(prompt)
    counts = [len(groups[k]) - 1 if len(k) >= DUPLICATE_MIN_CHARS else 0 for k in keys]
    return np.asarray(counts, dtype=np.float64)


def heuristic_features(
    prompts: list[str],
    responses: list[str],
    prompt_vecs: np.ndarray | None,
    response_vecs: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Compute the cheap quality signals of prompt–response pairs.

    Parameters
    ----------
    prompts : list of str, length n_examples
        System and user turns joined with a blank line.
    responses : list of str, length n_examples
        Assistant turns joined with a blank line; ``""`` for instruction-only data.
    prompt_vecs, response_vecs : ndarray of shape (n_examples, d), float32, or None
        L2-normalised embeddings of prompts and responses (a row of zeros for an empty text). When either is
        None the ``relevance`` feature is omitted.

    Returns
    -------
    features : dict of str to ndarray of shape (n_examples,), float64
        ``log_length``, ``log_vocab``, ``empty``, ``refusal``, ``truncated``, ``duplicate``, ``boilerplate`` and,
        with vectors, ``relevance``. The module docstring defines them.
    """
    n = len(responses)
    if len(prompts) != n:
        raise InvalidParameterError(f"len(prompts)={len(prompts)} should equal len(responses)={n}.")
    stripped = [r.strip() for r in responses]
    folded = [r.casefold() for r in stripped]
    words = [r.split() for r in folded]
    refusal, boilerplate = _refusal_and_boilerplate(folded)
    empty = np.array([not r for r in stripped], dtype=np.float64)
    features = {
        "log_length": np.log1p(np.array([len(r) for r in stripped], dtype=np.float64)),
        "log_vocab": np.log1p(np.array([len(set(w)) for w in words], dtype=np.float64)),
        "empty": empty,
        "refusal": refusal,
        "truncated": np.array([bool(r) and _is_truncated(r) for r in stripped], dtype=np.float64),
        "duplicate": np.log1p(_duplicate_counts(prompts, [" ".join(w) for w in words])),
        "boilerplate": boilerplate,
    }
    if prompt_vecs is not None and response_vecs is not None:
        prompt_vecs, response_vecs = np.asarray(prompt_vecs), np.asarray(response_vecs)
        relevance = _relevance(prompt_vecs, response_vecs, n) * (1.0 - empty)
        threshold = _off_topic_threshold(prompt_vecs, response_vecs, np.flatnonzero(empty == 0))
        features["relevance"] = relevance
        answered = empty == 0
        features["focus"] = relevance * _short_task(prompts, prompt_vecs, features["log_length"], answered)
        long_enough = np.array([len(w) >= OFF_TOPIC_MIN_WORDS for w in words], dtype=np.float64)
        features["off_topic"] = np.maximum(0.0, threshold - relevance) * long_enough
    return features


def heuristic_scores(
    prompts: list[str],
    responses: list[str],
    prompt_vecs: np.ndarray | None = None,
    response_vecs: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Score prompt–response pairs offline: more content and on-topic up, junk down.

    Parameters
    ----------
    prompts : list of str, length n_examples
        System and user turns joined with a blank line.
    responses : list of str, length n_examples
        Assistant turns joined with a blank line; ``""`` for instruction-only data (scored lowest).
    prompt_vecs, response_vecs : ndarray of shape (n_examples, d), float32, or None
        L2-normalised embeddings from the clustering encoder; without them ``relevance`` and ``off_topic``
        are left out.

    Returns
    -------
    scores : ndarray of shape (n_examples,), float64
        ``sum(HEURISTIC_WEIGHTS[f] * features[f])``, with non-empty rows floored at ``1 - EMPTY_PENALTY``:
        higher is better, always finite, deterministic.
    stats : dict
        JSON-serialisable: ``n``, the number of ``empty``, ``refusal``, ``truncated``, ``duplicated`` (response
        shared with another prompt), ``boilerplate`` and ``off_topic`` rows, ``relevance_used``, and the
        scores' ``min``, ``mean`` and ``max``.

    Examples
    --------
    >>> scores, stats = heuristic_scores(["Name a color.", "Name a color."], ["Blue is a color.", ""])
    >>> bool(scores[0] > scores[1]), stats["empty"]
    (True, 1)
    """
    return combine_features(heuristic_features(prompts, responses, prompt_vecs, response_vecs))


def combine_features(features: dict[str, np.ndarray]) -> tuple[np.ndarray, dict]:
    """The scores and stats of :func:`heuristic_scores` from already computed :func:`heuristic_features`.

    Parameters
    ----------
    features : dict of str to ndarray of shape (n_examples,), float64
        What :func:`heuristic_features` returned (``relevance``, ``focus`` and ``off_topic`` may be absent).

    Returns
    -------
    scores, stats
        As :func:`heuristic_scores`.
    """
    n = len(features["empty"])
    scores = np.zeros(n, dtype=np.float64)
    for name, values in features.items():
        scores += HEURISTIC_WEIGHTS[name] * values
    scores = np.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)
    scores = np.where(features["empty"] > 0, -EMPTY_PENALTY, np.maximum(scores, 1.0 - EMPTY_PENALTY))
    stats: dict = {
        "n": n,
        "empty": int(features["empty"].sum()),
        "refusal": int(features["refusal"].sum()),
        "truncated": int(features["truncated"].sum()),
        "duplicated": int((features["duplicate"] > 0).sum()),
        "boilerplate": int((features["boilerplate"] > 0).sum()),
        "off_topic": int((features["off_topic"] > 0).sum()) if "off_topic" in features else 0,
        "relevance_used": "relevance" in features,
    }
    if len(scores):
        stats.update(min=float(scores.min()), mean=float(scores.mean()), max=float(scores.max()))
    return scores, stats
