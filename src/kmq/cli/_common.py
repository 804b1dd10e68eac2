"""Options shared by several commands."""

from __future__ import annotations

import argparse


def add_pool_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "pool", metavar="POOL", help="a JSON/JSONL(.gz)/Parquet/CSV file, a save_to_disk folder or a hub dataset"
    )
    p.add_argument("--format", default=None, help="auto (default) | messages | sharegpt | alpaca | prompt_completion")
    p.add_argument("--split", default=None, help="split of a Hugging Face dataset (default: train)")


def add_embed_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("embedding")
    g.add_argument("--embedder", default=None, help="minilm (default, bundled) | st:NAME_OR_PATH | hashing | npy:PATH")
    g.add_argument("--embed-on", default=None, choices=["conversation", "prompt", "response"],
                   help="text view to embed (default: conversation)")  # fmt: skip
    g.add_argument("--embed-batch-size", type=int, default=None, help="windows per forward pass (default 64)")
    g.add_argument("--precision", default=None, choices=["fp32", "bf16"], help="encoder precision (default fp32)")
    g.add_argument("--device", default=None, help="torch device for model encoders (default cpu)")
    g.add_argument("--trust-remote-code", action="store_true", default=None,
                   help="let a model repository run its own code (off unless you pass this)")  # fmt: skip


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="one seed for every random choice (default 0)")
    p.add_argument("--config", default=None, metavar="FILE.yaml", help="settings file; flags override it")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr, no progress bars")
    p.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")


def add_overwrite_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output kmq did not write, or a run directory that is not this command's "
        "(inputs are never overwritten)",
    )


def config_inputs(args: argparse.Namespace) -> list[str]:
    """Files the command reads besides the pool and embeddings (they may not be outputs): the --config file."""
    return [args.config] if getattr(args, "config", None) else []


def embed_overrides(args: argparse.Namespace) -> dict:
    return {
        "embed.embedder": args.embedder,
        "embed.embed_on": args.embed_on,
        "embed.batch_size": args.embed_batch_size,
        "embed.precision": args.precision,
        "embed.device": args.device,
        "embed.trust_remote_code": args.trust_remote_code,
        "format": args.format,
        "split": args.split,
        "seed": args.seed,
    }


def show_progress(args: argparse.Namespace) -> bool | None:
    return False if args.quiet else None


SCORER_HELP = (
    "heuristic | column:FIELD | relevance | perplexity:MODEL | ifd:MODEL | reward:MODEL "
    "| deita:COMPLEXITY_MODEL,QUALITY_MODEL | judge:MODEL@URL "
    "(MODEL: hub name or local folder; higher = better for every scorer)"
)


def add_score_options(g: argparse._ArgumentGroup) -> None:
    """Flags of the model-based scorers (``--trust-remote-code`` applies to scorer models too)."""
    g.add_argument("--score-device", default=None, help="torch device of model scorers (default: --device, cpu)")
    g.add_argument("--score-precision", default=None, choices=["fp32", "bf16", "fp16"],
                   help="model scorer precision (default fp32)")  # fmt: skip
    g.add_argument("--score-batch-size", type=int, default=None, help="sequences per forward pass (default 8)")
    g.add_argument("--score-revision", default=None, metavar="REV",
                   help="hub revision (branch, tag or commit) of the scorer model(s)")  # fmt: skip
    g.add_argument("--max-length", type=int, default=None,
                   help="longest scorer input in tokens; longer keep their end, logged (default 2048)")  # fmt: skip
    g.add_argument("--judge-concurrency", type=int, default=None, help="judge: requests in flight (default 8)")
    g.add_argument("--judge-max-retries", type=int, default=None,
                   help="judge: retries on HTTP 429/5xx and timeouts (default 5)")  # fmt: skip
    g.add_argument("--judge-timeout", type=float, default=None, help="judge: seconds per request (default 120)")
    g.add_argument("--judge-api-key-env", default=None, metavar="VAR",
                   help="judge: environment variable holding the API key (default OPENAI_API_KEY)")  # fmt: skip
    g.add_argument("--judge-unparsable", default=None, choices=["error", "nan", "min"],
                   help="judge: answers without [[rating]]: error (default), nan, min (1.0, warned)")  # fmt: skip


def score_overrides(args: argparse.Namespace) -> dict:
    """Config overrides of the scorer flags; ``--device`` and ``--trust-remote-code`` also reach the scorer."""
    return {
        "score.device": args.score_device or args.device,
        "score.precision": args.score_precision,
        "score.batch_size": args.score_batch_size,
        "score.max_length": args.max_length,
        "score.trust_remote_code": args.trust_remote_code,
        "score.revision": args.score_revision,
        "score.judge_concurrency": args.judge_concurrency,
        "score.judge_max_retries": args.judge_max_retries,
        "score.judge_timeout": args.judge_timeout,
        "score.judge_api_key_env": args.judge_api_key_env,
        "score.judge_unparsable": args.judge_unparsable,
    }
