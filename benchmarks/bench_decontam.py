"""Decontamination at scale: a synthetic pool of n records against all 12 datakit eval sets.

The pool is made in this process (never saved): real dolly_3k, alpaca_random9k and alpaca_gpt4_demo prompts
resampled with small edits (a word dropped, a word upper-cased, white space changed, a short phrase added),
plus ``--planted`` eval prompts (a seeded sample over all eval sets) copied in with their case and white
space changed, half of them inside a longer prompt. Each size runs in its own subprocess, so its peak RSS
is its own; the pool's Python strings are part of it (reported separately as "pool RSS").

    .venv/bin/python benchmarks/bench_decontam.py [--sizes 100000 1000000] [--ngram 13] [--planted 1000]

Prints one table row per size: wall seconds of loading the eval sets, of building their index, of
tokenising the pool alone (Arrow, the only per-record work) and of the whole ``decontaminate`` call, the
peak RSS, the planted copies found, and the other records flagged (real overlaps of the source pools).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kmq.shape.decontam import _tokenise, decontaminate, load_eval_set, words

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _datakit import DATAKIT  # noqa: E402

EVAL_SETS = (
    "mmlu", "arc", "gsm8k_test", "truthfulqa", "bbh", "humaneval", "mbpp_test", "alpaca_eval", "mt_bench",
    "vicuna_bench", "wizardlm_testset", "lima_test",
)  # fmt: skip
SOURCES = ("dolly_3k", "alpaca_random9k", "alpaca_gpt4_demo")
PHRASES = ("Please answer briefly.", "Thanks!", "Explain your reasoning.", "Be concise.", "In simple terms:")


def source_prompts() -> list[str]:
    out = []
    for name in SOURCES:
        with open(DATAKIT / name / f"{name}.jsonl", encoding="utf-8") as fh:
            for line in fh:
                turns = json.loads(line)["messages"]
                out.append("\n\n".join(t["content"] for t in turns if t["role"] == "user"))
    return out


def edit(text: str, rng: random.Random) -> str:
    """One small random edit, as a resampled near-copy would have."""
    toks = text.split(" ")
    kind = rng.randrange(4)
    if kind == 0 and len(toks) > 3:
        del toks[rng.randrange(len(toks))]
    elif kind == 1:
        k = rng.randrange(len(toks))
        toks[k] = toks[k].upper()
    elif kind == 2:
        return "  ".join(toks) + "\n"
    else:
        toks.append(PHRASES[rng.randrange(len(PHRASES))])
    return " ".join(toks)


def make_pool(n: int, planted: int, sets: list, ngram: int, seed: int = 0) -> tuple[list[str], list[str], set[int]]:
    """Return (ids, prompts, the planted rows the rule can find: exact copies, and wrapped ones of >= ngram words)."""
    rng = random.Random(seed)
    base = source_prompts()
    prompts = [edit(base[rng.randrange(len(base))], rng) for _ in range(n)]
    everything = [(s, j) for s in sets for j in range(len(s))]
    rows, findable = rng.sample(range(n), planted), set()
    for k, (row, (s, j)) in enumerate(zip(rows, rng.sample(everything, planted), strict=True)):
        text = " \n".join(s.prompts[j].upper().split())
        prompts[row] = text if k % 2 else f"Answer this question from a test. {text} Answer:"
        if k % 2 or len(words([text])[0]) >= ngram:
            findable.add(row)
    return [f"r{i}" for i in range(n)], prompts, findable


def run_one(n: int, ngram: int, planted: int) -> dict:
    t0 = time.perf_counter()
    sets = [load_eval_set(DATAKIT / name) for name in EVAL_SETS]
    t_load = time.perf_counter() - t0
    ids, prompts, rows = make_pool(n, planted, sets, ngram)
    pool_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    for lo in range(0, n, 65536):
        _tokenise(prompts[lo : lo + 65536])
    t_tok = time.perf_counter() - t0
    t0 = time.perf_counter()
    decontaminate(["x"], ["x"], sets, ngram=ngram)  # the eval index alone (a 1-record pool)
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    found = decontaminate(ids, prompts, sets, ngram=ngram)
    t_all = time.perf_counter() - t0
    flagged = set(np.flatnonzero(found.mask).tolist())
    return {
        "n": n,
        "load_s": t_load,
        "index_s": t_index,
        "tokenise_s": t_tok,
        "decontaminate_s": t_all,
        "pool_rss_mb": pool_rss,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "planted_found": len(rows & flagged),
        "findable": len(rows),
        "planted": planted,
        "other_flagged": len(flagged - rows),  # includes planted wrapped prompts found through another eval text
        "per_set": found.per_set,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--ngram", type=int, default=13)
    ap.add_argument("--planted", type=int, default=1000)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a single size, in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.ngram, args.planted)))
        return
    print("| pool records | load eval sets (s) | eval index (s) | tokenise pool (s) | decontaminate (s) | "
          "pool RSS (MB) | peak RSS (MB) | planted found / findable | other records flagged |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--ngram", str(args.ngram)]
        cmd += ["--planted", str(args.planted)]
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(
            f"| {r['n']:,} | {r['load_s']:.1f} | {r['index_s']:.1f} | {r['tokenise_s']:.1f} | "
            f"{r['decontaminate_s']:.1f} | {r['pool_rss_mb']:.0f} | {r['peak_rss_mb']:.0f} | "
            f"{r['planted_found']}/{r['findable']} (of {r['planted']}) | {r['other_flagged']} |"
        )
        print(f"  per set: {r['per_set']}", file=sys.stderr)


if __name__ == "__main__":
    main()
