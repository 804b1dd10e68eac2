"""Judge-based eval tasks: ``alpaca_eval`` (pairwise win rate) and ``mt_bench`` (1-10 single-answer ratings).

Both run on the datakit copies (``DATA_DIR/alpaca_eval/alpaca_eval.jsonl``, ``DATA_DIR/mt_bench/mt_bench.jsonl``)
with a model under test given as a ``generate`` callable (conversations -> answers) and a judge given as
kmq's ``judge:MODEL@URL`` spec: any OpenAI-compatible endpoint, reached through the ``judge:`` scorer's
:class:`~kmq.endpoints.Endpoint` (the SDK's retries and backoff, a dead server fails fast in one line, the
first failure cancels the rest, the key only from ``$OPENAI_API_KEY`` or ``api_key_env``, URL credentials
never recorded). Judge requests use the scorer's temperature 0 and ``max_tokens`` 2048 and send ``seed``.

- ``alpaca_eval``: each of the 805 instructions is answered by the model and judged against the set's
  reference output (``reference="reference_gpt4_1106_preview"``, the AlpacaEval 2 baseline, by default;
  ``"reference_text_davinci_003"`` for AlpacaEval 1) twice, once with the model's answer shown as A and once
  as B, which cancels the judge's position bias. A judgement is worth 1 when it prefers the model, 0 when it
  prefers the reference, 0.5 for a tie or an unparsable verdict (both counted). The item's preference is
  the mean of its two judgements; ``win_rate`` (primary, in [0, 1]) is their mean with its standard error.
  The mean lengths (characters) of the model's and the reference's answers are recorded next to it (no
  length-controlled win rate: that needs the judge's log-probabilities).
- ``mt_bench``: the 80 two-turn questions. The model answers turn 1, then turn 2 with its own turn-1
  answer in the conversation; the judge rates each turn 1-10 (turn 2 on the whole conversation). Questions
  of the categories ``math``, ``reasoning`` and ``coding`` are judged against the reference answers
  (``reference="reference_gpt4"``, FastChat's GPT-4 references, by default). ``score`` (primary) is the
  mean over every rated turn, as FastChat reports it, next to ``score_turn1``, ``score_turn2`` and
  ``score_<category>``; unparsable ratings are left out and counted.

``limit`` takes the first N records in file order (as lm-eval's ``--limit`` does), so a smoke run is a
prefix of the full run; the requests are sent concurrently and their answers kept in order, so the same
model answers, judge and seed give the same result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache import digest, progress_enabled
from kmq.errors import DataFormatError, GenerationError, InvalidParameterError, JudgeError, MissingArtifactError
from kmq.evaluate.judge_prompts import PROMPTS_DIGEST, Messages, pairwise_messages, parse_verdict, single_messages
from kmq.redact import redact
from kmq.scorers.judge import parse_rating

logger = logging.getLogger(__name__)

TASKS = ("alpaca_eval", "mt_bench")
#: the reference fields each task can judge against (the first is the default)
REFERENCES = {
    "alpaca_eval": ("reference_gpt4_1106_preview", "reference_text_davinci_003"),
    "mt_bench": ("reference_gpt4", "reference"),
}
#: MT-Bench categories judged against a reference answer (FastChat's NEED_REF_CATS)
NEED_REFERENCE = ("math", "reasoning", "coding")
VERSIONS = {"alpaca_eval": "kmq-alpaca_eval-1", "mt_bench": "kmq-mt_bench-1"}
#: preference for the model of a verdict, by the position of the model's answer
PREFERENCE = {"A": {"A": 1.0, "B": 0.0, "C": 0.5, None: 0.5}, "B": {"A": 0.0, "B": 1.0, "C": 0.5, None: 0.5}}

Generate = Callable[[list[Messages]], list[str]]


def run_judged(
    task: str,
    *,
    generate: Generate,
    judge: str,
    data_dir: str | Path,
    limit: int | None = None,
    seed: int = 0,
    show_progress: bool | None = None,
    concurrency: int | None = None,
    reference: str | None = None,
    judge_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate a model on a judge-based task (see the module docstring).

    Parameters
    ----------
    task : {"alpaca_eval", "mt_bench"}
    generate : callable
        ``generate(conversations) -> answers``: one answer (str) per conversation (a list of
        ``{"role", "content"}`` dicts ending with a user turn), in order. Called once for ``alpaca_eval``,
        twice (turn 1, then turn 2) for ``mt_bench``.
    judge : str
        ``judge:MODEL@URL``, e.g. ``judge:gpt-4o-mini@https://api.openai.com/v1``.
    data_dir : str or Path
        The datakit folder holding ``TASK/TASK.jsonl`` (or a folder holding ``TASK.jsonl``).
    limit : int or None
        Evaluate the first ``limit`` records only.
    seed : int, default 0
        Sent with every judge request and recorded.
    show_progress : bool or None
        A progress bar over the judge requests (None: when kmq logs at INFO).
    concurrency : int or None
        Judge requests in flight at most (None: the ``judge:`` scorer's default, 8).
    reference : str or None
        The record field the answers are judged against (see :data:`REFERENCES`; None: the first).
    judge_options : dict or None
        More ``judge:`` scorer options: ``max_retries``, ``timeout``, ``api_key_env``, ``temperature``,
        ``max_tokens``.

    Returns
    -------
    dict
        ``metrics``, ``stderr`` (None where undefined), ``primary`` (the main metric's name), ``value`` (its
        value), ``n`` (records evaluated), ``version``, ``settings`` (judge, prompt digest, reference, limit,
        data digest...; no key, URL credentials redacted) and ``samples`` (one record per item: its id,
        the model's answer(s), the judge's answers and what was read from them).
    """
    if task not in TASKS:
        raise InvalidParameterError(f"The 'task' parameter of run_judged must be one of {list(TASKS)}. "
                                    f"Got {task!r} instead.")  # fmt: skip
    _check_int("limit", limit, minimum=1, optional=True)
    _check_int("seed", seed, minimum=0)
    _check_int("concurrency", concurrency, minimum=1, optional=True)
    reference = REFERENCES[task][0] if reference is None else reference
    if reference not in REFERENCES[task]:
        raise InvalidParameterError(f"The 'reference' parameter of {task} must be one of {list(REFERENCES[task])}. "
                                    f"Got {reference!r} instead.")  # fmt: skip
    path = task_file(task, data_dir)
    records = read_records(path, task=task, reference=reference)
    available = len(records)
    records = records[:limit]
    client = _JudgeClient(judge, task=task, concurrency=concurrency, options=judge_options or {}, seed=seed,
                          show_progress=show_progress)  # fmt: skip
    client.check()  # a dead judge fails now, not after the model has answered everything
    run = _alpaca_eval if task == "alpaca_eval" else _mt_bench
    metrics, stderr, samples = run(records, generate, client, reference)
    primary = "win_rate" if task == "alpaca_eval" else "score"
    settings = {
        "task": task, **client.settings(), "prompt_digest": PROMPTS_DIGEST, "reference": reference,
        "limit": limit, "sampling": "first N records in file order", "available": available,
        "data_file": str(path), "data_digest": digest(path.read_bytes()),
    }  # fmt: skip
    if task == "alpaca_eval":
        settings["both_orders"] = True
    else:
        settings["reference_categories"] = list(NEED_REFERENCE)
    return {
        "metrics": metrics, "stderr": stderr, "primary": primary, "value": metrics[primary], "n": len(records),
        "version": VERSIONS[task], "settings": redact(settings), "samples": samples,
    }  # fmt: skip


