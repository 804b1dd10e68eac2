"""Running an experiment grid: select -> train -> eval per cell, resumable, failures recorded, tables written.

Each cell's steps are :class:`~kmq.evaluate.experiment.plan.CellDir` steps. A step's marker is checked
against the current settings for every cell before anything runs, so a changed setting of a finished step
stops the run at once with a message naming the setting (``--restart-from STEP`` or ``CELL/STEP`` deletes
it and the later steps). A cell whose step raises is recorded in ``FAILED.json`` (step and error) and the
grid goes on; a rerun tries it again. The tables are rewritten (atomically) after every cell.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache import write_json, write_text
from kmq.errors import (
    InvalidParameterError,
    KmqError,
    OutputConflictError,
    RunDirBusyError,
    SettingsChangedError,
)
from kmq.evaluate.experiment import results as tables
from kmq.evaluate.experiment.config import ExperimentConfig, check_experiment, dump_experiment_config
from kmq.evaluate.experiment.plan import (
    STEPS,
    Cell,
    CellDir,
    build_cells,
    cell_status,
    eval_settings,
    format_plan,
    run_config,
    select_settings,
    train_settings,
)
from kmq.loop.rundir import RunDir

logger = logging.getLogger(__name__)

MARKER = "experiment.json"
#: a step's temporary folder in an error message becomes the step's folder (so the tables do not change)
_TMP = re.compile(r"/\.(select|train|eval)\.tmp-[0-9a-f]{8}")


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` wrote: the folder, the rows of ``results.csv`` and one summary per cell."""

    out: Path
    rows: list[dict[str, Any]]
    cells: list[dict[str, Any]]

    @property
    def ok(self) -> int:
        return sum(c["status"] == "ok" for c in self.cells)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.cells if c["status"] == "failed"]


