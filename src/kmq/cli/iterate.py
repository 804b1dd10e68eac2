"""``kmq iterate``: iterative kMQ (train, generate, judge, reweight per round); rerunning resumes."""

from __future__ import annotations

import argparse
import sys

from kmq.cli._common import (
    add_common_options,
    add_embed_options,
    add_overwrite_option,
    add_pool_options,
    config_inputs,
    require,
    run_outputs,
    show_progress,
)
from kmq.cli._flags import setting, setting_overrides

EXAMPLES = """examples:
  kmq iterate pool.jsonl --budget 6000 --rounds 3 --model Qwen/Qwen2.5-0.5B --out subset.jsonl --dry-run
  kmq iterate pool.jsonl --budget 6000 --rounds 3 --model Qwen/Qwen2.5-0.5B --out subset.jsonl \\
      --generator vllm --judge reward:Skywork/Skywork-Reward-V2-Qwen3-0.6B
  kmq iterate pool.jsonl --budget 0.05 --model ./llama --out s.jsonl --trainer command \\
      --train-command 'llamafactory-cli train cfg.yaml dataset_dir={data} output_dir={output_dir}'
  kmq iterate pool.jsonl --budget 600 --model ./tiny --out s.jsonl --judge relevance --restart-from r01-judge
  (rerun the same command after a crash: it continues from the last finished step)
"""