# -- data ---------------------------------------------------------------------------------------------
def task_file(task: str, data_dir: str | Path) -> Path:
    """``DATA_DIR/TASK/TASK.jsonl``, else ``DATA_DIR/TASK.jsonl``; neither is a :class:`MissingArtifactError`."""
    data_dir = Path(data_dir)
    candidates = [data_dir / task / f"{task}.jsonl", data_dir / f"{task}.jsonl"]
    for path in candidates:
        if path.is_file():
            return path
    raise MissingArtifactError(
        f"{task}: the task data is not in {data_dir} (looked for {candidates[0]} and {candidates[1]}). "
        f"Point --data-dir at the datakit folder that holds {task}/{task}.jsonl."
    )


def read_records(path: Path, *, task: str, reference: str) -> list[dict[str, Any]]:
    """The task's records in file order, each checked for the fields the task reads."""
    records = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(f"{path}:{line_no}: not valid JSON ({err.msg}). "
                                      f"Each line must be one {task} record.") from err  # fmt: skip
            if not isinstance(rec, dict):
                raise DataFormatError(f"{path}:{line_no}: expected a JSON object, got {type(rec).__name__}.")
            _check_record(rec, where=f"{path}:{line_no}", task=task, reference=reference)
            rec.setdefault("id", f"{task}-{len(records)}")
            records.append(rec)
    if not records:
        raise DataFormatError(f"{path}: no {task} records. Point --data-dir at a copy of the datakit.")
    return records


