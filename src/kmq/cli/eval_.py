"""``kmq eval``: evaluate a model (and a LoRA adapter) on lm-eval tasks, kmq's local tasks and judged tasks."""

from __future__ import annotations

import argparse
import logging
import sys

from kmq.errors import InvalidParameterError

logger = logging.getLogger("kmq.cli.eval")

EXAMPLES = """examples:
  kmq eval ./my-model --tasks arc_easy,gsm8k --limit 100             (a smoke run: flagged in the table)
  kmq eval ./my-model --adapter ./lora --tasks mmlu,truthfulqa_mc2 --out results.json
  kmq eval org/model --tasks paper --device cuda --precision bf16      (the paper's suite and shots)
  kmq eval ./my-model --tasks humaneval --allow-code-execution         (runs the generated code in a sandbox)
  OPENAI_API_KEY=... kmq eval ./my-model --tasks alpaca_eval,mt_bench --judge judge:gpt-4o@https://api.openai.com/v1
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model on benchmark tasks (lm-eval)",
        description="Evaluate MODEL (a local folder or hub name) on lm-eval tasks, kmq's local tasks for the "
        "datakit eval sets (arc_easy, arc_challenge, mmlu, gsm8k, truthfulqa_mc1/2, bbh, humaneval, mbpp) and the "
        "judged tasks alpaca_eval and mt_bench. stdout: a Markdown table of each task's main metric; --out: "
        "the full results (metrics, standard errors, task versions and settings, the model's fingerprint).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="a local model folder or a hub name")
    p.add_argument("--tasks", required=True, metavar="T1,T2|paper",
                   help="comma-separated task names, or 'paper': the paper's suite with its shots")  # fmt: skip
    p.add_argument("--adapter", default=None, metavar="DIR", help="a peft (LoRA) adapter applied to MODEL")
    p.add_argument("--backend", default="hf", choices=("hf", "vllm"), help="hf (default) or vllm (when installed)")
    p.add_argument("--limit", default=None, type=_limit, metavar="N",
                   help="at most N examples per task (a smoke run; a number below 1 is a fraction)")  # fmt: skip
    p.add_argument("--num-fewshot", default=None, type=int, metavar="N", help="few-shot examples (default: each "
                   "task's own)")  # fmt: skip
    p.add_argument("--data-dir", default=None, metavar="DIR", help="another copy of the datakit for the local tasks")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="weights precision (auto: bf16 where the device computes it natively, else fp32 on a CPU)")
    p.add_argument("--batch-size", default=None, type=_batch_size, metavar="N",
                   help="batch size (an int or 'auto'; default 8)")  # fmt: skip
    p.add_argument("--max-new-tokens", default=None, type=int, metavar="N",
                   help="longest generated answer (default: each task's own; 1024 for the judged tasks)")  # fmt: skip
    p.add_argument("--seed", default=0, type=int, help="lm-eval's random, numpy, torch and few-shot seeds (default 0)")
    p.add_argument("--revision", default=None, metavar="REV", help="hub revision of MODEL")
    p.add_argument("--trust-remote-code", action="store_true", help="let MODEL run its own code (off unless given)")
    p.add_argument("--allow-code-execution", action="store_true",
                   help="run the generated code of code tasks (humaneval, mbpp) in kmq's sandbox")  # fmt: skip
    p.add_argument("--judge", default=None, metavar="judge:MODEL@URL",
                   help="the judge of alpaca_eval and mt_bench (any OpenAI-compatible endpoint; key from "
                        "$OPENAI_API_KEY)")  # fmt: skip
    p.add_argument("--out", default=None, metavar="RESULTS.json", help="also write the full results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file kmq did not write")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="debug logging, with lm-eval's own logs and progress bars")  # fmt: skip
    p.set_defaults(func=run)


def _limit(text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of examples (a fraction below 1), got {text!r}") from None
    return int(value) if value.is_integer() else value


def _batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or 'auto', got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from kmq.evaluate.harness import evaluate_model
    from kmq.evaluate.results import results_table

    if not args.tasks.strip(", "):
        raise InvalidParameterError("--tasks is empty: pass task names (arc_easy,gsm8k) or 'paper'.")
    results = evaluate_model(
        args.model, tasks=args.tasks, adapter=args.adapter, backend=args.backend, limit=args.limit,
        data_dir=args.data_dir, device=args.device, precision=args.precision, batch_size=args.batch_size,
        num_fewshot=args.num_fewshot, seed=args.seed, allow_code_execution=args.allow_code_execution,
        judge=args.judge, max_new_tokens=args.max_new_tokens, revision=args.revision,
        trust_remote_code=args.trust_remote_code, out=args.out, overwrite=args.overwrite,
        show_progress=None if args.verbose else False,
    )  # fmt: skip
    sys.stdout.write(results_table(results))
    if args.out:
        logger.info("wrote %s", args.out)
    return 0
