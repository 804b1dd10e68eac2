"""``kmq score``: write the quality score of every record (inspect scores before you trust them)."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from kmq.cli._common import (
    SCORER_HELP,
    add_common_options,
    add_embed_options,
    add_overwrite_option,
    add_pool_options,
    add_score_options,
    show_progress,
)
from kmq.cli._flags import setting, setting_overrides

EXAMPLES = """examples:
  kmq score pool.jsonl --scorer heuristic --out scores.jsonl
  kmq score pool.jsonl --scorer heuristic --embedder hashing --out scores.csv
  kmq score pool.jsonl --explain --out scores.csv     # + the heuristic's features: why a record scored low
  kmq score pool.parquet --scorer column:deita_score --out scores.parquet
  kmq score pool.jsonl --scorer perplexity:Qwen/Qwen2.5-0.5B-Instruct --score-device cuda --out ppl.jsonl
  kmq score pool.jsonl --scorer reward:sfairXC/FsfairX-LLaMA3-RM-v0.1 --score-precision bf16 --out rm.jsonl
  kmq score pool.jsonl --scorer deita:hkust-nlp/deita-complexity-scorer,hkust-nlp/deita-quality-scorer --out d.jsonl
  OPENAI_API_KEY=... kmq score pool.jsonl --scorer judge:gpt-4o-mini@https://api.openai.com/v1 --out judge.jsonl
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score",
        help="score every record's quality",
        description="Write id and quality score for every record of POOL (JSONL, CSV or Parquet by extension).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from kmq.config import RunConfig as C

    add_pool_options(p, C)
    setting(p, C, "score.scorer", "--scorer", help=SCORER_HELP)
    setting(p, C, "score.relevance_embedder", "--relevance-embedder")
    p.add_argument("--out", required=True, metavar="SCORES", help="scores file: .jsonl, .csv or .parquet")
    p.add_argument(
        "--explain",
        action="store_true",
        help="also write the heuristic's per-record features (log_length, log_vocab, relevance, focus, off_topic, "
        "empty, refusal, truncated, duplicate, boilerplate) as columns after score; heuristic scorer only",
    )
    add_overwrite_option(p)
    add_score_options(p.add_argument_group("model scorers"), C)
    add_embed_options(p, C, scorer_sections=("score",))
    add_common_options(p, C)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kmq.scoring import score

    scores = score(
        args.pool,
        out=args.out,
        config=args.config,
        settings=setting_overrides(args),
        overwrite=args.overwrite,
        explain=args.explain,
        show_progress=show_progress(args),
    )
    values, st = scores.values, scores.stats
    scored = values[~np.isnan(values)]
    sys.stdout.write(f"scores    {scores.path}  ({len(values)} records, scorer {scores.scorer})\n")
    if len(scored):
        sys.stdout.write(f"range     min {scored.min():.4g}  mean {scored.mean():.4g}  max {scored.max():.4g}\n")
    if scores.features:
        sys.stdout.write(f"features  {' '.join(scores.features)}  (columns after score; kmq.scorers.heuristic)\n")
    if len(scored) < len(values):
        sys.stdout.write(f"missing   {len(values) - len(scored)} unparsable, written as missing\n")
    enc = st.get("relevance_encoder")
    if enc:
        sys.stdout.write(f"relevance encoder  {enc}\n")
    for warning in st.get("warnings", []):
        sys.stdout.write(f"warning   {warning}\n")
    return 0