def _check_record(rec: dict[str, Any], *, where: str, task: str, reference: str) -> None:
    def bad(field: str, expected: str) -> DataFormatError:
        got = type(rec.get(field)).__name__ if field in rec else "nothing"
        return DataFormatError(f"{where}: the field {field!r} must be {expected}; got {got}. Fix the record or "
                               "point --data-dir at an unmodified copy of the datakit.")  # fmt: skip

    if task == "alpaca_eval":
        for field in ("prompt", reference):
            if not isinstance(rec.get(field), str):
                raise bad(field, "a string")
        return
    turns = rec.get("turns")
    if not isinstance(turns, list) or len(turns) != 2 or not all(isinstance(t, str) and t for t in turns):
        raise bad("turns", "a list of 2 non-empty strings")
    if not isinstance(rec.get("category"), str):
        raise bad("category", "a string")
    ref = rec.get(reference)
    if ref is not None and (not isinstance(ref, list) or len(ref) != 2 or not all(isinstance(r, str) for r in ref)):
        raise bad(reference, "null or a list of 2 strings")


def _answers(generate: Generate, conversations: list[Messages], what: str) -> list[str]:
    answers = generate(conversations)
    if not isinstance(answers, (list, tuple)) or len(answers) != len(conversations):
        got = f"{len(answers)} answers" if isinstance(answers, (list, tuple)) else type(answers).__name__
        raise GenerationError(f"{what}: the generate callable returned {got} for {len(conversations)} "
                              "conversations; it must return one string per conversation, in order.")  # fmt: skip
    for i, answer in enumerate(answers):
        if not isinstance(answer, str):
            raise GenerationError(f"{what}: answer {i} of the generate callable is a {type(answer).__name__}, "
                                  "not a string.")  # fmt: skip
    return list(answers)


