"""The grid of an experiment: its cells, their step folders and settings, and the ``--dry-run`` plan.

Layout of the output folder ``DIR``::

    DIR/
      experiment.json  config.yaml  results.csv  results.md
      cells/<pool>__<method>__b<budget>__s<seed>/
        DONE-select  select/     train.jsonl (the selected conversations), selection.parquet, manifest.json
        DONE-train   train/      model/ (the fine-tuned model folder)
        DONE-eval    eval/       results.json (kmq eval's output)
        FAILED.json              the step that failed last and its error (removed when the cell finishes)
        iterate-run/             the loop's own run directory (method iterate only)

Each step is a :class:`kmq.loop.rundir.RunDir` step: computed into a temporary folder renamed into place,
then marked ``DONE-<step>`` with a digest of its settings and of the digests of the steps it reads.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kmq.errors import InvalidParameterError, SettingsChangedError
from kmq.evaluate.experiment.config import ExperimentConfig, MethodSpec, iterate_overrides, slug
from kmq.loop.rundir import RunDir

STEPS = ("select", "train", "eval")
#: RunConfig settings an iterate cell passes on (IterateConfig has no decontaminate, stratify, quota, tokenizer)
_ITERATE_SELECT = ("embed.", "cluster.", "score.", "fields.", "format", "split", "dedup")


@dataclass(frozen=True)
class Cell:
    """One (pool, method, budget, seed) of the grid."""

    id: str
    pool: str
    pool_tag: str
    method: MethodSpec
    budget: int | float | str
    seed: int


def pool_tags(pools: list[str]) -> list[str]:
    """A short distinct name per pool: the file name without its extensions (``dolly_3k.jsonl`` -> ``dolly_3k``)."""
    tags: list[str] = []
    for spec in pools:
        name = Path(str(spec).rstrip("/")).name or str(spec)
        base = slug(name.split(".", 1)[0] if "." in name[1:] else name, limit=32)
        tag, n = base, 2
        while tag in tags:
            tag, n = f"{base}-{n}", n + 1
        tags.append(tag)
    return tags


def build_cells(cfg: ExperimentConfig, methods: list[MethodSpec]) -> list[Cell]:
    """The grid in its order: pool, then method, then budget, then seed."""
    cells = []
    for pool, tag in zip(cfg.pools, pool_tags(cfg.pools), strict=True):
        for m in methods:
            for b in cfg.budgets:
                for s in cfg.seeds:
                    cid = f"{tag}__{slug(m.label)}__b{slug(str(b), limit=24)}__s{s}"
                    cells.append(Cell(cid, pool, tag, m, b, s))
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise InvalidParameterError(f"Two cells share the folder name {dup!r}: give their methods distinct labels.")
    return cells


class CellDir(RunDir):
    """The step folders of one cell: ``DIR/cells/<id>/<step>`` and ``DONE-<step>`` beside them."""

    def __init__(self, out: str | Path, cell_id: str) -> None:
        super().__init__(Path(out) / "cells" / cell_id)
        self.cell_id = cell_id

    def folder(self, sid: str) -> Path:
        return self.root / sid

    def marker_path(self, sid: str) -> Path:
        return self.root / f"DONE-{sid}"

    def where(self, sid: str) -> str:
        return f"cells/{self.cell_id}"

    def marker(self, sid: str) -> dict[str, Any] | None:
        path = self.marker_path(sid)
        if not path.is_file() or not self.folder(sid).is_dir():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def finished(self) -> list[str]:
        return [s for s in STEPS if self.marker_path(s).is_file()]

    def restart_from(self, sid: str) -> list[str]:
        """Delete step ``sid`` and the later steps of this cell (markers first); returns what was deleted."""
        gone = [s for s in STEPS[STEPS.index(sid) :] if self.marker_path(s).is_file() or self.folder(s).exists()]
        for s in reversed(gone):
            self.marker_path(s).unlink(missing_ok=True)
        for s in gone:
            folder = self.folder(s)
            if folder.exists():
                self._remove_own(s, folder)
        if sid == "select" and (self.root / "iterate-run").is_dir():
            shutil.rmtree(self.root / "iterate-run")
            gone.append("iterate-run")
        return gone

    def _changed(self, sid: str, done: dict[str, Any], settings: dict[str, Any], inputs: dict[str, str]):
        err = super()._changed(sid, done, settings, inputs)
        text = str(err).replace("Use a new --run-dir or pass", "Use another --out or pass")
        return SettingsChangedError(text.replace(f"--restart-from {sid}.", f"--restart-from {self.cell_id}/{sid}."))


# -- the settings of each step (what its marker's digest covers) --------------------------------------------
def run_config(cfg: ExperimentConfig, cell: Cell) -> Any:
    """The ``kmq select`` config of a cell (for iterate cells: the loop's :class:`IterateConfig`)."""
    from kmq.config import absolute_paths

    common = {"pool": cell.pool, "budget": cell.budget, "seed": cell.seed, **cfg.select_overrides()}
    if cell.method.name != "iterate":
        from kmq.pipeline import build_config

        params = dict(cell.method.params)
        return absolute_paths(build_config(None, {**common, "select.method": cell.method.name,
                                                   "select.params": params or None}))  # fmt: skip
    from kmq.loop.api import build_iterate_config

    extra = [k for k in cfg.select_overrides() if not k.startswith(_ITERATE_SELECT)]
    if extra:
        raise InvalidParameterError(
            f"method iterate ({cell.method.label}) does not take the select option(s) {extra}; drop them or run "
            "iterate in an experiment of its own."
        )
    train = {f"train.{k}": v for k, v in dataclasses.asdict(cfg.train_config()).items()}
    overrides = {**common, **train, "model": cfg.model, **iterate_overrides(cell.method.params)}
    return absolute_paths(build_iterate_config(None, overrides))


def select_settings(cfg: ExperimentConfig, cell: Cell, fingerprint: str) -> dict[str, Any]:
    run = {k: v for k, v in run_config(cfg, cell).to_dict().items() if k not in ("pool", "out", "run_dir", "report")}
    return {"method": cell.method.name, **run, "pool_fingerprint": fingerprint}


def train_settings(cfg: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    t = {k: v for k, v in dataclasses.asdict(cfg.trainer).items() if k not in ("device", "mode", "train_final")}
    if t["trainer"] == "command":
        t = {k: t[k] for k in ("trainer", "command", "shell")}
    return {**t, "model": cfg.model, "seed": cell.seed}


def eval_settings(cfg: ExperimentConfig, cell: Cell) -> dict[str, Any]:
    e = {k: v for k, v in dataclasses.asdict(cfg.eval).items() if k != "device"}
    return {**e, "seed": cell.seed}


# -- the dry-run plan ------------------------------------------------------------------------------------------
def cell_status(out: Path, cells: list[Cell]) -> dict[str, dict[str, str]]:
    """``{cell id: {step: done | failed | todo}}`` read from the markers (nothing is written; "changed" is
    :func:`~kmq.evaluate.experiment.run.plan_experiment`'s)."""
    status = {}
    for cell in cells:
        cd = CellDir(out, cell.id)
        failed = _failed(cd.root)
        status[cell.id] = {
            s: "done" if cd.marker(s) is not None else ("failed" if failed and failed.get("step") == s else "todo")
            for s in STEPS
        }
    return status


def _failed(root: Path) -> dict[str, Any] | None:
    path = root / "FAILED.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def format_plan(cfg: ExperimentConfig, cells: list[Cell], status: dict[str, dict[str, str]], tokens: dict) -> str:
    """The text of ``--dry-run``: the grid, the work left per step and the training-token estimate."""
    todo = {s: [c for c in cells if status[c.id][s] != "done"] for s in STEPS}
    t = cfg.trainer
    how = (f"command {t.command!r}" if t.trainer == "command"
           else f"trl {t.finetune}, " + (f"max_steps {t.max_steps}" if t.max_steps > 0 else f"{t.epochs:g} epochs"))
    limit = f", limit {cfg.eval.limit:g} (smoke numbers)" if cfg.eval.limit is not None else ""
    n_methods = len({c.method.label for c in cells})
    lines = [
        f"experiment {cfg.name}: {len(cfg.pools)} pool(s) x {n_methods} method(s) x {len(cfg.budgets)} budget(s) "
        f"x {len(cfg.seeds)} seed(s) = {len(cells)} cells",
        f"model       {cfg.model}",
        f"selections  {len(todo['select'])} to run of {len(cells)}",
        f"trainings   {len(todo['train'])} to run of {len(cells)} ({how})",
        f"evaluations {len(todo['eval'])} to run of {len(cells)}: {len(todo['eval']) * len(cfg.eval.tasks)} task runs "
        f"({', '.join(cfg.eval.tasks)}{limit})",
        f"train tokens {tokens['total']:,} in all ({tokens['how']})",
        *(["changed     a finished step's settings changed: the run stops there (see --restart-from)"]
          if any("changed" in st.values() for st in status.values()) else []),
        "",
        f"{'cell':<{max(len(c.id) for c in cells)}}  select  train   eval    train tokens",
    ]  # fmt: skip
    width = max(len(c.id) for c in cells)
    for c in cells:
        st = status[c.id]
        n, kind = tokens["cells"][c.id]
        lines.append(f"{c.id:<{width}}  {st['select']:<7} {st['train']:<7} {st['eval']:<7} {n:,} ({kind})")
    return "\n".join(lines)
