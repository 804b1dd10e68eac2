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
    embed_overrides,
    show_progress,
)

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
    p = sub.add_parser(
        "iterate",
        help="iterative kMQ: select, train, generate, judge and reweight over rounds (resumable)",
        description="Select BUDGET records of POOL over ROUNDS rounds of iterative kMQ (paper Algorithm 1) and "
        "write them in POOL's format. Every step is saved in the run directory; rerun to resume.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pool_options(p)
    p.add_argument("--budget", required=True, help="a count (1000) or a fraction of the pool (0.1)")
    p.add_argument("--rounds", type=int, default=None, help="number of rounds R (default 3); b is split exactly")
    p.add_argument("--model", default=None, help="base model trained each round (hub name or local folder)")
    p.add_argument("--out", required=True, metavar="SUBSET", help="where to write the subset (format of the pool)")
    p.add_argument("--run-dir", default=None, help="run directory (default: SUBSET.kmq-run beside the subset)")
    add_overwrite_option(p)
    p.add_argument("--restart-from", default=None, metavar="STEP",
                   help="delete STEP (prepare, rNN-select|train|generate|judge|reweight) and all later")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print the plan (rounds, sizes, work) and write nothing")
    _train_options(p.add_argument_group("training"))
    _generate_options(p.add_argument_group("generation"))
    _judge_options(p.add_argument_group("judge and reweighting"))
    g = p.add_argument_group("clustering and quality (the kMQ draw)")
    g.add_argument("--clusters", default=None, help="k, or 'auto' to pick k by silhouette (default: sqrt(n/2) rule)")
    g.add_argument("--scorer", default=None, help="quality for the within-cluster draw (default heuristic)")
    g.add_argument("--relevance-embedder", default=None, help="heuristic relevance encoder when --embedder is npy:")
    g.add_argument("--within", default=None, choices=["softmax", "proportional", "uniform", "top"],
                   help="draw inside a cluster (default softmax of standardised quality)")  # fmt: skip
    g.add_argument("--allocation", default=None, choices=["equal", "proportional"],
                   help="cluster prior multiplying the weights (default equal, Algorithm 1)")  # fmt: skip
    g.add_argument("--temperature", type=float, default=None, help="within-cluster softmax temperature (default 1)")
    add_embed_options(p)
    add_common_options(p)
    p.set_defaults(func=run)


def _train_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--trainer", default=None, choices=["trl", "command"], help="trl (default) or command")
    g.add_argument("--train-command", default=None, metavar="CMD",
                   help="placeholders {data} {output_dir} {base_model} {init_model} {round} {seed}")  # fmt: skip
    g.add_argument("--train-shell", action="store_true", default=None, help="run --train-command through the shell")
    g.add_argument("--train-mode", default=None, choices=["retrain", "continue"],
                   help="retrain: base model, all selected (default); continue: last model, new batch")  # fmt: skip
    g.add_argument("--finetune", default=None, choices=["lora", "full"], help="trl: LoRA (default) or full")
    g.add_argument("--epochs", type=float, default=None, help="epochs per round (default 3)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default 2e-4 LoRA, 2e-5 full)")
    g.add_argument("--batch-size", type=int, default=None, help="per-device batch size (default 4)")
    g.add_argument("--grad-accum", type=int, default=None, help="gradient accumulation steps (default 16)")
    g.add_argument("--max-seq-length", type=int, default=None, help="longest training sequence (default 2048)")
    g.add_argument("--warmup-ratio", type=float, default=None, help="warm-up share of the steps (default 0.03)")
    g.add_argument("--max-steps", type=int, default=None, help="stop each round after N optimizer steps")
    g.add_argument("--lora-r", type=int, default=None, help="LoRA rank (default 16)")
    g.add_argument("--lora-alpha", type=int, default=None, help="LoRA alpha (default 32)")
    g.add_argument("--lora-dropout", type=float, default=None, help="LoRA dropout (default 0.05)")
    g.add_argument("--lora-target-modules", default=None, help="comma-separated modules or all-linear (default)")
    g.add_argument("--train-device", default=None, help="training device (default cuda when available)")
    g.add_argument("--train-final", action="store_true", default=None,
                   help="also train on the final selection (off: fine-tune with your own recipe)")  # fmt: skip


def _generate_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--generator", default=None, help="hf (default) | vllm | openai:MODEL@URL")
    g.add_argument("--max-new-tokens", type=int, default=None, help="longest answer (default 512)")
    g.add_argument("--gen-batch-size", type=int, default=None, help="hf: prompts per batch (default 8)")
    g.add_argument("--gen-device", default=None, help="hf: torch device (default cuda when available)")
    g.add_argument("--gen-concurrency", type=int, default=None, help="openai: requests in flight (default 8)")
    g.add_argument("--gen-api-key-env", default=None, metavar="VAR",
                   help="openai: environment variable of the API key (default OPENAI_API_KEY)")  # fmt: skip


def _judge_options(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--judge", default=None,
                   help="perplexity (default, round model) | relevance | reward:MODEL | judge:MODEL@URL")  # fmt: skip
    g.add_argument("--reweight", default=None, choices=["multiplicative", "softmax"],
                   help="multiplicative w*softmax(s/T) (default) or softmax(s/T) (authors' code)")  # fmt: skip
    g.add_argument("--reweight-temperature", type=float, default=None, help="T of the weight update (default 1)")
    g.add_argument("--judge-device", default=None, help="torch device of model judges (default --device)")
    g.add_argument("--judge-precision", default=None, choices=["fp32", "bf16", "fp16"], help="model judge precision")
    g.add_argument("--judge-batch-size", type=int, default=None, help="sequences per forward pass (default 8)")
    g.add_argument("--judge-max-length", type=int, default=None, help="longest judge input in tokens (default 2048)")
    g.add_argument("--judge-revision", default=None, metavar="REV", help="hub revision of a reward:M judge model")
    g.add_argument("--judge-concurrency", type=int, default=None, help="judge:M@URL: requests in flight (default 8)")
    g.add_argument("--judge-max-retries", type=int, default=None, help="judge:M@URL: retries (default 5)")
    g.add_argument("--judge-timeout", type=float, default=None, help="judge:M@URL: seconds per request")
    g.add_argument("--judge-api-key-env", default=None, metavar="VAR", help="judge:M@URL: env var of the API key")
    g.add_argument("--judge-unparsable", default=None, choices=["error", "nan", "min"],
                   help="judge:M@URL: answers without [[rating]] (default nan: left unscored)")  # fmt: skip


def overrides(args: argparse.Namespace) -> dict:
    from kmq.errors import InvalidParameterError

    clusters = args.clusters
    if clusters is not None and clusters != "auto":
        if not clusters.isdigit():
            raise InvalidParameterError(f"--clusters must be a positive integer or 'auto'. Got {clusters!r} instead.")
        clusters = int(clusters)
    params = {k: v for k in ("allocation", "within", "temperature") if (v := getattr(args, k)) is not None}
    modules = args.lora_target_modules
    if modules is not None and modules != "all-linear":
        modules = [m.strip() for m in modules.split(",") if m.strip()]
    return {
        **embed_overrides(args),
        "pool": args.pool, "budget": args.budget, "rounds": args.rounds, "model": args.model, "out": args.out,
        "run_dir": args.run_dir, "cluster.clusters": clusters, "score.scorer": args.scorer,
        "score.relevance_embedder": args.relevance_embedder, "select.params": params or None,
        "train.trainer": args.trainer, "train.command": args.train_command, "train.shell": args.train_shell,
        "train.mode": args.train_mode, "train.finetune": args.finetune, "train.epochs": args.epochs,
        "train.lr": args.lr, "train.batch_size": args.batch_size, "train.grad_accum": args.grad_accum,
        "train.max_seq_length": args.max_seq_length, "train.warmup_ratio": args.warmup_ratio,
        "train.max_steps": args.max_steps, "train.lora_r": args.lora_r, "train.lora_alpha": args.lora_alpha,
        "train.lora_dropout": args.lora_dropout, "train.lora_target_modules": modules,
        "train.device": args.train_device, "train.train_final": args.train_final,
        "generate.generator": args.generator, "generate.max_new_tokens": args.max_new_tokens,
        "generate.batch_size": args.gen_batch_size, "generate.device": args.gen_device,
        "generate.concurrency": args.gen_concurrency, "generate.api_key_env": args.gen_api_key_env,
        "judge.scorer": args.judge, "judge.device": args.judge_device or args.device,
        "judge.precision": args.judge_precision, "judge.batch_size": args.judge_batch_size,
        "judge.max_length": args.judge_max_length, "judge.revision": args.judge_revision,
        "judge.judge_concurrency": args.judge_concurrency,
        "judge.judge_max_retries": args.judge_max_retries, "judge.judge_timeout": args.judge_timeout,
        "judge.judge_api_key_env": args.judge_api_key_env, "judge.judge_unparsable": args.judge_unparsable,
        "judge.trust_remote_code": args.trust_remote_code, "score.trust_remote_code": args.trust_remote_code,
        "reweight.method": args.reweight, "reweight.temperature": args.reweight_temperature,
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from kmq.loop.api import build_iterate_config
    from kmq.loop.runner import plan_iterate, plan_iterate_outputs, run_iterate

    cfg = build_iterate_config(args.config, overrides(args))
    if args.dry_run:
        plan_iterate_outputs(cfg, overwrite=args.overwrite, inputs=config_inputs(args), dry_run=True)
        plan = plan_iterate(cfg)
        sys.stdout.write(f"dry run: nothing is written (run dir would be {cfg.run_dir})\n{plan.format()}\n")
        return 0
    sel = run_iterate(
        cfg,
        show_progress=show_progress(args),
        restart_from=args.restart_from,
        overwrite=args.overwrite,
        inputs=config_inputs(args),
    )
    m = sel.manifest
    lines = [
        f"subset    {cfg.out}  ({len(sel)} records, {m['input']['format']} as {m['input']['container']})",
        f"run dir   {sel.run_dir}  (config.yaml, manifest.json, selection.parquet, rounds/)",
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
    lines.append(f"time      {m['seconds']:.1f}s")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