# -- the judge ----------------------------------------------------------------------------------------
class _JudgeClient:
    """The ``judge:`` scorer's endpoint and settings, asked for many judge answers at once."""

    def __init__(self, spec: Any, *, task: str, concurrency: int | None, options: dict[str, Any], seed: int,
                 show_progress: bool | None) -> None:  # fmt: skip
        if not isinstance(spec, str) or not spec.startswith("judge:"):
            raise InvalidParameterError(
                f"The 'judge' parameter of {task} must be a judge:MODEL@URL spec (any OpenAI-compatible endpoint), "
                f"e.g. judge:gpt-4o-mini@https://api.openai.com/v1. Got {spec!r} instead."
            )
        from kmq.scorers import get_scorer

        self.scorer = get_scorer(spec, concurrency=concurrency, **options)
        self.seed = seed
        self.show_progress = show_progress

    def check(self) -> None:
        """Build the endpoint's client: checks the judge's parameters and that its server listens."""
        self.scorer.endpoint.client  # noqa: B018

    def settings(self) -> dict[str, Any]:
        ident = self.scorer.identity()
        return {
            "judge": self.scorer.name, "judge_model": ident["model"], "judge_url": ident["base_url"],
            "judge_temperature": ident["temperature"], "judge_max_tokens": ident["max_tokens"],
            "judge_seed": self.seed, "judge_concurrency": self.scorer.concurrency,
        }  # fmt: skip

    def ask(self, requests: list[Messages], desc: str) -> list[str]:
        """The judge's answer to each request, in order."""
        from tqdm.auto import tqdm

        scorer, endpoint = self.scorer, self.scorer.endpoint
        bar = tqdm(total=len(requests), desc=desc, unit="judgement", leave=False,
                   disable=not progress_enabled(self.show_progress))  # fmt: skip

        def one(messages: Messages) -> str:
            answer = endpoint.chat(model=scorer.model_name, messages=messages, temperature=scorer.temperature,
                                   max_tokens=scorer.max_tokens, seed=self.seed)  # fmt: skip
            bar.update(1)
            return answer

        with bar:
            return endpoint.map(one, requests, concurrency=scorer.concurrency)


# -- alpaca_eval --------------------------------------------------------------------------------------
def _alpaca_eval(records: list[dict], generate: Generate, client: _JudgeClient, reference: str) -> tuple:
    questions = [r["prompt"] for r in records]
    outputs = _answers(generate, [[{"role": "user", "content": q}] for q in questions], "alpaca_eval")
    refs = [r[reference] for r in records]
    requests = []
    for q, out, ref in zip(questions, outputs, refs, strict=True):
        requests += [pairwise_messages(q, out, ref), pairwise_messages(q, ref, out)]
    texts = client.ask(requests, "alpaca_eval: judging")
    verdicts = [parse_verdict(t) for t in texts]
    prefs = np.array([PREFERENCE["A" if i % 2 == 0 else "B"][v] for i, v in enumerate(verdicts)]).reshape(-1, 2)
    unparsed = sum(v is None for v in verdicts)
    _check_unparsed(unparsed, len(verdicts), texts, verdicts, "alpaca_eval", "[[A]], [[B]] or [[C]] verdict")
    items = prefs.mean(axis=1)
    win_rate, sem = _mean_sem(items)
    metrics = {
        "win_rate": win_rate, "n": len(records), "judgements": len(verdicts),
        "model_preferred": int((prefs == 1.0).sum()), "reference_preferred": int((prefs == 0.0).sum()),
        "ties": sum(v == "C" for v in verdicts), "unparsed": unparsed,
        "consistent": float(np.mean([_same(verdicts[2 * i], verdicts[2 * i + 1]) for i in range(len(records))])),
        "length_model": float(np.mean([len(o) for o in outputs])),
        "length_reference": float(np.mean([len(r) for r in refs])),
    }  # fmt: skip
    samples = [
        {
            "id": rec["id"], "category": rec.get("category"), "output": out, "preference": float(items[i]),
            "judgements": [
                {"model_as": side, "verdict": verdicts[2 * i + k], "preference": float(prefs[i, k]),
                 "judgement": texts[2 * i + k]}
                for k, side in enumerate("AB")
            ],
        }  # fmt: skip
        for i, (rec, out) in enumerate(zip(records, outputs, strict=True))
    ]
    return metrics, {"win_rate": sem}, samples


def _same(first: str | None, second: str | None) -> bool:
    """Whether the two orders agree: the same answer wins (A then B, or B then A) or both are ties."""
    return (first, second) in {("A", "B"), ("B", "A"), ("C", "C")}


