"""Embedding throughput of the bundled MiniLM through kmq vs sentence-transformers' own `encode`.

Same 2,000 texts, same process, same batch size, no cache; the two are run alternately (ours, theirs,
ours, theirs) so that machine noise hits both. Texts are prompts from the mixed datakit pool that fit
the model's window, so both sides do the same work (kmq would split longer texts into windows and
encode the tail that `encode` truncates away: that is more work, not overhead).

    .venv/bin/python benchmarks/bench_embed.py [--n 2000] [--repeats 2] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _datakit import DATAKIT, TRAINING_POOLS  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--precision", default="fp32")
    args = ap.parse_args()
    from kmq.embed import get_embedder

    emb = get_embedder("minilm", batch_size=args.batch_size, precision=args.precision)
    model = emb.model
    window = model.max_seq_length - 2
    texts: list[str] = []
    for name in TRAINING_POOLS:  # round-robin over pools for a realistic mix
        for line in (DATAKIT / name / f"{name}.jsonl").read_text().splitlines()[: args.n]:
            t = json.loads(line)["messages"][0]["content"]
            if len(model.tokenizer(t, add_special_tokens=False)["input_ids"]) <= window:
                texts.append(t)
    texts = texts[:: max(1, len(texts) // args.n)][: args.n]
    emb.encode(texts[:64], cache=False)  # warm-up both paths
    model.encode(texts[:64], batch_size=args.batch_size)
    ours, theirs = [], []
    for _ in range(args.repeats):
        t = time.perf_counter()
        emb.encode(texts, cache=False)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
        theirs.append(time.perf_counter() - t)
    o, s = min(ours), min(theirs)
    print(f"{len(texts)} texts, precision {args.precision}, batch {args.batch_size}, best of {args.repeats}")
    print(f"kmq encode:                    {o:7.2f} s  ({len(texts) / o:6.1f} texts/s)")
    print(f"SentenceTransformer.encode:    {s:7.2f} s  ({len(texts) / s:6.1f} texts/s)")
    print(f"kmq overhead: {100 * (o / s - 1):+.1f}%")


if __name__ == "__main__":
    main()
