"""lm-eval ``custom_dataset`` functions: the datakit eval files as ``datasets.DatasetDict`` splits.

lm-eval calls each function with the task's metadata (``kmq_data_dir``, set by
:func:`kmq.evaluate.tasks.task_manager`, plus ``version`` and lm-eval's own keys) and the YAML's
``dataset_kwargs`` (``subject`` or ``category``). A file is parsed once per process (keyed by path, size and
mtime), so the 57 MMLU subjects share one read, and each built ``DatasetDict`` is kept per (function, data
dir, subject or category, file stamps), so a process that evaluates many models builds each task's data once.
Rows keep the file's order, so ``first_n`` few-shot samplers take the first rows of their split.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kmq.errors import DataFormatError, MissingArtifactError
from kmq.evaluate.task_defs.data import _read_jsonl, data_file, read_jsonl, resolve_data_dir

_COT_CUE = "\nA: Let's think step by step."


def _cached(*keys: str) -> Callable:
    """Keep the loader's result per (data dir, its own keyword arguments, size and mtime of the files ``keys``)."""

    def wrap(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn).parameters if p not in ("kmq_data_dir", "_")]

        @functools.wraps(fn)
        def loader(*, kmq_data_dir: str | None = None, **kwargs: Any) -> Any:
            root = resolve_data_dir(kmq_data_dir)
            stamps = tuple(_stamp(data_file(k, root)) for k in keys)
            return _built(fn, str(root), tuple((p, kwargs[p]) for p in own if p in kwargs), stamps)

        return loader

    return wrap


@functools.lru_cache(maxsize=256)
def _built(fn: Callable, root: str, params: tuple, stamps: tuple) -> Any:
    return fn(kmq_data_dir=root, **dict(params))


def _stamp(path: Path) -> tuple:
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def clear_cache() -> None:
    """Forget the parsed files and the built datasets (they are also refreshed when a file changes)."""
    _built.cache_clear()
    _read_jsonl.cache_clear()


@_cached("mmlu")
def load_mmlu(*, subject: str, kmq_data_dir: str | None = None, **_: Any) -> Any:
    """``test`` and ``dev`` rows of one subject: question, choices, answer_index (0-3), answer (letter)."""
    path = data_file("mmlu", kmq_data_dir)
    keep = ("id", "question", "choices", "answer_index", "answer")
    splits = {"test": [], "dev": []}
    for line, row in read_jsonl(path):
        if _get(row, "category", path, line) == subject and _get(row, "split", path, line) in splits:
            splits[row["split"]].append({k: _get(row, k, path, line) for k in keep} | {"subject": subject})
    return _dataset_dict(splits, path, f"category={subject!r}")


@_cached("arc")
def load_arc(*, category: str, kmq_data_dir: str | None = None, **_: Any) -> Any:
    """``test`` rows of ``ARC-challenge`` or ``ARC-easy``: question, choices (4 texts), answer_index."""
    path = data_file("arc", kmq_data_dir)
    keep = ("id", "question", "choices", "answer_index", "answer")
    rows = [{k: _get(r, k, path, n) for k in keep} for n, r in read_jsonl(path) if r.get("category") == category]
    return _dataset_dict({"test": rows}, path, f"category={category!r}")


@_cached("gsm8k", "gsm8k_train")
def load_gsm8k(*, kmq_data_dir: str | None = None, **_: Any) -> Any:
    """``test`` (gsm8k_test) and ``train`` (gsm8k_train, the few-shot pool): question, answer, final_answer."""
    test_path, train_path = data_file("gsm8k", kmq_data_dir), data_file("gsm8k_train", kmq_data_dir)
    test = [
        {"id": _get(r, "id", test_path, n), "question": _get(r, "prompt", test_path, n),
         "answer": _get(r, "answer", test_path, n), "final_answer": _get(r, "final_answer", test_path, n)}
        for n, r in read_jsonl(test_path)
    ]  # fmt: skip
    train = []
    for n, r in read_jsonl(train_path):
        turns = _get(r, "messages", train_path, n)
        if len(turns) < 2 or turns[0].get("role") != "user" or turns[1].get("role") != "assistant":
            raise DataFormatError(f"{train_path} line {n}: expected a user turn then an assistant turn in 'messages'.")
        train.append({"id": r.get("id", str(n)), "question": turns[0]["content"], "answer": turns[1]["content"],
                      "final_answer": _get(r, "final_answer", train_path, n)})  # fmt: skip
    return _dataset_dict({"test": test, "train": train}, test_path, "any row")


