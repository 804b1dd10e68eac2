"""``kmq eval``: evaluate a model on lm-eval tasks, kmq's local tasks and the judge-based tasks; one results dict.

The lm-eval tasks (any task name lm-eval knows, and kmq's local definitions for the datakit eval sets, see
:mod:`kmq.evaluate.tasks`) run through ``lm_eval.evaluator.evaluate`` on a model kmq loads itself, wrapped in
lm-eval's ``HFLM``, a LoRA adapter applied with peft on top, or lm-eval's vLLM model (:mod:`kmq.evaluate.lm`).
kmq does what ``simple_evaluate`` does before it (:func:`_evaluate`: the seeds, shots and generation
settings), not what it adds after (the environment report, whose ``torch.utils.collect_env`` subprocesses
take seconds per call, and the git hash): kmq's results never held those.
The judge-based tasks (``alpaca_eval``, ``mt_bench``) answer with kmq's greedy HF generator and are rated by a
``judge:MODEL@URL`` endpoint (:func:`kmq.evaluate.judged.run_judged`).

Tasks are loaded once, before the model: an unknown name (known without lm-eval's task index, see
:func:`kmq.evaluate.tasks.check_task_names`), a code task without ``allow_code_execution`` or a
judged task without ``judge`` fails before anything heavy runs. One ``seed`` sets lm-eval's Python, NumPy,
torch and few-shot seeds, so the same model, tasks, settings and seed give the same numbers; the results
dict is the same apart from ``timings`` (see :func:`evaluate_model` for its keys).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Literal

from kmq import hf
from kmq.errors import InvalidParameterError, MissingArtifactError, invalid_parameter
from kmq.evaluate.identity import identity
from kmq.evaluate.lm import DEFAULT_BATCH_SIZE, build_lm, merged_model, quiet_libraries
from kmq.evaluate.results import is_results_file, task_entries, write_results
from kmq.redact import redact, redact_url

logger = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm")
JUDGED = ("alpaca_eval", "mt_bench")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: longest answer of the judge-based tasks when ``max_new_tokens`` is None (lm-eval tasks keep their own)
JUDGED_MAX_NEW_TOKENS = 1024
_OWNER = "evaluate_model"


def evaluate_model(
    model: str,
    *,
    tasks: str | list[str | dict],
    adapter: str | None = None,
    backend: Literal["hf", "vllm"] = "hf",
    limit: int | float | None = None,
    data_dir: str | os.PathLike | None = None,
    device: str | None = None,
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto",
    batch_size: int | Literal["auto"] | None = None,
    num_fewshot: int | None = None,
    seed: int = 0,
    allow_code_execution: bool = False,
    judge: str | None = None,
    max_new_tokens: int | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    show_progress: bool | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` (optionally with a LoRA ``adapter``) on ``tasks``; the results dict (and ``out``).

    Parameters
    ----------
    model : str
        A local model folder or a hub name (``revision``: the hub revision).
    tasks : str or list
        ``"arc_easy,gsm8k"``, ``"paper"`` (the paper's suite and shots), or a list of task names; a dict in the
        list is an lm-eval task config used as it is.
    adapter : str or None
        A peft (LoRA) adapter folder or hub name applied on top of ``model``.
    backend : {"hf", "vllm"}
        ``vllm`` needs the ``vllm`` package.
    limit : int, float or None
        At most this many examples per task (a float in (0, 1): that fraction); recorded and flagged.
    data_dir : path or None
        Another copy of the datakit for the local tasks.
    device, precision : str
        Torch device (None: cuda when available, else cpu); ``auto`` precision is bf16 where the device
        computes it natively, else fp32 on a CPU, fp16 on other GPUs.
    batch_size : int, "auto" or None
        lm-eval batch size (None: :data:`DEFAULT_BATCH_SIZE`); also the judged tasks' generation batch.
    num_fewshot : int or None
        Few-shot examples for every task (None: each task's own setting).
    seed : int
        lm-eval's random, NumPy, torch and few-shot seeds, and the judge's.
    allow_code_execution : bool
        Needed for tasks that run the generated code (``humaneval``, ``mbpp``).
    judge : str or None
        ``judge:MODEL@URL``: needed for ``alpaca_eval`` and ``mt_bench``.
    max_new_tokens : int or None
        Longest generated answer (None: each lm-eval task's own; :data:`JUDGED_MAX_NEW_TOKENS` for judged tasks).
    revision, trust_remote_code : str or None, bool
        Hub revision of ``model``; let it run its own code (off unless given).
    out : path or None
        Also write the results there as JSON (checked before anything runs; see :mod:`kmq.publish`).
    overwrite : bool
        Replace an ``out`` that kmq did not write.
    show_progress : bool or None
        Progress bars and the libraries' logs (None: when kmq logs at INFO or below).

    Returns
    -------
    dict
        ``kmq_version``, ``lm_eval_version``, ``model`` and ``adapter`` (``name``, ``path`` or ``hub``,
        ``fingerprint``; ``adapter`` is None without one), ``backend``, ``device``, ``precision``, ``seed``,
        ``limit``, ``tasks`` (per task: ``metrics``, ``stderr``, ``primary``, ``value``, ``n``, ``available``,
        ``limited``, ``num_fewshot``, ``version``, ``settings`` (:func:`kmq.evaluate.tasks.describe`, file and
        config digests) and, for a group, ``subtasks``: each member's value and n), ``settings`` and ``timings``
        (seconds). Keys are written sorted; apart from ``timings`` the dict is the same for the same inputs.
    """
    start = time.perf_counter()
    _check_params(backend, limit, precision, batch_size, num_fewshot, seed, max_new_tokens)
    hf.check_model(model, revision=revision, purpose="the evaluated model")
    if adapter:
        _check_adapter(adapter)
    names, configs = _split_tasks(tasks)
    judged = [n for n in names if n in JUDGED]
    _check_judge(judged, judge)
    if judged and isinstance(limit, float) and limit < 1:
        raise InvalidParameterError(f"--limit {limit}: the judged tasks ({', '.join(judged)}) take a number of "
                                    "records, not a fraction; pass an int.")  # fmt: skip
    plan = _plan_out(out, overwrite, model, adapter, data_dir)
    data = _data_dir(data_dir, names)
    if [n for n in names if n not in JUDGED]:
        from kmq.evaluate.tasks import check_task_names

        check_task_names([n for n in names if n not in JUDGED], data)  # before lm-eval's heavy imports
    device = hf.default_device(device)
    from kmq._cpu import resolve_precision

    prec = resolve_precision(precision, device)
    timings: dict[str, Any] = {}
    with quiet_libraries(show_progress):
        harness_tasks = [n for n in names if n not in JUDGED] + configs
        t0 = time.perf_counter()
        paper = "paper" in [p.strip() for t in ([tasks] if isinstance(tasks, str) else tasks)
                            if isinstance(t, str) for p in t.split(",")]  # fmt: skip
        loaded = _load_tasks(harness_tasks, data, allow_code_execution, paper) if harness_tasks else None
        timings["load_tasks_s"] = time.perf_counter() - t0
        logger.info("evaluating %s%s on %s (%s, %s%s)", model, f" + {adapter}" if adapter else "",
                    ", ".join(names + [c["task"] for c in configs]), device, prec,
                    f", limit {limit:g}" if limit is not None else "")  # fmt: skip
        entries: dict[str, Any] = {}
        if loaded is not None:
            entries.update(_run_harness(model, adapter, backend, loaded, data_dir=data, device=device, precision=prec,
                                        batch_size=batch_size, num_fewshot=num_fewshot, seed=seed, limit=limit,
                                        max_new_tokens=max_new_tokens, revision=revision,
                                        trust_remote_code=trust_remote_code, timings=timings))  # fmt: skip
        for task in judged:
            t0 = time.perf_counter()
            entries[task] = _run_judged(task, model, adapter, backend, judge=judge, data_dir=data, limit=limit,
                                        seed=seed, device=device, precision=prec, batch_size=batch_size,
                                        max_new_tokens=max_new_tokens, show_progress=show_progress)  # fmt: skip
            timings[f"{task}_s"] = time.perf_counter() - t0
    settings = {
        "batch_size": batch_size or DEFAULT_BATCH_SIZE, "num_fewshot": num_fewshot, "max_new_tokens": max_new_tokens,
        "allow_code_execution": allow_code_execution, "judge": judge, "data_dir": str(data) if data else None,
        "revision": revision, "trust_remote_code": trust_remote_code, "precision_requested": precision,
        "task_spec": tasks if isinstance(tasks, str) else [t if isinstance(t, str) else t.get("task") for t in tasks],
    }  # fmt: skip
    timings["total_s"] = time.perf_counter() - start
    results = redact({
        "kmq_version": _version("kmq"), "lm_eval_version": _version("lm_eval"),
        "model": identity(model, revision=revision, purpose="the evaluated model"),
        "adapter": identity(adapter, purpose="the evaluated model's adapter") if adapter else None,
        "backend": backend, "device": device, "precision": prec, "seed": seed, "limit": limit,
        "tasks": entries, "settings": settings, "timings": timings,
    })  # fmt: skip
    if plan is not None:
        plan.publish({}, out_writer=lambda p: write_results(p, results))
    return results


