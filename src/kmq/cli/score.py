"""``kmq score``: write the quality score of every record (inspect scores before you trust them)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from kmq.cli._common import (
    SCORER_HELP,
    add_common_options,
    add_embed_options,
    add_pool_options,
    add_score_options,
    embed_overrides,
    score_overrides,
    show_progress,
)

EXAMPLES = """examples:
  kmq score pool.jsonl --scorer heuristic --out scores.jsonl
  kmq score pool.jsonl --scorer heuristic --embedder hashing --out scores.csv
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