@_cached("truthfulqa")
def load_truthfulqa(*, kmq_data_dir: str | None = None, **_: Any) -> Any:
    """``validation`` rows, HF-style ``mc1_targets`` (best vs incorrect), ``mc2_targets`` (correct vs incorrect)."""
    path = data_file("truthfulqa", kmq_data_dir)
    rows = []
    for n, r in read_jsonl(path):
        best, good, bad = (_get(r, k, path, n) for k in ("best_answer", "correct_answers", "incorrect_answers"))
        rows.append({
            "id": _get(r, "id", path, n), "question": _get(r, "prompt", path, n),
            "mc1_targets": {"choices": [best, *bad], "labels": [1] + [0] * len(bad)},
            "mc2_targets": {"choices": [*good, *bad], "labels": [1] * len(good) + [0] * len(bad)},
        })  # fmt: skip
    return _dataset_dict({"validation": rows}, path, "any row")


@_cached("bbh", "bbh_prompts")
def load_bbh(*, category: str, kmq_data_dir: str | None = None, **_: Any) -> Any:
    """``test`` rows of one BBH task (input, target) and ``fewshot``: its 3 CoT exemplars from ``cot-prompts``.

    Every row carries the task's ``description`` (the prompt file's first paragraph). A few-shot row's
    ``target`` is the exemplar's chain of thought, which ends with "So the answer is X.".
    """
    path = data_file("bbh", kmq_data_dir)
    description, shots = parse_cot_prompt(data_file("bbh_prompts", kmq_data_dir) / f"{category}.txt")
    test = [
        {"id": _get(r, "id", path, n), "input": _get(r, "prompt", path, n), "target": _get(r, "target", path, n),
         "description": description}
        for n, r in read_jsonl(path) if r.get("category") == category
    ]  # fmt: skip
    fewshot = [{"id": f"{category}-cot-{i}", "input": q, "target": a, "description": description}
               for i, (q, a) in enumerate(shots)]  # fmt: skip
    return _dataset_dict({"test": test, "fewshot": fewshot}, path, f"category={category!r}")


@_cached("humaneval")
def load_humaneval(*, kmq_data_dir: str | None = None, **_: Any) -> Any:
    """``test`` rows: task_id, prompt, canonical_solution, test, entry_point."""
    path = data_file("humaneval", kmq_data_dir)
    keep = ("task_id", "prompt", "canonical_solution", "test", "entry_point")
    return _dataset_dict({"test": [{k: _get(r, k, path, n) for k in keep} for n, r in read_jsonl(path)]}, path, "")


@_cached("mbpp")
def load_mbpp(*, kmq_data_dir: str | None = None, **_: Any) -> Any:
    """``test`` rows: task_id, text (the problem), code, test_list, test_setup_code."""
    path = data_file("mbpp", kmq_data_dir)
    rows = [
        {"task_id": _get(r, "task_id", path, n), "text": _get(r, "prompt", path, n), "code": _get(r, "code", path, n),
         "test_list": _get(r, "test_list", path, n), "test_setup_code": r.get("test_setup_code") or ""}
        for n, r in read_jsonl(path)
    ]  # fmt: skip
    return _dataset_dict({"test": rows}, path, "")


def parse_cot_prompt(path: Path) -> tuple[str, list[tuple[str, str]]]:
    """A BBH ``cot-prompts/*.txt`` file: its description and (question, chain of thought) exemplars."""
    if not path.is_file():
        raise MissingArtifactError(f"The BBH chain-of-thought prompt {path} does not exist. Pass --data-dir with a "
                                   "datakit copy that has bbh/orig/cot-prompts/.")  # fmt: skip
    text = path.read_text(encoding="utf-8")
    _, sep, body = text.partition("\n-----\n")
    description, *blocks = (body if sep else text).strip("\n").split("\n\nQ: ")
    shots = []
    for block in blocks:
        question, cue, answer = block.partition(_COT_CUE)
        if not cue:
            raise DataFormatError(f"{path}: an exemplar has no {_COT_CUE.strip()!r} line after its question.")
        # the chain of thought follows on the next line (one file: the same line); the prompt puts it on the next
        shots.append((question.removeprefix("Q: "), answer.removeprefix("\n").removeprefix(" ").rstrip("\n")))
    if not shots:
        raise DataFormatError(f"{path}: no 'Q: ...' exemplar found after the description.")
    return description.strip(), shots


def _get(row: dict, key: str, path: Path, line: int) -> Any:
    if key not in row:
        raise DataFormatError(f"{path} line {line}: the record has no {key!r} field, which the eval task needs.")
    return row[key]


def _dataset_dict(splits: dict[str, list[dict]], path: Path, what: str) -> Any:
    import datasets

    if not splits[next(iter(splits))]:
        raise DataFormatError(f"{path}: no eval rows found ({what}). Check that --data-dir points at the datakit.")
    return datasets.DatasetDict({name: datasets.Dataset.from_list(rows) for name, rows in splits.items()})