# -- checks -------------------------------------------------------------------------------------------------
def _check_params(backend, limit, precision, batch_size, num_fewshot, seed, max_new_tokens) -> None:
    if backend not in BACKENDS:
        raise invalid_parameter("backend", _OWNER, f"one of {list(BACKENDS)}", backend)
    if precision not in PRECISIONS:
        raise invalid_parameter("precision", _OWNER, f"one of {list(PRECISIONS)}", precision)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0
                              or (isinstance(limit, float) and limit >= 1 and not limit.is_integer())):  # fmt: skip
        raise invalid_parameter("limit", _OWNER, "an int >= 1, a fraction in (0, 1) or None", limit)
    if batch_size is not None and batch_size != "auto" and not _int_at_least(batch_size, 1):
        raise invalid_parameter("batch_size", _OWNER, "an int >= 1, 'auto' or None", batch_size)
    if num_fewshot is not None and not _int_at_least(num_fewshot, 0):
        raise invalid_parameter("num_fewshot", _OWNER, "an int >= 0 or None", num_fewshot)
    if not _int_at_least(seed, 0):
        raise invalid_parameter("seed", _OWNER, "an int >= 0", seed)
    if max_new_tokens is not None and not _int_at_least(max_new_tokens, 1):
        raise invalid_parameter("max_new_tokens", _OWNER, "an int >= 1 or None", max_new_tokens)