# -- mt_bench -----------------------------------------------------------------------------------------
def _mt_bench(records: list[dict], generate: Generate, client: _JudgeClient, reference: str) -> tuple:
    turns = [r["turns"] for r in records]
    first = _answers(generate, [[{"role": "user", "content": t[0]}] for t in turns], "mt_bench turn 1")
    second = _answers(generate, [
        [{"role": "user", "content": t[0]}, {"role": "assistant", "content": a}, {"role": "user", "content": t[1]}]
        for t, a in zip(turns, first, strict=True)
    ], "mt_bench turn 2")  # fmt: skip
    refs = [r.get(reference) if r["category"] in NEED_REFERENCE else None for r in records]
    missing = [r["id"] for r in records if r["category"] in NEED_REFERENCE and r.get(reference) is None]
    if missing:
        logger.warning("mt_bench: %d %s questions have no %r and are judged without one (first: %s)",
                       len(missing), "/".join(NEED_REFERENCE), reference, missing[:5])  # fmt: skip
    requests = []
    for t, a1, a2, ref in zip(turns, first, second, refs, strict=True):
        requests.append(single_messages(t[:1], [a1], None if ref is None else ref[:1]))
        requests.append(single_messages(t, [a1, a2], ref))
    texts = client.ask(requests, "mt_bench: judging")
    ratings = np.array([np.nan if (r := parse_rating(t)) is None else r for t in texts]).reshape(-1, 2)
    unparsed = int(np.isnan(ratings).sum())
    _check_unparsed(unparsed, ratings.size, texts, list(ratings.ravel()), "mt_bench", "[[rating]] in 1-10")
    means: dict[str, Any] = {}
    stderr: dict[str, Any] = {}
    groups = {"score": ratings, "score_turn1": ratings[:, 0], "score_turn2": ratings[:, 1]}
    categories = np.array([r["category"] for r in records])
    for cat in sorted(set(categories)):
        groups[f"score_{cat}"] = ratings[categories == cat]
    for name, values in groups.items():
        means[name], stderr[name] = _mean_sem(values[~np.isnan(values)])
    metrics = {**means, "n": len(records), "judgements": int(ratings.size), "unparsed": unparsed,
               "judged_without_reference": len(missing)}  # fmt: skip
    samples = [
        {
            "id": rec["id"], "question_id": rec.get("question_id"), "category": rec["category"],
            "outputs": [first[i], second[i]], "reference_used": refs[i] is not None,
            "judgements": texts[2 * i : 2 * i + 2], "ratings": [_or_none(x) for x in ratings[i]],
        }  # fmt: skip
        for i, rec in enumerate(records)
    ]
    return metrics, stderr, samples


# -- statistics ---------------------------------------------------------------------------------------
def _mean_sem(values: np.ndarray) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean (sample std / sqrt(n)); None where undefined (n < 1, n < 2)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return None, None
    mean = float(values.mean())
    return mean, (float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else None)


def _or_none(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def _check_unparsed(unparsed: int, total: int, texts: list[str], parsed: list, task: str, expected: str) -> None:
    """Log the unparsable judge answers; all of them unparsable is a :class:`JudgeError` (no number to report)."""
    if not unparsed:
        return
    first = next(i for i, p in enumerate(parsed) if p is None or (isinstance(p, float) and np.isnan(p)))
    msg = (f"{task}: {unparsed} of {total} judge answers have no {expected} (first: request {first}, answer "
           f"starts {texts[first][:200]!r})")  # fmt: skip
    if unparsed == total:
        raise JudgeError(f"{msg}. Is the judge following the prompt? Try a stronger judge model.")
    logger.warning("%s; %s", msg, "they count as ties" if task == "alpaca_eval" else "they are left out")


def _check_int(name: str, value: Any, *, minimum: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        none = " or None" if optional else ""
        raise InvalidParameterError(f"The {name!r} parameter of run_judged must be an int >= {minimum}{none}. "
                                    f"Got {value!r} instead.")  # fmt: skip
