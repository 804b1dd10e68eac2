"""``kmq score``: write the quality score of every record (inspect scores before you trust them)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from kmq.cli._common import add_common_options, add_embed_options, add_pool_options, embed_overrides, show_progress

EXAMPLES = """examples:
  kmq score pool.jsonl --scorer heuristic --out scores.jsonl
  kmq score pool.jsonl --scorer heuristic --embedder hashing --out scores.csv
  kmq score pool.parquet --scorer column:deita_score --out scores.parquet
  kmq score pool.jsonl --scorer perplexity:Qwen/Qwen2.5-0.5B-Instruct --score-device cuda --out ppl.jsonl
  kmq score pool.jsonl --scorer reward:sfairXC/FsfairX-LLaMA3-RM-v0.1 --score-precision bf16 --out rm.jsonl
  kmq score pool.jsonl --scorer deita:hkust-nlp/deita-complexity-scorer,hkust-nlp/deita-quality-scorer --out d.jsonl
  OPENAI_API_KEY=... kmq score pool.jsonl --scorer judge:gpt-4o-mini@https://api.openai.com/v1 --out judge.jsonl
"""
SCORER_HELP = (
    "heuristic | column:FIELD | perplexity:MODEL | ifd:MODEL | reward:MODEL | deita:COMPLEXITY_MODEL,QUALITY_MODEL "
    "| judge:MODEL@URL (MODEL: hub name or local folder; higher = better for every scorer)"
)


def add_score_options(g: argparse._ArgumentGroup) -> None:
    """Flags of the model-based scorers (``--trust-remote-code`` applies to scorer models too)."""
    g.add_argument("--score-device", default=None, help="torch device of model scorers (default: --device, cpu)")
    g.add_argument("--score-precision", default=None, choices=["fp32", "bf16", "fp16"],
                   help="model scorer precision (default fp32)")  # fmt: skip
    g.add_argument("--score-batch-size", type=int, default=None, help="sequences per forward pass (default 8)")
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
        "score.judge_concurrency": args.judge_concurrency,
        "score.judge_max_retries": args.judge_max_retries,
        "score.judge_timeout": args.judge_timeout,
        "score.judge_api_key_env": args.judge_api_key_env,
        "score.judge_unparsable": args.judge_unparsable,
    }


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score every record's quality",
        description="Write id and quality score for every record of POOL (JSONL, CSV or Parquet by extension).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pool_options(p)
    p.add_argument("--scorer", default=None, help=SCORER_HELP + " (default heuristic)")
    p.add_argument("--out", required=True, metavar="SCORES", help="scores file: .jsonl (default), .csv or .parquet")
    add_score_options(p.add_argument_group("model scorers"))
    add_embed_options(p)
    add_common_options(p)
    p.set_defaults(func=run)


def write_scores(path: Path, ids: list[str], scores: np.ndarray) -> Path:
    """Write ``id`` and ``score`` columns atomically; the extension picks the format."""
    from kmq.cache import atomic_path

    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "score": pa.array(scores, pa.float64())}), tmp)
        elif path.suffix == ".csv":
            import csv

            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["id", "score"])
                w.writerows((i, repr(float(s))) for i, s in zip(ids, scores, strict=True))
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for i, s in zip(ids, scores, strict=True):
                    f.write(json.dumps({"id": i, "score": float(s)}, ensure_ascii=False) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    from kmq.data import read_pool
    from kmq.pipeline import _Run, build_config

    overrides = {**embed_overrides(args), **score_overrides(args), "pool": args.pool, "score.scorer": args.scorer}
    cfg = build_config(args.config, overrides)
    pool = read_pool(cfg.pool, format=cfg.format, split=cfg.split)
    run_ = _Run(cfg, pool, show_progress(args))
    scores = run_.quality()
    path = write_scores(Path(args.out), pool.ids, scores)
    st = run_.stages["score"]
    sys.stdout.write(
        f"scores    {path}  ({len(scores)} records, scorer {st.get('scorer', cfg.score.scorer)})\n"
        f"range     min {scores.min():.4g}  mean {scores.mean():.4g}  max {scores.max():.4g}\n"
    )
    enc = st.get("relevance_encoder")
    if enc:
        sys.stdout.write(f"relevance encoder  {enc}\n")
    return 0