def _int_at_least(value: Any, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _split_tasks(tasks: str | list) -> tuple[list[str], list[dict]]:
    """Task names (``paper`` and comma lists expanded, in order, without repeats) and inline lm-eval configs."""
    from kmq.evaluate.tasks import expand_tasks

    items = [tasks] if isinstance(tasks, str) else list(tasks)
    configs = [t for t in items if isinstance(t, dict)]
    bad = [t for t in items if not isinstance(t, (str, dict)) or (isinstance(t, dict) and "task" not in t)]
    if bad or not items:
        raise invalid_parameter("tasks", _OWNER, "task names (a str or a list; dicts: lm-eval configs with 'task')",
                                tasks)  # fmt: skip
    names = expand_tasks(",".join(t for t in items if isinstance(t, str))) if len(configs) < len(items) else []
    return list(dict.fromkeys(names)), configs


def _check_judge(judged: list[str], judge: str | None) -> None:
    if judged and not judge:
        raise InvalidParameterError(
            f"The task{'s' if len(judged) > 1 else ''} {', '.join(judged)} need{'' if len(judged) > 1 else 's'} "
            "a judge: pass --judge judge:MODEL@URL (any OpenAI-compatible endpoint; the key comes from "
            "$OPENAI_API_KEY), or drop them from --tasks."
        )
    if judge and not re.fullmatch(r"judge:.+?@https?://\S+", judge):
        raise InvalidParameterError(
            f"The 'judge' parameter of {_OWNER} must be judge:MODEL@URL with an http(s) base URL, e.g. "
            f"judge:gpt-4o-mini@https://api.openai.com/v1. Got {redact_url(judge)!r} instead."
        )


def _check_adapter(adapter: str) -> None:
    src = hf.resolve(adapter, purpose="the evaluated model's adapter")
    if src.local and not (Path(src.location) / "adapter_config.json").is_file():
        raise MissingArtifactError(
            f"Cannot load the evaluated model's adapter: the folder {src.location} has no adapter_config.json, so it "
            "is not a peft adapter. Pass the folder of an adapter saved with save_pretrained, or drop --adapter."
        )


def _plan_out(out, overwrite: bool, model: str, adapter: str | None, data_dir) -> Any:
    if out is None:
        return None
    from kmq.publish import input_paths, plan_outputs

    inputs = input_paths(model, adapter, data_dir)
    return plan_outputs("eval", out=out, run_dir=None, inputs=inputs, overwrite=overwrite,
                        out_is_kmq=is_results_file)  # fmt: skip


def _data_dir(data_dir, names: list[str]) -> Path | None:
    """The datakit folder when a local or judged task needs it (or it was given), else None (lm-eval's tasks)."""
    from kmq.evaluate.tasks import is_local, resolve_data_dir

    needs = data_dir is not None or any(is_local(n) or n in JUDGED for n in names)
    return resolve_data_dir(data_dir) if needs else None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- lm-eval tasks --------------------------------------------------------------------------------------------
def _load_tasks(specs: list[str | dict], data_dir: Path | None, allow_code_execution: bool,
                paper: bool) -> dict[str, Any]:  # fmt: skip
    """Build every task once, before the model loads (a bad name or a code task fails first).

    Returns ``{"manager", "objects": the loaded tasks and groups, "tasks": leaf tasks, "top": name -> leaf names}``;
    with ``paper`` the paper's shots go to the suite's tasks that set none.
    """
    from kmq.evaluate.tasks import apply_paper_shots, task_manager

    manager = task_manager(data_dir, tasks=[s for s in specs if isinstance(s, str)])
    objects, tasks, top = [], {}, {}
    for spec in specs:
        name = spec if isinstance(spec, str) else spec["task"]
        loaded = _load_one(manager, spec, name)
        tasks.update(loaded["tasks"])
        top[name] = list(loaded["tasks"])
        objects += [loaded["groups"][name]] if name in loaded["groups"] else list(loaded["tasks"].values())
    unsafe = [n for n, t in tasks.items() if getattr(t, "UNSAFE_CODE", False) or t.get_config("unsafe_code")]
    if unsafe and not allow_code_execution:
        raise InvalidParameterError(
            f"The task{'s' if len(unsafe) > 1 else ''} {', '.join(unsafe)} run the model's generated code: pass "
            "--allow-code-execution (allow_code_execution=True) to run it in kmq's sandbox, or drop "
            f"{'them' if len(unsafe) > 1 else 'it'} from --tasks."
        )
    if paper:
        apply_paper_shots(tasks)
    return {"manager": manager, "objects": objects, "tasks": tasks, "top": top}


def _load_one(manager: Any, spec: str | dict, name: str) -> dict[str, Any]:
    """``manager.load([spec])``; a dataset that cannot be fetched (offline, no network) is one line naming the task."""
    from kmq.errors import KmqError
    from kmq.evaluate.tasks import LOCAL_TASKS

    try:
        return manager.load([spec])
    except KmqError:
        raise
    except OSError as err:  # datasets' ConnectionError / DatasetNotFoundError
        offline = hf.offline_variable() or ("HF_DATASETS_OFFLINE" if os.environ.get("HF_DATASETS_OFFLINE") else None)
        note = f" ({offline} is set)" if offline else ""
        detail = redact_url(" ".join(str(err).split()))[:300].rstrip(".")
        raise MissingArtifactError(
            f"Cannot load the data of the task {name!r}{note}: {detail}. lm-eval "
            f"downloads its tasks' data from the Hugging Face hub: go online once, or use kmq's local tasks "
            f"({', '.join(LOCAL_TASKS)}), which read the datakit."
        ) from err


def _run_harness(model, adapter, backend, loaded, *, data_dir, device, precision, batch_size, num_fewshot, seed, limit,
                 max_new_tokens, revision, trust_remote_code, timings) -> dict[str, Any]:  # fmt: skip
    t0 = time.perf_counter()
    lm = build_lm(model, adapter, backend, device=device, precision=precision, batch_size=batch_size, seed=seed,
                   revision=revision, trust_remote_code=trust_remote_code)  # fmt: skip
    timings["load_model_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gen_kwargs = {"max_gen_toks": max_new_tokens} if max_new_tokens is not None else None
    res = _evaluate(lm, loaded, num_fewshot=num_fewshot, limit=limit, gen_kwargs=gen_kwargs, seed=seed)
    timings["evaluate_s"] = time.perf_counter() - t0
    return task_entries(res, loaded, limit=limit, data_dir=data_dir)


def _evaluate(lm: Any, loaded: dict[str, Any], *, num_fewshot: int | None, limit: int | float | None,
              gen_kwargs: dict[str, Any] | None, seed: int) -> dict[str, Any]:  # fmt: skip
    """``lm_eval.simple_evaluate(model=lm, tasks=loaded["objects"], ...)`` less its environment report.

    The same steps in the same order as lm-eval 0.4.13's ``simple_evaluate``: Python, NumPy and torch seeded
    with ``seed``; the task dict from the loaded objects; per task the generation settings (generation tasks),
    the shots (``num_fewshot`` unless the task's config pins 0; a task that sets none gets 0) and the few-shot
    seed; then ``evaluate`` with ``simple_evaluate``'s defaults (bootstrap 100000, few-shot as multi-turn).
    """
    import random

    import numpy as np
    from lm_eval.evaluator import evaluate
    from lm_eval.utils import set_torch_seed

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - lm-eval's tasks draw from the global generators
    set_torch_seed(seed)
    task_dict = loaded["manager"].load(loaded["objects"])  # objects as they are: no task is built again
    for task in task_dict["tasks"].values():
        if gen_kwargs is not None and task.get_config("output_type") == "generate_until":
            task.set_config(key="generation_kwargs", value=gen_kwargs, update=True)
        if num_fewshot is not None:
            if task.get_config("num_fewshot") != 0:
                task.set_config(key="num_fewshot", value=num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=seed)
    return evaluate(lm=lm, task_dict=task_dict, limit=limit, bootstrap_iters=100000, log_samples=False,
                    fewshot_as_multiturn=True, confirm_run_unsafe_code=True)  # code tasks were checked in _load_tasks


# -- judged tasks ---------------------------------------------------------------------------------------------
def _run_judged(task, model, adapter, backend, *, judge, data_dir, limit, seed, device, precision, batch_size,
                max_new_tokens, show_progress) -> dict[str, Any]:  # fmt: skip
    from kmq.evaluate.judged import run_judged
    from kmq.loop.config import GenerateConfig
    from kmq.loop.generate import get_generator

    cfg = GenerateConfig(generator=backend, max_new_tokens=max_new_tokens or JUDGED_MAX_NEW_TOKENS,
                         batch_size=batch_size if isinstance(batch_size, int) else DEFAULT_BATCH_SIZE,
                         device=device, precision=precision)  # fmt: skip
    generator = get_generator(cfg, show_progress=show_progress)
    with merged_model(model, adapter) as folder:
        result = run_judged(task, generate=lambda convs: generator.generate(folder, convs), judge=judge,
                            data_dir=data_dir, limit=int(limit) if limit else None, seed=seed,
                            show_progress=show_progress)  # fmt: skip
    available = result.get("settings", {}).get("available")
    result.pop("samples", None)
    return {**result, "num_fewshot": 0, "limited": bool(limit) and available is not None and result["n"] < available}
