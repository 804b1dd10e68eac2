"""Task names for ``kmq eval``: kmq's local lm-eval tasks on the datakit, the paper's suite, and their metadata.

kmq ships lm-eval task configs (package data in :mod:`kmq.evaluate.task_defs`) for the datakit eval sets, so
evaluation runs offline: ``mmlu`` (57 subtasks ``mmlu_<subject>``), ``arc_challenge``, ``arc_easy``, ``gsm8k``,
``truthfulqa_mc1``, ``truthfulqa_mc2``, ``bbh`` (27 subtasks ``bbh_<task>``), ``humaneval`` and ``mbpp``.

Name shadowing: :func:`task_manager` gives lm-eval's ``TaskManager`` the task folder as ``include_path``, which
lm-eval indexes after its own tasks, so a local task replaces lm-eval's task of the same name (``mmlu``,
``mmlu_<subject>``, ``arc_easy``, ``gsm8k``, ...) and every other lm-eval name still works. Results therefore
carry the plain names. With ``data_dir=None`` the manager has lm-eval's tasks only (the hub versions).

The datakit folder reaches the loaders as task metadata (``kmq_data_dir``), which lm-eval also records in
each task's config of the results. No YAML holds a path.

>>> expand_tasks("arc_easy, paper,gsm8k")[:3]
['arc_easy', 'mmlu', 'gsm8k']
>>> primary_metric("arc_challenge"), primary_metric_key("gsm8k")
('acc_norm', 'exact_match,strict-match')
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from kmq.errors import InvalidParameterError, invalid_parameter
from kmq.evaluate.task_defs import BBH_TASKS, DEFS_DIR, MMLU_SUBJECTS
from kmq.evaluate.task_defs.data import DATA_DIR_ENV, FILES, resolve_data_dir

__all__ = [
    "LOCAL_SUBTASKS", "LOCAL_TASKS", "PAPER_SUITE", "LocalTask", "apply_paper_shots", "check_task_names", "describe",
    "expand_tasks", "is_local", "local_task_names", "primary_metric", "primary_metric_key", "resolve_data_dir",
    "task_manager",
]  # fmt: skip

@dataclass(frozen=True, slots=True)
class LocalTask:
    """One local task (or group) as lm-eval reports it.

    Attributes
    ----------
    name : str
        The lm-eval task (or group) name; it shadows lm-eval's task of that name.
    kind : {"multiple_choice", "generate"}
        Log-likelihood over choices, or generation.
    metric : str
        The primary metric as lm-eval names it (``acc``, ``acc_norm``, ``exact_match``, ``pass@1``).
    num_fewshot : int
        Shots when the caller gives none.
    file : str
        The eval file, relative to the data dir.
    unsafe_code : bool
        The task executes generated code (lm-eval's ``unsafe_code``).
    filter : str
        The lm-eval filter whose metric is the primary one (results key ``"<metric>,<filter>"``).
    extra_files : tuple of str
        Other data the task reads (few-shot pools, prompt files), relative to the data dir.
    """

    name: str
    kind: Literal["multiple_choice", "generate"]
    metric: str
    num_fewshot: int
    file: str
    unsafe_code: bool = False
    filter: str = "none"
    extra_files: tuple[str, ...] = ()


LOCAL_TASKS: dict[str, LocalTask] = {
    t.name: t
    for t in (
        LocalTask("mmlu", "multiple_choice", "acc", 5, FILES["mmlu"]),
        LocalTask("arc_challenge", "multiple_choice", "acc_norm", 25, FILES["arc"]),
        LocalTask("arc_easy", "multiple_choice", "acc_norm", 0, FILES["arc"]),
        LocalTask("gsm8k", "generate", "exact_match", 5, FILES["gsm8k"], filter="strict-match",
                  extra_files=(FILES["gsm8k_train"],)),
        LocalTask("truthfulqa_mc1", "multiple_choice", "acc", 0, FILES["truthfulqa"]),
        LocalTask("truthfulqa_mc2", "multiple_choice", "acc", 0, FILES["truthfulqa"]),
        LocalTask("bbh", "generate", "exact_match", 3, FILES["bbh"], filter="get-answer",
                  extra_files=(FILES["bbh_prompts"],)),
        LocalTask("humaneval", "generate", "pass@1", 0, FILES["humaneval"], unsafe_code=True, filter="create_test"),
        LocalTask("mbpp", "generate", "pass@1", 3, FILES["mbpp"], unsafe_code=True),
    )  # fmt: skip
}
#: subtask -> its local group (mmlu_<subject> -> mmlu, bbh_<task> -> bbh)
LOCAL_SUBTASKS: dict[str, str] = {f"mmlu_{s}": "mmlu" for s in MMLU_SUBJECTS} | {f"bbh_{t}": "bbh" for t in BBH_TASKS}

#: lm-eval task -> shots of the paper's Table 1 (Open LLM Leaderboard v1 settings), for ``--tasks paper``
PAPER_SUITE: dict[str, int] = {
    "mmlu": 5, "gsm8k": 5, "hellaswag": 10, "arc_challenge": 25, "truthfulqa_mc2": 0, "humaneval": 0,
}  # fmt: skip
#: primary (metric, filter) of the paper tasks that kmq has no local version of
_LM_EVAL_METRICS = {"hellaswag": ("acc_norm", "none")}
_QUIET = (
    ("Custom kwargs can be passed to `--metadata`",),  # once per task with a custom_dataset (57 for mmlu)
    ("overrides existing task", str(DEFS_DIR)),  # one per shadowed lm-eval task (66): one info line instead
)
log = logging.getLogger(__name__)


def expand_tasks(spec: str | Sequence[str]) -> list[str]:
    """Task names from ``"a,b"`` or a list: ``paper`` becomes :data:`PAPER_SUITE`, repeats go (first kept)."""
    items = [spec] if isinstance(spec, str) else spec
    listed = isinstance(items, Sequence) and not isinstance(spec, (bytes, Mapping))
    if not listed or not all(isinstance(s, str) for s in items):
        raise invalid_parameter("tasks", "expand_tasks", "a comma-separated str or a list of task names", spec)
    names = []
    for part in (p.strip() for item in items for p in item.split(",")):
        if part == "paper":
            names += PAPER_SUITE
        elif part:
            names.append(part)
    if not names:
        raise invalid_parameter("tasks", "expand_tasks", f"at least one task name (or 'paper'; local tasks: "
                                f"{', '.join(LOCAL_TASKS)})", spec)  # fmt: skip
    return list(dict.fromkeys(names))


def is_local(name: str) -> bool:
    """Whether ``name`` is one of kmq's local tasks, groups or subtasks."""
    return name in LOCAL_TASKS or name in LOCAL_SUBTASKS


def local_task_names(names: Sequence[str]) -> list[str]:
    """The names among ``names`` that kmq's local definitions provide (they shadow lm-eval's)."""
    return [n for n in names if is_local(n)]


def task_manager(
    data_dir: str | os.PathLike | None,
    *,
    tasks: Sequence[str] | None = None,
    include_defaults: bool | None = None,
) -> Any:
    """lm-eval's ``TaskManager`` with kmq's local tasks (on ``data_dir``) over lm-eval's own.

    Parameters
    ----------
    data_dir : path or None
        The datakit folder (see :func:`resolve_data_dir`). None: lm-eval's tasks only, no local ones.
    tasks : sequence of str, optional
        The names the caller will load: each is checked (InvalidParameterError listing the local tasks and
        the closest names when a name is neither local nor lm-eval's; :func:`check_task_names`, before lm-eval's
        index is built), and lm-eval's own index (tens of seconds to build) is skipped when all are local.
    include_defaults : bool, optional
        Force lm-eval's own tasks in or out (default: in, unless ``tasks`` are all local).

    Returns
    -------
    lm_eval.tasks.TaskManager
        Shared per (data dir, include_defaults) within a process; ``load`` builds fresh task objects.
    """
    from kmq._deps import require

    require("lm_eval", purpose="kmq eval (`pip install kmq[eval]`)")
    if data_dir is None and include_defaults is False:
        raise invalid_parameter("include_defaults", "task_manager", "True or None when data_dir is None", False)
    names = list(tasks) if tasks is not None else None
    if include_defaults is None:
        include_defaults = data_dir is None or names is None or not all(is_local(n) for n in names)
    root = str(resolve_data_dir(data_dir)) if data_dir is not None else None
    if names:  # before lm-eval's index is built: a name that no YAML file gives is unknown
        _check_known(names, _known_names(root is not None, include_defaults), include_defaults)
    _quiet_lm_eval()
    manager = _manager(root, include_defaults)
    if names:
        _check_known(names, frozenset(manager.all_tasks), include_defaults)
    return manager


def check_task_names(names: Sequence[str], data_dir: str | os.PathLike | None) -> None:
    """InvalidParameterError for a name that is neither a local task, an lm-eval task nor a YAML file.

    What :func:`task_manager` checks, without lm-eval's index (a scan of the task YAMLs, cached per lm-eval
    version: :func:`kmq.evaluate.task_names.lm_eval_task_names`); the error lists the closest known names.
    """
    include_defaults = data_dir is None or not all(is_local(n) for n in names)
    _check_known(names, _known_names(data_dir is not None, include_defaults), include_defaults)


def _known_names(local: bool, include_defaults: bool) -> frozenset[str]:
    """The names the manager will index, from a scan of the YAML files (:mod:`kmq.evaluate.task_names`)."""
    from kmq.evaluate.task_names import lm_eval_task_names

    names = lm_eval_task_names() if include_defaults else frozenset()
    return names | _local_names() if local else names


@lru_cache(maxsize=1)
def _local_names() -> frozenset[str]:
    from kmq.evaluate.task_names import scan_task_names

    return scan_task_names([DEFS_DIR])


def _check_known(names: Sequence[str], known: frozenset[str], include_defaults: bool) -> None:
    """InvalidParameterError naming each unknown task and the known names closest to it."""
    import difflib

    unknown = [n for n in names if n not in known and not Path(n).is_file()]
    if not unknown:
        return
    close = [c for n in unknown for c in difflib.get_close_matches(n, sorted(known), n=3, cutoff=0.75)]
    hint = f" Close: {', '.join(dict.fromkeys(close))}." if close else ""
    raise InvalidParameterError(
        f"Unknown task{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}: neither one of kmq's "
        f"local tasks ({', '.join(LOCAL_TASKS)}; subtasks mmlu_<subject>, bbh_<task>) nor an lm-eval task"
        f"{'' if include_defaults else ' (lm-eval tasks were not indexed)'}.{hint} See `lm-eval ls tasks`."
    )


@lru_cache(maxsize=8)
def _manager(root: str | None, include_defaults: bool) -> Any:
    from lm_eval.tasks import TaskManager

    if root is None:
        return TaskManager(include_defaults=True)
    meta = {"kmq_data_dir": root}
    manager = TaskManager(include_path=str(DEFS_DIR), include_defaults=include_defaults, metadata=meta)
    if include_defaults:
        log.debug("kmq's local tasks on %s replace lm-eval's tasks of the same names (%s, mmlu_<subject>)", root,
                 ", ".join(LOCAL_TASKS))  # fmt: skip
    return manager


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(all(part in message for part in parts) for parts in _QUIET)


def _quiet_lm_eval() -> None:
    """Drop lm-eval's per-task log lines that say nothing about kmq's tasks (see ``_QUIET``)."""
    for name in ("lm_eval.api.task", "lm_eval.tasks._index"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


def primary_metric(task: str) -> str:
    """The metric of ``task`` that a results table shows (as lm-eval names it: ``acc_norm``, ``exact_match``)."""
    return _primary(task)[0]


def primary_metric_key(task: str) -> str:
    """The key of the primary metric in lm-eval's results: ``"<metric>,<filter>"`` (``"acc_norm,none"``)."""
    return ",".join(_primary(task))


def _primary(task: str) -> tuple[str, str]:
    base = LOCAL_SUBTASKS.get(task, "mmlu" if task.startswith("mmlu_") else task)
    if base in LOCAL_TASKS:
        return LOCAL_TASKS[base].metric, LOCAL_TASKS[base].filter
    if base in _LM_EVAL_METRICS:
        return _LM_EVAL_METRICS[base]
    raise InvalidParameterError(
        f"No primary metric is known for the task {task!r}: kmq knows those of its local tasks "
        f"({', '.join(LOCAL_TASKS)}) and of the paper's suite ({', '.join(PAPER_SUITE)}). Read it from the results."
    )


def apply_paper_shots(tasks: Mapping[str, Any]) -> dict[str, int]:
    """Give the paper's shots (:data:`PAPER_SUITE`) to loaded tasks whose config sets none; returns what was set.

    ``tasks`` maps names to lm-eval task objects (``TaskManager.load(...)["tasks"]``). lm-eval's own
    ``mmlu_<subject>``, ``hellaswag`` and ``arc_challenge`` set no shots (lm-eval would run them 0-shot);
    the local tasks and lm-eval's gsm8k, truthfulqa_mc2 and humaneval already carry theirs.
    """
    applied = {}
    for name, task in tasks.items():
        base = "mmlu" if name.startswith("mmlu_") else name
        if base in PAPER_SUITE and task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=PAPER_SUITE[base])
            applied[name] = PAPER_SUITE[base]
    return applied


def describe(task: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """What the results must record about ``task``: version, shots, data files and their sha256, config digest.

    For a local task (or subtask) ``config_digest`` is the sha256 of its YAML files and of the loader and
    scoring modules, and ``files`` maps each data file it reads to its sha256 (a folder: a digest of its
    files). For an lm-eval task: the source and the paper's shots when it is in :data:`PAPER_SUITE`; lm-eval's
    results carry its version.
    """
    parent = LOCAL_SUBTASKS.get(task, task)
    if parent not in LOCAL_TASKS:
        return {"task": task, "source": "lm_eval", "num_fewshot": PAPER_SUITE.get(task)}
    spec = LOCAL_TASKS[parent]
    root = resolve_data_dir(data_dir)
    files = {rel: _sha256(root / rel, task) for rel in (spec.file, *spec.extra_files)}
    defs = _definition_files(task)
    return {
        "task": task, "source": "kmq", "group": parent if parent != task else None,
        "version": _yaml_version(defs[0]), "num_fewshot": spec.num_fewshot, "kind": spec.kind,
        "metric": spec.metric, "filter": spec.filter, "unsafe_code": spec.unsafe_code,
        "data_dir": str(root), "file": spec.file, "sha256": files[spec.file], "files": files,
        "config_digest": _digest([*defs, DEFS_DIR / "loaders.py", DEFS_DIR / "scoring.py"]),
    }  # fmt: skip


def _definition_files(task: str) -> list[Path]:
    """The YAML files that define ``task``, its own file first (groups: the group file, then the members)."""
    if task in ("mmlu", "bbh"):
        folder = DEFS_DIR / task
        return [folder / f"_{task}.yaml", *sorted(p for p in folder.iterdir() if p.name != f"_{task}.yaml")]
    if task in LOCAL_SUBTASKS:
        folder = DEFS_DIR / LOCAL_SUBTASKS[task]
        return [folder / f"{task}.yaml", folder / "_template_yaml"]
    files = [DEFS_DIR / f"{task}.yaml"]
    while (include := _read_yaml(files[-1]).get("include")) is not None:
        files.append(files[-1].parent / include)
    return files


def _yaml_version(path: Path) -> Any:
    cfg = _read_yaml(path)
    while "version" not in (cfg.get("metadata") or {}) and cfg.get("include"):
        path = path.parent / cfg["include"]
        cfg = _read_yaml(path)
    return (cfg.get("metadata") or {}).get("version")


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    class _Loader(yaml.SafeLoader):
        pass

    _Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader) or {}


def _digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(f"{path.relative_to(DEFS_DIR).as_posix()}\0".encode())
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def _sha256(path: Path, task: str) -> str:
    from kmq.errors import MissingArtifactError

    if not path.exists():
        raise MissingArtifactError(f"The eval data {path} of kmq's local task {task!r} does not exist. Pass "
                                   f"--data-dir (or ${DATA_DIR_ENV}) with a datakit copy that has it.")  # fmt: skip
    if path.is_dir():
        h = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f"{child.relative_to(path).as_posix()}\0{_file_sha256(child)}\0".encode())
        return h.hexdigest()
    return _file_sha256(path)


def _file_sha256(path: Path) -> str:
    st = path.stat()
    return _file_sha256_cached(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _file_sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
