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
    show_progress,
)
from kmq.cli._flags import setting, setting_overrides

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
    from kmq.config import RunConfig as C

    add_pool_options(p, C)
    setting(p, C, "score.scorer", "--scorer", help=SCORER_HELP)
    setting(p, C, "score.relevance_embedder", "--relevance-embedder")
    p.add_argument("--out", required=True, metavar="SCORES", help="scores file: .jsonl (default), .csv or .parquet")
    add_score_options(p.add_argument_group("model scorers"), C)
    add_embed_options(p, C, scorer_sections=("score",))
    add_common_options(p, C)
    p.set_defaults(func=run)


def write_scores(path: Path, ids: list[str], scores: np.ndarray) -> Path:
    """Write ``id`` and ``score`` columns atomically; the extension picks the format.

    NaN (a record the scorer left unscored, e.g. ``--judge-unparsable nan``) is written as missing: null in
    JSON Lines and Parquet, an empty cell in CSV.
    """
    from kmq.cache import atomic_path

    missing = np.isnan(scores)
    with atomic_path(path) as tmp:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            score_col = pa.array(scores, pa.float64(), mask=missing)
            pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "score": score_col}), tmp)
        elif path.suffix == ".csv":
            import csv

            with open(tmp, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["id", "score"])
                w.writerows((i, "" if m else repr(float(s))) for i, s, m in zip(ids, scores, missing, strict=True))
        else:
            with open(tmp, "w", encoding="utf-8") as f:
                for i, s, m in zip(ids, scores, missing, strict=True):
                    f.write(json.dumps({"id": i, "score": None if m else float(s)}, ensure_ascii=False) + "\n")
    return path


def run(args: argparse.Namespace) -> int:
    from kmq.data import read_pool
    from kmq.pipeline import _Run, build_config
    from kmq.redact import redact_url

    overrides = {**setting_overrides(args), "pool": args.pool}
    cfg = build_config(args.config, overrides)
    pool = read_pool(cfg.pool, format=cfg.format, split=cfg.split)
    run_ = _Run(cfg, pool, show_progress(args))
    scores = run_.quality()
    path = write_scores(Path(args.out), pool.ids, scores)
    st = run_.stages["score"]
    scored = scores[~np.isnan(scores)]
    spec = redact_url(st.get("scorer", cfg.score.scorer))
    sys.stdout.write(f"scores    {path}  ({len(scores)} records, scorer {spec})\n")
    if len(scored):
        sys.stdout.write(f"range     min {scored.min():.4g}  mean {scored.mean():.4g}  max {scored.max():.4g}\n")
    if len(scored) < len(scores):
        sys.stdout.write(f"missing   {len(scores) - len(scored)} unparsable, written as missing\n")
    enc = st.get("relevance_encoder")
    if enc:
        sys.stdout.write(f"relevance encoder  {enc}\n")
    return 0
