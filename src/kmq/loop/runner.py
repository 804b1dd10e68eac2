"""Iterative kMQ (paper Algorithm 1) over a resumable run directory (:mod:`kmq.loop.rundir`).

Round ``r`` of ``R`` (sizes: :func:`kmq.loop.reweight.split_budget`):

1. ``select``: allocate the round's size over the clusters by ``prior * weights`` (exact, capped by what
   each cluster has left, shortfalls redistributed: :func:`~kmq.methods.allocate.allocate_budget`) and draw
   from the examples not selected yet with kMQ's within-cluster rule. Round 1 uses equal weights, so it is
   a kMQ draw of ``b / R``.
2. ``train`` the round's model (``retrain``: from the base on everything selected so far; ``continue``:
   from the last checkpoint on the new batch). Skipped in the last round unless ``train.train_final``:
   the selection is done by then, and users fine-tune with their own recipe.
3. ``generate`` a greedy answer for every selected prompt so far (paper step (d)); not in the last round.
4. ``judge``: ``S = score(prompt ⊕ gold) − score(prompt ⊕ generated)`` per instance; not in the last round.
5. ``reweight``: mean S per cluster over its scored members, then the weight update; not in the last round.

The union of the rounds (exactly the budget) is written like ``kmq select`` does: the subset in the pool's
format and ``config.yaml``, ``manifest.json`` (per-round weights, signals, counts, timings) and
``selection.parquet`` (with ``round``) in the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from kmq.cache import digest, load_arrays, save_arrays
from kmq.config import absolute_paths, resolve_budget
from kmq.errors import InvalidParameterError, MissingArtifactError
from kmq.loop.config import IterateConfig, check_config
from kmq.loop.judge import Judge, check_judge, split_prompt, uses_round_model, with_answer
from kmq.loop.plan import Plan, make_plan
from kmq.loop.reweight import update_weights
from kmq.loop.rundir import RunDir, StepResult, read_json, step_id
from kmq.loop.signal import cluster_signal, instance_scores
from kmq.pipeline import fill_run_tables, run_diagnostics
from kmq.publish import OutputPlan, input_paths
from kmq.selection import Selection, input_summary, plan_run, source_counts, versions

logger = logging.getLogger(__name__)

#: random stream of the per-round draws: ``default_rng([seed, STREAM_ITERATE, round])``
STREAM_ITERATE = 4


@dataclass
class IterSelection(Selection):
    """A :class:`~kmq.selection.Selection` whose rows know the round that drew them."""

    rounds: np.ndarray | None = None
    command = "iterate"
    run_entries = ("prepare", "DONE-prepare", "rounds", ".lock")

    def table(self) -> Any:
        import pyarrow as pa

        table = super().table()
        if self.rounds is None:
            return table
        col = table.column_names.index("round")
        return table.set_column(col, "round", pa.array(np.asarray(self.rounds, dtype=np.int32), pa.int32()))


class _Loop:
    """State of one run: the pool, its clusters and quality, the weights and what each round drew."""

    def __init__(self, cfg: IterateConfig, pool: Any, budget: int, plan: Plan, show_progress: bool | None) -> None:
        self.cfg, self.pool, self.budget, self.plan = cfg, pool, budget, plan
        self.show_progress = show_progress
        self.rd = RunDir(cfg.run_dir or "")
        self.steps: dict[str, StepResult] = {}
        self.picked: list[np.ndarray] = []
        self.dup_of: np.ndarray | None = None  # from prepare (None: a run folder from before deduplication)
        self.vectors: np.ndarray | None = None  # the clustering vectors, read at the end for the run tables
        p = {"allocation": "equal", "within": "softmax", "temperature": 1.0, **cfg.select.params}
        self.allocation, self.within, self.kmq_temperature = p["allocation"], p["within"], float(p["temperature"])

    # -- steps --------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        from kmq.scorers import require_scored
        from kmq.stages import Stages, cluster_identity, quality_key

        cfg, c, e, s = self.cfg, self.cfg.cluster, self.cfg.embed, self.cfg.score
        settings: dict[str, Any] = {
            "pool": self.pool.fingerprint, "format": self.pool.format, "seed": cfg.seed,
            "embed": {"embedder": e.embedder, "embed_on": e.embed_on, "precision": e.precision},
            "cluster": dataclasses.asdict(c),
            "score": {"scorer": s.scorer, "relevance_embedder": s.relevance_embedder, "precision": s.precision,
                      "max_length": s.max_length, **({"revision": s.revision} if s.revision else {})},
        }  # fmt: skip
        if c.clusters in (None, "auto"):  # k then depends on the budget
            settings["budget"] = self.budget
        run = Stages(cfg.run_config(), self.pool, self.show_progress)
        # the stages' own keys: they change when a model folder, a scorer's identity or the vectors change
        x_key = run.source.key(self.pool, e.embed_on)
        legacy = dict(settings)  # run folders of kmq before stage keys: accepted when everything else matches
        settings["dedup"] = cfg.dedup  # (such folders keep their pool as it was: no duplicates removed)
        settings["stage_keys"] = {
            "clusters": cluster_identity(x_key, c, self.budget, seed=cfg.seed),
            "quality": quality_key(self.pool, run.scorer()[0]),
        }

        def compute(tmp: Path) -> dict[str, Any]:
            labels, _ = run.clusters(self.budget).value
            run.check_responses()
            quality = require_scored(run.quality().value, self.pool.ids, scorer=s.scorer)
            dup_of = run.duplicates(self.budget)
            kept = int((dup_of < 0).sum())
            if kept < self.budget:
                raise InvalidParameterError(
                    f"The budget ({self.budget}) is larger than the pool without duplicates ({kept} of "
                    f"{len(dup_of)} records are unique under --dedup {cfg.dedup}). Pass --budget {kept} or less."
                )
            k = int(run.stats["cluster"]["n_clusters"])
            save_arrays(tmp / "arrays", {"k": k}, labels=labels.astype(np.int64), quality=quality, dup_of=dup_of)
            stats = {name: run.stats[name] for name in ("cluster", "score", "dedup") if name in run.stats}
            return {"k": k, **stats, "warnings": run.warnings}

        res = self._run("prepare", settings, {}, compute, legacy=legacy)
        self.labels, self.quality = load_arrays(res.folder / "arrays", "labels", "quality")
        arrays = res.folder / "arrays"
        self.dup_of = load_arrays(arrays, "dup_of")[0] if (arrays / "dup_of.npy").is_file() else None
        self.k = int(res.marker["stats"]["k"])
        from kmq.methods.allocate import cluster_weights

        self.prior = cluster_weights(np.bincount(self.labels, minlength=self.k), self.allocation)
        self.weights = np.full(self.k, 1.0 / self.k)  # Algorithm 1: w^0 = 1/k

    def select(self, r: int) -> None:
        from kmq.methods.allocate import allocate_budget_with_stats
        from kmq.methods.draw import draw_per_cluster

        cfg, size = self.cfg, self.plan.rounds[r - 1].draw
        settings = {
            "budget": self.budget, "rounds": cfg.rounds, "size": size, "seed": cfg.seed,
            "allocation": self.allocation, "within": self.within, "temperature": self.kmq_temperature,
        }  # fmt: skip
        inputs = {"prepare": self.steps["prepare"].digest}
        if r > 1:
            inputs.update(self._inputs(step_id(r - 1, "select"), step_id(r - 1, "reweight")))
        taken = self._selected_mask()
        weights = self.weights.copy()

        def compute(tmp: Path) -> dict[str, Any]:
            available = ~taken if self.dup_of is None else ~taken & (self.dup_of < 0)  # duplicates never drawn
            capacity = np.bincount(self.labels[available], minlength=self.k)
            counts, astats = allocate_budget_with_stats(capacity, self.prior * weights, size)
            rng = np.random.default_rng([cfg.seed, STREAM_ITERATE, r])
            idx, _ = draw_per_cluster(
                self.labels, counts, quality=self.quality, within=self.within, temperature=self.kmq_temperature,
                random_state=rng, available=available,
            )  # fmt: skip
            save_arrays(tmp / "arrays", {}, indices=idx, counts=counts, capacity=capacity, weights=weights)
            return {"drawn": int(len(idx)), "clusters_drawn": int((counts > 0).sum()), **astats}

        res = self._run(step_id(r, "select"), settings, inputs, compute)
        idx = load_arrays(res.folder / "arrays", "indices")[0]
        if len(idx) != size or taken[idx].any():  # never trust a damaged artifact silently
            raise RuntimeError(
                f"{res.folder}: {len(idx)} indices for a round of {size}, or repeats (bug: please report)"
            )
        self.picked.append(idx)

    def train(self, r: int) -> None:
        from kmq.loop.train import get_trainer, write_training_data

        t, cfg = self.cfg.train, self.cfg
        settings: dict[str, Any] = {"trainer": t.trainer, "model": cfg.model, "mode": t.mode, "seed": cfg.seed}
        if t.trainer == "command":
            settings.update(command=t.command, shell=t.shell)
        else:
            settings.update(
                finetune=t.finetune, epochs=t.epochs, lr=t.resolved_lr(), batch_size=t.batch_size,
                grad_accum=t.grad_accum, max_seq_length=t.max_seq_length, warmup_ratio=t.warmup_ratio,
                weight_decay=t.weight_decay, lr_scheduler=t.lr_scheduler, max_steps=t.max_steps, bf16=t.bf16,
                extra=t.extra,
            )  # fmt: skip
            if t.finetune == "lora":
                settings.update(lora_r=t.lora_r, lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                                lora_target_modules=t.lora_target_modules)  # fmt: skip
        prev = step_id(r - 1, "train")
        cont = t.mode == "continue" and prev in self.steps
        inputs = self._inputs(step_id(r, "select"), *([prev] if cont else []))
        rows = np.concatenate(self.picked) if t.mode == "retrain" else self.picked[-1]

        def compute(tmp: Path) -> dict[str, Any]:
            data = tmp / "train.jsonl"
            wrote = write_training_data(data, [self.pool.ids[i] for i in rows], [self.pool.messages[i] for i in rows])
            init = str(self.steps[prev].folder / "model") if cont else None
            stats = get_trainer(t, show_progress=self.show_progress).train(
                data=data, output_dir=tmp / "model", base_model=cfg.model, init_model=init, round=r, seed=cfg.seed
            )
            return {**wrote, **stats}

        self._run(step_id(r, "train"), settings, inputs, compute)

    def generate(self, r: int) -> None:
        from kmq.loop.generate import get_generator

        g = self.cfg.generate
        settings = {"generator": g.generator, "max_new_tokens": g.max_new_tokens,
                    "max_prompt_length": g.max_prompt_length, "precision": g.precision}  # fmt: skip
        rows = np.concatenate(self.picked)
        model = str(self.steps[step_id(r, "train")].folder / "model")

        def compute(tmp: Path) -> dict[str, Any]:
            prompts = [split_prompt(self.pool.messages[i])[0] for i in rows]
            start = time.perf_counter()
            generator = get_generator(g, show_progress=self.show_progress)
            answers = generator.generate(model, prompts, round=r)
            with open(tmp / "generations.jsonl", "w", encoding="utf-8") as fh:
                for i, answer in zip(rows.tolist(), answers, strict=True):
                    fh.write(json.dumps({"pool_index": i, "id": self.pool.ids[i], "answer": answer},
                                        ensure_ascii=False) + "\n")  # fmt: skip
            return {"generations": len(answers), "empty": sum(not a for a in answers),
                    **getattr(generator, "stats_", {}), "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip

        self._run(step_id(r, "generate"), settings, self._inputs(step_id(r, "train")), compute)

    def judge(self, r: int) -> None:
        j, e = self.cfg.judge, self.cfg.embed
        settings: dict[str, Any] = {"judge": j.scorer, "precision": j.precision, "max_length": j.max_length,
                                    "on_unparsable": j.judge_unparsable}  # fmt: skip
        if j.scorer == "relevance":
            settings["encoder"] = e.embedder
        if j.revision:  # only when set: run folders from before the option keep their digests
            settings["revision"] = j.revision
        gen_dir = self.steps[step_id(r, "generate")].folder
        model = str(self.steps[step_id(r, "train")].folder / "model")
        legacy = dict(settings)
        if not uses_round_model(j.scorer):  # the judge's own identity: a reward model updated in place is seen
            ident = Judge(j.scorer, j, e, show_progress=self.show_progress).scorer(None).identity()
            settings["judge_identity"] = digest("judge-identity-v1", ident)

        def compute(tmp: Path) -> dict[str, Any]:
            with open(gen_dir / "generations.jsonl", encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh]
            index = np.asarray([row["pool_index"] for row in rows], dtype=np.int64)
            gold, gen = [], []
            for row in rows:
                prompt, answer = split_prompt(self.pool.messages[row["pool_index"]])
                gold.append(with_answer(prompt, answer))
                gen.append(with_answer(prompt, row["answer"]))
            judge = Judge(j.scorer, j, e, show_progress=self.show_progress, engine=self.cfg.engine)
            g, h, stats = judge.score_pairs(gold, gen, round_model=model)
            s = instance_scores(g, h, direction=judge.direction)
            save_arrays(tmp / "arrays", {}, pool_index=index, gold=g, generated=h, S=s)
            return {
                **stats,
                "scored": int(np.isfinite(s).sum()),
                "mean_S": float(np.nanmean(s)) if np.isfinite(s).any() else None,
            }

        self._run(step_id(r, "judge"), settings, self._inputs(step_id(r, "generate")), compute, legacy=legacy)

    def reweight(self, r: int) -> None:
        w = self.cfg.reweight
        settings = {"method": w.method, "temperature": w.temperature}
        judged = self.steps[step_id(r, "judge")].folder / "arrays"
        before = self.weights.copy()

        def compute(tmp: Path) -> dict[str, Any]:
            index, s = load_arrays(judged, "pool_index", "S")
            signal, count = cluster_signal(self.labels[index], s, self.k)
            after = update_weights(before, signal, count, method=w.method, temperature=w.temperature)
            save_arrays(tmp / "arrays", {}, signal=signal, count=count, before=before, weights=after)
            (tmp / "weights.json").write_text(json.dumps({
                "weights_before": before.tolist(), "signal": [None if np.isnan(x) else x for x in signal.tolist()],
                "scored": count.tolist(), "weights": after.tolist()}, indent=1) + "\n")  # fmt: skip
            return {"clusters_scored": int((count > 0).sum()), "weight_min": float(after.min()),
                    "weight_max": float(after.max())}  # fmt: skip

        res = self._run(step_id(r, "reweight"), settings, self._inputs(step_id(r, "judge")), compute)
        self.weights = load_arrays(res.folder / "arrays", "weights")[0]

    # -- helpers ------------------------------------------------------------------------------------------
    def _run(self, sid: str, settings: dict[str, Any], inputs: dict[str, str], compute, legacy=None) -> StepResult:
        res = self.rd.ensure(sid, settings, inputs, compute, legacy_settings=legacy)
        if not res.computed:
            logger.info("%s: finished earlier, reusing %s", sid, res.folder)
        self.steps[sid] = res
        return res

    def _inputs(self, *sids: str) -> dict[str, str]:
        return {sid: self.steps[sid].digest for sid in sids}

    def _selected_mask(self) -> np.ndarray:
        mask = np.zeros(len(self.pool), dtype=bool)
        for idx in self.picked:
            mask[idx] = True
        return mask

    # -- the whole run ------------------------------------------------------------------------------------
    def run(self) -> None:
        self.prepare()
        rounds = self.cfg.rounds
        for r in range(1, rounds + 1):
            self.select(r)
            if r < rounds or self.cfg.train.train_final:
                self.train(r)
            if r == rounds:
                break
            self.generate(r)
            self.judge(r)
            self.reweight(r)

    def round_report(self, r: int) -> dict[str, Any]:
        """What round ``r`` did, from its markers and artifacts (for the manifest)."""
        rep: dict[str, Any] = {"round": r, "size": self.plan.rounds[r - 1].draw, "seconds": {}, "stats": {}}
        for step in ("select", "train", "generate", "judge", "reweight"):
            res = self.steps.get(step_id(r, step))
            if res is not None:
                rep["seconds"][step] = res.marker["seconds"]
                rep["stats"][step] = res.marker["stats"]
        sel = self.steps[step_id(r, "select")].folder / "arrays"
        counts, weights = load_arrays(sel, "counts", "weights")
        rep["weights"], rep["counts"] = weights.tolist(), counts.tolist()
        rw = self.steps.get(step_id(r, "reweight"))
        if rw is not None:
            rep.update({k: v for k, v in read_json(rw.folder / "weights.json").items() if k in ("signal", "scored")})
            rep["weights_after"] = read_json(rw.folder / "weights.json")["weights"]
        return rep


def run_iterate(
    cfg: IterateConfig,
    *,
    pool: Any = None,
    show_progress: bool | None = None,
    restart_from: str | None = None,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    report: Any = None,
) -> IterSelection:
    """Run (or resume) iterative kMQ for a resolved config; see the module docstring.

    ``report`` (:func:`kmq.report.write_report`) adds ``report.html`` to the run directory, published with it.

    The outputs are checked first (:mod:`kmq.publish`): the run directory must be new, empty, or a ``kmq
    iterate`` run directory (``overwrite`` lifts that), and no output may be an input (``inputs`` adds files
    such as the config file).
    """
    t0 = time.perf_counter()
    cfg = absolute_paths(cfg)
    if not cfg.run_dir:
        raise InvalidParameterError(
            "kmq iterate needs a run directory (pass --run-dir DIR, or --out for the default)."
        )
    outputs = plan_iterate_outputs(cfg, pool=pool, overwrite=overwrite, inputs=inputs)
    pool, budget, plan = _setup(cfg, pool)
    loop = _Loop(cfg, pool, budget, plan, show_progress)
    with loop.rd.lock():
        outputs.claim(versions()["argv"])
        if restart_from:
            loop.rd.restart_from(restart_from)
        loop.run()
        return _finish(cfg, pool, loop, t0, outputs, report)


def plan_iterate_outputs(
    cfg: IterateConfig,
    *,
    pool: Any = None,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    dry_run: bool = False,
) -> OutputPlan:
    """Check the outputs of an iterate run before anything runs (see :func:`kmq.selection.plan_run`)."""
    extra = input_paths(*inputs, *([pool.source] if pool is not None else []))
    return plan_run(
        IterSelection, cfg, out=cfg.out, run_dir=cfg.run_dir, overwrite=overwrite, inputs=extra, dry_run=dry_run
    )


def _finish(
    cfg: IterateConfig, pool: Any, loop: _Loop, t0: float, outputs: OutputPlan, report: Any = None
) -> IterSelection:
    """The union of the rounds as a selection, written like ``kmq select`` writes one."""
    idx = np.concatenate(loop.picked)
    rounds = np.concatenate([np.full(len(p), r, dtype=np.int32) for r, p in enumerate(loop.picked, start=1)])
    clusters = loop.labels[idx]
    pairs = zip(rounds.tolist(), clusters.tolist(), strict=True)
    sel = IterSelection(
        indices=idx, ids=[pool.ids[i] for i in idx], clusters=clusters, quality=loop.quality[idx],
        reason=[f"round {r}: cluster {c}, {loop.within} draw" for r, c in pairs],
        pool=pool, config=cfg, rounds=rounds,
        duplicates=[] if loop.dup_of is None else [
            (pool.ids[i], pool.ids[j]) for i, j in enumerate(loop.dup_of.tolist()) if j >= 0
        ],
    )  # fmt: skip
    _run_tables(cfg, pool, loop, sel)
    sel.manifest = _manifest(cfg, pool, loop, sel, t0)
    sel.manifest["diagnostics"] = run_diagnostics(sel, loop.vectors, sel.pool_info["candidate"].nonzero()[0],
                                                  seed=cfg.seed)  # fmt: skip
    sel.publish(out=cfg.out, run_dir=cfg.run_dir, plan=outputs, report=report)
    return sel


def _run_tables(cfg: IterateConfig, pool: Any, loop: _Loop, sel: IterSelection) -> None:
    """pool.parquet, clusters.parquet and the map of the union of the rounds (as ``kmq select`` writes them).

    The clustering vectors come from the cache (the prepare step computed them); centroids are the clusters'
    normalised mean vectors, each cluster's quota what the rounds drew from it.
    """
    from kmq.stages import Stages

    loop.vectors = Stages(cfg.run_config(), pool, loop.show_progress).vectors().value
    n = len(pool)
    candidates = np.flatnonzero(loop.dup_of < 0) if loop.dup_of is not None else np.arange(n)
    fill_run_tables(
        sel, X=loop.vectors, labels=loop.labels, centroids=None, quality=loop.quality, candidates=candidates,
        dup_of=loop.dup_of, quota=None, seed=cfg.seed,
    )  # fmt: skip


def plan_iterate(cfg: IterateConfig, *, pool: Any = None) -> Plan:
    """The plan of a run without running anything (``--dry-run``).

    Reads the pool, checks the base model (:func:`check_base_model`) and lists the steps an earlier run of
    the run directory finished (their ``DONE`` markers: :attr:`Plan.done`); writes nothing.
    """
    plan = _setup(cfg, pool)[2]
    plan.done = RunDir(cfg.run_dir).finished() if cfg.run_dir else []
    return plan


def check_base_model(cfg: IterateConfig) -> None:
    """Check that the base model (``--model``) resolves, before any step runs (``--dry-run`` too).

    Only when a round trains (every round but the last; the last too with ``train.train_final``). The trl
    trainer loads it: a folder with a ``config.json``, or a hub name, which must be in the local Hugging Face
    cache when ``HF_HUB_OFFLINE`` is set (:func:`kmq.hf.check_model`). The command trainer hands it to the
    user's command as it is (a hub name, ``s3://...``, anything): only a local-looking path (``/``, ``./``,
    ``../``, ``~``) must exist.

    Raises
    ------
    MissingArtifactError, InvalidParameterError
        Naming the model, what was looked for and where.
    """
    if cfg.rounds == 1 and not cfg.train.train_final:
        return  # nothing is trained: the model is never used
    model = cfg.model
    if cfg.train.trainer == "command":
        path = os.path.abspath(os.path.expanduser(model))
        if model.startswith(("/", "./", "../", "~")) and not os.path.exists(path):
            raise MissingArtifactError(
                f"The base model (--model) {model!r} is a path, and {path} does not exist. Pass the model your "
                "--train-command takes as {base_model}."
            )
        return
    from kmq import hf

    hf.check_model(model, purpose=f"the base model (--model {model})",
                   hint="Pass the folder of a saved model or a hub name (org/model) to --model.")  # fmt: skip


def _setup(cfg: IterateConfig, pool: Any) -> tuple[Any, int, Plan]:
    check_config(cfg)
    if cfg.train.trainer == "command":
        from kmq.loop.train import check_command

        check_command(cfg.train.command or "", shell=cfg.train.shell)
    check_judge(cfg.judge.scorer)
    from kmq.data import load_pool

    pool = load_pool(cfg, pool)
    budget = resolve_budget(cfg.budget, len(pool))
    plan = make_plan(cfg, len(pool), budget)
    check_base_model(cfg)
    return pool, budget, plan


def _manifest(cfg: IterateConfig, pool: Any, loop: _Loop, sel: IterSelection, t0: float) -> dict[str, Any]:
    counts: dict[str, Any] = {
        "pool": len(pool),
        "selected": len(sel),
        "clusters_with_picks": int(len(np.unique(sel.clusters))),
    }
    per_source = source_counts(pool, sel.indices)
    if per_source is not None:
        counts["per_source"] = per_source
    prep = loop.steps["prepare"].marker
    return {
        "command": "iterate",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "seed": cfg.seed,
        "input": input_summary(pool),
        "budget": {"requested": cfg.budget, "resolved": loop.budget, "rounds": cfg.rounds, "sizes": loop.plan.sizes},
        "method": {
            "name": "iterative-kmq",
            "params": {
                "allocation": loop.allocation,
                "within": loop.within,
                "temperature": loop.kmq_temperature,
                "reweight": cfg.reweight.method,
                "reweight_temperature": cfg.reweight.temperature,
                "judge": cfg.judge.scorer,
                "trainer": cfg.train.trainer,
                "train_mode": cfg.train.mode,
                "generator": cfg.generate.generator,
                "train_final": cfg.train.train_final,
            },
        },  # fmt: skip
        "stages": {"prepare": {**prep["stats"], "seconds": prep["seconds"]}},
        "rounds": [loop.round_report(r) for r in range(1, cfg.rounds + 1)],
        "warnings": list(prep["stats"].get("warnings", [])),
        "counts": counts,
        "seconds": round(time.perf_counter() - t0, 3),
    }