class _Grid:
    """One experiment over its output folder (see the module docstring)."""

    def __init__(self, cfg: ExperimentConfig, out: str | os.PathLike, *, show_progress: bool | None = None,
                 evaluator: Callable[..., dict] | None = None) -> None:  # fmt: skip
        if cfg.model and Path(cfg.model).expanduser().exists():  # a local folder: the same model from any cwd
            cfg = dataclasses.replace(cfg, model=os.path.abspath(os.path.expanduser(cfg.model)))
        self.cfg, self.out, self.show_progress = cfg, Path(out), show_progress
        self.methods = check_experiment(cfg)
        self.cells = build_cells(cfg, self.methods)
        self.configs = {c.id: run_config(cfg, c) for c in self.cells}  # every cell's select settings checked now
        self._pools: dict[str, Any] = {}
        self.evaluator = evaluator

    # -- inputs ---------------------------------------------------------------------------------------------
    def pool(self, cell: Cell) -> Any:
        if cell.pool not in self._pools:
            from kmq.data import load_pool

            self._pools[cell.pool] = load_pool(self.configs[cell.id])
        return self._pools[cell.pool]

    def inputs(self) -> list[Path]:
        from kmq.publish import input_paths

        e = self.cfg.eval
        return input_paths(*(self.configs[c.id].pool for c in self.cells), self.cfg.model, e.data_dir)

    def settings(self, cell: Cell) -> dict[str, dict[str, Any]]:
        return {
            "select": select_settings(self.cfg, cell, self.pool(cell).fingerprint),
            "train": train_settings(self.cfg, cell),
            "eval": eval_settings(self.cfg, cell),
        }

    def check_markers(self, *, raise_changed: bool = True) -> dict[str, str]:
        """Every finished step must match the current settings (else a SettingsChangedError naming the setting).

        With ``raise_changed=False`` the changed steps are returned instead (``{cell id: step}``, for --dry-run).
        """
        changed = {}
        for cell in self.cells:
            cd = CellDir(self.out, cell.id)
            if not cd.finished():
                continue
            settings, upstream = self.settings(cell), {}
            for step in STEPS:
                done = cd.marker(step)
                if done is None:
                    break
                if done.get("digest") != cd.key(step, settings[step], upstream):
                    if raise_changed:
                        raise cd._changed(step, done, settings[step], upstream)
                    changed[cell.id] = step
                    break
                upstream = {step: done["digest"]}
        return changed

    # -- the steps of a cell ----------------------------------------------------------------------------------
    def run_cell(self, cell: Cell) -> None:
        cd = CellDir(self.out, cell.id)
        settings, step = self.settings(cell), "select"
        failed = cd.root / "FAILED.json"
        try:
            sel = cd.ensure("select", settings["select"], {}, lambda tmp: self._select(cell, cd, tmp))
            step = "train"
            tr = cd.ensure("train", settings["train"], {"select": sel.digest}, lambda tmp: self._train(cell, cd, tmp))
            step = "eval"
            cd.ensure("eval", settings["eval"], {"train": tr.digest}, lambda tmp: self._eval(cell, cd, tmp))
        except (SettingsChangedError, RunDirBusyError, OutputConflictError):
            raise
        except Exception as err:  # a failed cell does not stop the grid; a rerun tries it again
            text = _TMP.sub(r"/\1", f"{type(err).__name__}: {err}").splitlines()[0][:500]
            logger.warning("cell %s failed at %s: %s", cell.id, step, text)
            write_json(failed, {"cell": cell.id, "step": step, "error": text})
            return
        failed.unlink(missing_ok=True)

    def _select(self, cell: Cell, cd: CellDir, tmp: Path) -> dict[str, Any]:
        from kmq.loop.train import write_training_data

        pool, cfg = self.pool(cell), self.configs[cell.id]
        if cell.method.name == "iterate":
            from kmq.loop.runner import run_iterate

            cfg = cfg.updated({"out": str(tmp / "subset.jsonl"), "run_dir": str(cd.root / "iterate-run")})
            sel = run_iterate(cfg, pool=pool, show_progress=self.show_progress, overwrite=True)
        else:
            from kmq.pipeline import run_select

            sel = run_select(cfg, pool=pool, show_progress=self.show_progress)
        rows = sel.output_rows()
        wrote = write_training_data(tmp / "train.jsonl", [pool.ids[i] for i in rows], [pool.messages[i] for i in rows])
        import pyarrow.parquet as pq

        pq.write_table(sel.table(), tmp / "selection.parquet")
        write_json(tmp / "manifest.json", sel.manifest)
        k = sel.manifest.get("stages", {}).get("cluster", {}).get("n_clusters")
        return {"selected": len(sel), **wrote, "k": k}

    def _train(self, cell: Cell, cd: CellDir, tmp: Path) -> dict[str, Any]:
        from kmq.loop.train import get_trainer

        data = cd.folder("select") / "train.jsonl"
        t = self.cfg.train_config()
        tokens = self.train_tokens(data)
        stats = get_trainer(t, show_progress=self.show_progress).train(
            data=data, output_dir=tmp / "model", base_model=self.cfg.model, init_model=None, round=1, seed=cell.seed
        )
        return {**stats, "train_tokens": tokens}

    def train_tokens(self, data: Path) -> int | None:
        """Tokens of a cell's training set under the model's tokenizer (cut at max_seq_length for trl), once each."""
        from kmq.embed.tokens import count_tokens
        from kmq.loop.train import read_training_data

        try:
            counts, _ = count_tokens(read_training_data(data), self.cfg.model, show_progress=False)
        except (KmqError, OSError) as err:
            logger.warning("training tokens not counted (the model's tokenizer: %s)", err)
            return None
        if self.cfg.trainer.trainer == "trl":
            counts = np.minimum(counts, self.cfg.trainer.max_seq_length)
        return int(counts.sum())

    def _eval(self, cell: Cell, cd: CellDir, tmp: Path) -> dict[str, Any]:
        evaluate = self.evaluator
        if evaluate is None:
            from kmq.evaluate.harness import evaluate_model as evaluate
        e = self.cfg.eval
        kwargs: dict[str, Any] = {
            "tasks": list(e.tasks), "backend": e.backend, "limit": e.limit, "data_dir": e.data_dir,
            "device": self.cfg.eval_device(), "precision": e.precision, "num_fewshot": e.num_fewshot,
            "seed": cell.seed, "allow_code_execution": e.allow_code_execution, "judge": e.judge,
            "show_progress": self.show_progress,
        }  # fmt: skip
        kwargs.update({k: v for k in ("batch_size", "max_new_tokens") if (v := getattr(e, k)) is not None})
        result = evaluate(str(cd.folder("train") / "model"), **kwargs)
        write_json(tmp / "results.json", result)
        return {t: r.get("value") for t, r in sorted(result.get("tasks", {}).items())}

    # -- the tables -------------------------------------------------------------------------------------------
    def collect(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows, cells = [], []
        for cell in self.cells:
            cd = CellDir(self.out, cell.id)
            markers = {s: cd.marker(s) for s in STEPS}
            failed = cd.root / "FAILED.json"
            fail = json.loads(failed.read_text(encoding="utf-8")) if failed.is_file() else None
            status = "ok" if markers["eval"] else ("failed" if fail else "pending")
            tokens = (markers["train"] or {}).get("stats", {}).get("train_tokens")
            result = {}
            if markers["eval"]:
                result = json.loads((cd.folder("eval") / "results.json").read_text(encoding="utf-8")).get("tasks", {})
            info = {"cell": cell.id, "status": status, "failed_step": fail["step"] if status == "failed" else None,
                    "error": fail["error"] if status == "failed" else None}  # fmt: skip
            cells.append(info)
            for task in self.cfg.eval.tasks:
                r = result.get(task, {})
                primary = r.get("primary")
                stderr = r.get("stderr")
                rows.append({
                    "cell": cell.id, "pool": cell.pool_tag, "method": cell.method.label, "params": cell.method.params,
                    "budget": cell.budget, "seed": cell.seed, "task": task, "metric": primary,
                    "value": _float(r.get("value")),
                    "stderr": _float(stderr.get(primary) if isinstance(stderr, dict) else stderr),
                    "n": r.get("n"), "limited": bool(r.get("limited")) if r else None, "train_tokens": tokens,
                    **info, "status": status if r or status != "ok" else "missing",
                })  # fmt: skip
        return rows, cells

    def write_tables(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        rows, cells = self.collect()
        write_text(self.out / "results.csv", tables.csv_text(rows))
        write_text(self.out / "results.md", tables.markdown(self.meta(cells), rows, list(self.cfg.eval.tasks)))
        return rows, cells

    def meta(self, cells: list[dict[str, Any]]) -> dict[str, Any]:
        cfg, t, e = self.cfg, self.cfg.trainer, self.cfg.eval
        counts = {s: sum(c["status"] == s for c in cells) for s in ("ok", "failed", "pending")}
        trainer = f"command {t.command!r}" if t.trainer == "command" else (
            f"trl {t.finetune}, " + (f"max_steps {t.max_steps}" if t.max_steps > 0 else f"{t.epochs:g} epochs")
            + f", lr {t.resolved_lr():g}"
        )  # fmt: skip
        ev = ", ".join(e.tasks) + (f"; limit {e.limit:g}" if e.limit is not None else "")
        ev += f"; {e.num_fewshot}-shot" if e.num_fewshot is not None else ""
        summary = f"{len(cells)} (" + ", ".join(f"{k} {v}" for k, v in counts.items() if v or k == "ok") + ")"
        return {"name": cfg.name, "model": cfg.model, "trainer": trainer, "eval": ev, "summary": summary,
                "cells": cells}  # fmt: skip


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def prepare_out(out: Path, grid: _Grid, *, overwrite: bool, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse an output folder that is an input, or a non-empty folder that is not an experiment (unless overwrite)."""
    from kmq.publish import check_not_input, input_paths

    check_not_input("--out", out, [*grid.inputs(), *input_paths(*inputs)])
    if out.exists() and not out.is_dir():
        raise OutputConflictError(f"--out {out} is a file; pass a folder for the experiment.")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file() and not overwrite:
        raise OutputConflictError(
            f"--out {out} is not empty and is not a kmq experiment folder (no {MARKER}); pass a new folder, "
            "or --overwrite to use it (kmq deletes nothing of it)."
        )


def parse_restart(spec: str, cells: list[Cell]) -> list[tuple[str, str]]:
    """``eval`` (every cell) or ``CELL/train`` -> ``[(cell id, step), ...]``."""
    cell_id, _, step = spec.rpartition("/")
    if step not in STEPS:
        raise InvalidParameterError(
            f"--restart-from must be a step ({', '.join(STEPS)}) or CELL/STEP (e.g. {cells[0].id}/train). "
            f"Got {spec!r} instead."
        )
    ids = [c.id for c in cells]
    if cell_id and cell_id not in ids:
        raise InvalidParameterError(f"--restart-from {spec}: no cell {cell_id!r} in this grid; cells: {ids[:6]}...")
    return [(c, step) for c in ids if not cell_id or c == cell_id]


def run_experiment(
    cfg: ExperimentConfig,
    out: str | os.PathLike,
    *,
    restart_from: str | None = None,
    show_progress: bool | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    evaluator: Callable[..., dict] | None = None,
) -> ExperimentResult:
    """Run (or resume) the grid of ``cfg`` in the folder ``out``; returns the rows of ``results.csv``.

    Parameters
    ----------
    cfg : ExperimentConfig
    out : path
        The experiment folder (see :mod:`kmq.evaluate.experiment.plan` for its layout).
    restart_from : str, optional
        ``select``, ``train`` or ``eval`` (every cell), or ``CELL/STEP``: delete that step and the later ones first.
    overwrite : bool, default False
        Use a non-empty ``out`` that is not an experiment folder (nothing of it is deleted).
    inputs : paths
        Further files the run reads (the config file): ``out`` may not be one of them.
    evaluator : callable, optional
        ``evaluator(model_folder, **kwargs) -> dict`` in place of :func:`kmq.evaluate.harness.evaluate_model`
        (same arguments and JSON).
    """
    out = Path(out).expanduser().absolute()
    grid = _Grid(cfg, out, show_progress=show_progress, evaluator=evaluator)
    prepare_out(out, grid, overwrite=overwrite, inputs=inputs)
    try:
        lock = RunDir(out).lock()
        lock.__enter__()
    except RunDirBusyError as err:
        text = str(err).replace("kmq iterate", "kmq experiment").replace("--run-dir", "--out")
        raise RunDirBusyError(text) from None
    try:
        if not (out / MARKER).is_file():
            from kmq.selection import versions

            write_json(out / MARKER, {"command": "experiment", "versions": versions()})
        write_text(out / "config.yaml", dump_experiment_config(grid.cfg))
        if restart_from:
            for cid, step in parse_restart(restart_from, grid.cells):
                gone = CellDir(out, cid).restart_from(step)
                if gone:
                    logger.info("cell %s: deleted %s", cid, ", ".join(gone))
        grid.check_markers()
        for i, cell in enumerate(grid.cells, 1):
            logger.info("cell %d/%d: %s", i, len(grid.cells), cell.id)
            grid.run_cell(cell)
            grid.write_tables()
        rows, cells = grid.write_tables()
    finally:
        lock.__exit__(None, None, None)
    return ExperimentResult(out, rows, cells)


def plan_experiment(cfg: ExperimentConfig, out: str | os.PathLike) -> str:
    """The ``--dry-run`` text: the grid, what is left to run and the training tokens (nothing is written)."""
    out = Path(out).expanduser().absolute()
    grid = _Grid(cfg, out)
    status = cell_status(out, grid.cells)
    for cid, step in grid.check_markers(raise_changed=False).items():  # a rerun would stop there
        status[cid].update({s: "changed" for s in STEPS[STEPS.index(step) :] if status[cid][s] == "done"})
    return format_plan(cfg, grid.cells, status, estimate_tokens(grid, status))


#: pool records whose tokens estimate the mean before selection
TOKEN_SAMPLE = 2000


def estimate_tokens(grid: _Grid, status: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Training tokens per cell: counted for finished selections, else the pool's mean tokens x the budget."""
    from kmq.config import parse_token_budget, resolve_budget
    from kmq.embed.tokens import count_tokens

    per_cell, means, kinds = {}, {}, set()
    for cell in grid.cells:
        data = CellDir(grid.out, cell.id).folder("select") / "train.jsonl"
        if status[cell.id]["select"] == "done":
            n = grid.train_tokens(data)
            per_cell[cell.id] = (n or 0, "counted" if n is not None else "unknown")
            kinds.add(per_cell[cell.id][1])
            continue
        token_budget = parse_token_budget(cell.budget)
        if token_budget is not None:
            per_cell[cell.id] = (token_budget, "the token budget")
            kinds.add("the token budget")
            continue
        pool = grid.pool(cell)
        if cell.pool not in means:
            rows = np.random.default_rng(0).permutation(len(pool))[:TOKEN_SAMPLE]
            try:
                convs = [pool.messages[i] for i in np.sort(rows)]
                counts, _ = count_tokens(convs, grid.cfg.model, show_progress=False)
                if grid.cfg.trainer.trainer == "trl":
                    counts = np.minimum(counts, grid.cfg.trainer.max_seq_length)
                means[cell.pool] = float(counts.mean()) if len(counts) else 0.0
            except (KmqError, OSError) as err:
                logger.warning("cannot load the model's tokenizer to estimate tokens: %s", err)
                means[cell.pool] = None
        mean = means[cell.pool]
        budget = resolve_budget(cell.budget, len(pool))
        per_cell[cell.id] = (round(mean * budget), "estimated") if mean is not None else (0, "unknown")
        kinds.add(per_cell[cell.id][1])
    how = []
    if "counted" in kinds:
        how.append("counted: the selected records under the model's tokenizer")
    if "estimated" in kinds:
        how.append(f"estimated: the pool's mean tokens under the model's tokenizer ({TOKEN_SAMPLE}-record sample) "
                   "x the budget")  # fmt: skip
    if "unknown" in kinds:
        how.append("unknown: the model's tokenizer could not be loaded")
    if "the token budget" in kinds:
        how.append("token budgets: the budget itself")
    total = sum(n for n, _ in per_cell.values())
    return {"cells": per_cell, "total": total, "how": "; ".join(how) + "; one epoch"}