def register(sub: argparse._SubParsersAction) -> None:
    from kmq.loop.config import IterateConfig as C
    from kmq.methods import get_method

    kmq_choices = get_method("kmq").choices

    p = sub.add_parser(
        "iterate",
        help="iterative kMQ: select, train, generate, judge and reweight over rounds (resumable)",
        description="Select BUDGET records of POOL over ROUNDS rounds of iterative kMQ (paper Algorithm 1) and "
        "write them in POOL's format. Every step is saved in the run directory; rerun to resume.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pool_options(p, C)
    p.add_argument("--budget", default=None, help="a count (1000) or a fraction of the pool (0.1)")
    setting(p, C, "rounds", "--rounds")
    setting(p, C, "model", "--model")
    p.add_argument("--out", default=None, metavar="SUBSET",
                   help="the subset: .jsonl .json .parquet .csv (.gz), or DIR/ for a save_to_disk folder")  # fmt: skip
    p.add_argument("--run-dir", default=None, help="run directory (default: SUBSET.kmq-run beside the subset)")
    add_overwrite_option(p)
    setting(p, C, "shuffle", "--shuffle")
    setting(p, C, "dedup", "--dedup")
    setting(p, C, "out_format", "--out-format")
    setting(p, C, "report", "--report")
    p.add_argument("--restart-from", default=None, metavar="STEP",
                   help="delete STEP (prepare, rNN-select|train|generate|judge|reweight) and all later")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the plan (rounds, sizes, work) and write nothing")
    g = p.add_argument_group("training")
    for key, flag in TRAIN_FLAGS.items():
        setting(g, C, f"train.{key}", flag, metavar="CMD" if key == "command" else None)
    g = p.add_argument_group("generation")
    for key, flag in GENERATE_FLAGS.items():
        setting(g, C, f"generate.{key}", flag, metavar="VAR" if key == "api_key_env" else None)
    g = p.add_argument_group("judge and reweighting")
    setting(g, C, "judge.scorer", "--judge",
            help="perplexity (round model) | relevance | reward:MODEL | judge:MODEL@URL")  # fmt: skip
    setting(g, C, "reweight.method", "--reweight")
    setting(g, C, "reweight.temperature", "--reweight-temperature")
    for key, flag in JUDGE_FLAGS.items():
        setting(g, C, f"judge.{key}", flag, metavar={"revision": "REV", "judge_api_key_env": "VAR"}.get(key))
    g = p.add_argument_group("clustering and quality (the kMQ draw)")
    setting(g, C, "cluster.clusters", "--clusters")
    setting(g, C, "score.scorer", "--scorer", help="quality for the within-cluster draw")
    setting(g, C, "score.relevance_embedder", "--relevance-embedder")
    setting(g, C, "score.allow_empty_responses", "--allow-empty-responses")
    g.add_argument("--within", default=None, choices=list(kmq_choices["within"]),
                   help="draw inside a cluster (default softmax of standardised quality)")  # fmt: skip
    g.add_argument("--allocation", default=None, choices=list(kmq_choices["allocation"]),
                   help="cluster prior multiplying the weights (default equal, Algorithm 1)")  # fmt: skip
    g.add_argument("--temperature", type=float, default=None, help="within-cluster softmax temperature (default 1)")
    add_embed_options(p, C, scorer_sections=("score", "judge"))
    add_common_options(p, C)
    p.set_defaults(func=run)


TRAIN_FLAGS = {
    "trainer": "--trainer", "command": "--train-command", "shell": "--train-shell", "mode": "--train-mode",
    "finetune": "--finetune", "epochs": "--epochs", "lr": "--lr", "batch_size": "--batch-size",
    "grad_accum": "--grad-accum", "max_seq_length": "--max-seq-length", "warmup_ratio": "--warmup-ratio",
    "max_steps": "--max-steps", "lora_r": "--lora-r", "lora_alpha": "--lora-alpha", "lora_dropout": "--lora-dropout",
    "lora_target_modules": "--lora-target-modules", "device": "--train-device", "train_final": "--train-final",
}  # fmt: skip
GENERATE_FLAGS = {
    "generator": "--generator", "max_new_tokens": "--max-new-tokens", "batch_size": "--gen-batch-size",
    "device": "--gen-device", "concurrency": "--gen-concurrency", "api_key_env": "--gen-api-key-env",
}  # fmt: skip
JUDGE_FLAGS = {
    "device": "--judge-device", "precision": "--judge-precision", "batch_size": "--judge-batch-size",
    "max_length": "--judge-max-length", "revision": "--judge-revision", "judge_concurrency": "--judge-concurrency",
    "judge_max_retries": "--judge-max-retries", "judge_timeout": "--judge-timeout",
    "judge_api_key_env": "--judge-api-key-env", "judge_unparsable": "--judge-unparsable",
}  # fmt: skip


def overrides(args: argparse.Namespace) -> dict:
    params = {k: v for k in ("allocation", "within", "temperature") if (v := getattr(args, k)) is not None}
    out = {
        **setting_overrides(args), **run_outputs(args), "pool": args.pool, "budget": args.budget,
        "select.params": params or None,
    }  # fmt: skip
    modules = out.get("train.lora_target_modules")
    if modules is not None and modules != "all-linear":
        out["train.lora_target_modules"] = [m.strip() for m in modules.split(",") if m.strip()]
    return out


def run(args: argparse.Namespace) -> int:
    from kmq import hf
    from kmq.loop.api import build_iterate_config
    from kmq.loop.runner import plan_iterate, plan_iterate_outputs, run_iterate

    cfg = build_iterate_config(args.config, overrides(args))
    require(cfg, "iterate", "pool", "budget", "out")
    if args.dry_run:
        plan_iterate_outputs(cfg, overwrite=args.overwrite, inputs=config_inputs(args), dry_run=True)
        plan = plan_iterate(cfg)
        where = (f"run dir {cfg.run_dir} exists: {len(plan.done)} step(s) finished" if plan.done
                 else f"run dir would be {cfg.run_dir}")  # fmt: skip
        sys.stdout.write(f"dry run: nothing is written ({where})\n{plan.format()}\n")
        return 0
    with hf.library_output(show_progress(args)):  # -q: no library bars, info logs or warnings either
        report = None
        if cfg.report:
            from kmq.report import write_report as report
        sel = run_iterate(
            cfg,
            show_progress=show_progress(args),
            restart_from=args.restart_from,
            overwrite=args.overwrite,
            inputs=config_inputs(args),
            report=report,
        )
    m = sel.manifest
    lines = [
        f"subset    {cfg.out}  ({len(sel)} records, {m['input']['format']} as "
        f"{m.get('outputs', {}).get('subset', {}).get('container', m['input']['container'])})",
        f"run dir   {sel.run_dir}  ({', '.join(_run_files(sel.run_dir))}, rounds/)",
        f"pool      {m['input']['source']}  ({m['input']['records']} records)",
        f"rounds    {cfg.rounds}: " + " + ".join(str(s) for s in m["budget"]["sizes"])
        + f"  (judge {cfg.judge.scorer}, {cfg.reweight.method} reweighting)",
    ]  # fmt: skip
    for rep in m["rounds"]:
        line = f"  r{rep['round']:02d}    drew {rep['size']} from {sum(c > 0 for c in rep['counts'])} clusters"
        if "scored" in rep:
            line += f"; signal from {sum(c > 0 for c in rep['scored'])} clusters, weights "
            line += f"{min(rep['weights_after']):.3g}..{max(rep['weights_after']):.3g}"
        lines.append(line)
    if "per_source" in m["counts"]:
        top = sorted(m["counts"]["per_source"].items(), key=lambda kv: -kv[1])
        lines.append("sources   " + ", ".join(f"{k}={v}" for k, v in top))
    lines += [f"warning   {w}" for w in m.get("warnings", [])]
    lines.append(f"time      {m['seconds']:.1f}s")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _run_files(run_dir) -> list[str]:
    """The run directory's result files (not the marker or the duplicates list)."""
    skip = ("kmq-run.json", "duplicates.parquet", "DONE-prepare", ".lock")
    return sorted(p.name for p in run_dir.iterdir() if p.is_file() and p.name not in skip)
