"""Validate the offline ``heuristic`` quality scorer against the weak quality labels in the datakit.

Three numbers, each compared with response length alone:

1. AUC of the score against ``in_alpagasus_claude_t45`` on ``alpaca_random9k`` (9,229 rows, 935 true);
2. AUC against ``in_alpagasus_helpfulness_t45`` (355 true);
3. on the prompts shared by ``alpaca_gpt4_demo`` (GPT-4 answers) and ``alpaca_random9k`` (text-davinci-003
   answers), how often the score prefers the GPT-4 answer.

The table has one row per signal: the length baseline, each single feature of
:func:`kmq.scorers.heuristic.heuristic_features`, and the full :func:`kmq.scorers.heuristic.heuristic_scores`.
Scores are computed on the union of both pools (so the duplicate detector sees one pool, as kMQ would).
A second table gives, per pool, the Spearman correlation of the score with response length and how many rows
a hygiene penalty touches: how much of the score is length.

Run from the repository root::

    .venv/bin/python benchmarks/heuristic_validation.py [--datakit ../shared/datakit] [--cache /tmp/kmq-heur/cache]
    .venv/bin/python benchmarks/heuristic_validation.py --no-relevance   # no encoder at all
    .venv/bin/python benchmarks/heuristic_validation.py --embedder hashing   # kmq's model-free encoder (fast)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    from kmq.scorers.heuristic import HEURISTIC_WEIGHTS, heuristic_features, heuristic_scores
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from kmq.scorers.heuristic import HEURISTIC_WEIGHTS, heuristic_features, heuristic_scores
logger = logging.getLogger("heuristic_validation")


def load_pool(path: Path) -> list[dict]:
    """Read a normalized datakit ``.jsonl`` file into a list of records."""
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def split_turns(messages: list[dict]) -> tuple[str, str]:
    """Prompt = system and user turns, response = assistant turns, each joined with a blank line."""
    prompt = "\n\n".join(m["content"] for m in messages if m["role"] in ("system", "user"))
    response = "\n\n".join(m["content"] for m in messages if m["role"] == "assistant")
    return prompt, response


def first_user_key(messages: list[dict]) -> str:
    """The first user turn, case and whitespace folded (the datakit's cross-set matching rule)."""
    text = next((m["content"] for m in messages if m["role"] == "user"), "")
    return re.sub(r"\s+", " ", text).strip().casefold()


def encode_cached(texts: list[str], cache_dir: Path, embedder: str = "minilm") -> np.ndarray:
    """Vectors of ``texts`` through kmq's own embedder (window-mean for long texts, per-text cache).

    Returns an array of shape (n, d), float32, L2-normalised (d = 384 for MiniLM, 512 for hashing); empty texts
    get a zero row. ``cache_dir`` becomes ``$KMQ_CACHE_DIR``, so a second run embeds nothing.
    """
    os.environ["KMQ_CACHE_DIR"] = str(cache_dir)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from kmq.embed import get_embedder

    return get_embedder(embedder).encode(texts, show_progress=True)


def rankdata(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (n,), ties given their average rank; float64."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    ranks = np.empty(len(values), dtype=np.float64)
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(values)]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + e + 1) / 2.0
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (n,) arrays (Pearson correlation of their average-tie ranks)."""
    return float(np.corrcoef(rankdata(a), rankdata(b))[0, 1])


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC by the Mann–Whitney rank formula, ties given their average rank."""
    labels = np.asarray(labels, dtype=bool)
    ranks = rankdata(scores)
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def preference_rate(scores: np.ndarray, better: np.ndarray, worse: np.ndarray) -> float:
    """Share of pairs where ``scores[better] > scores[worse]``; ties count one half."""
    a, b = scores[better], scores[worse]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def strict_preference_rate(scores: np.ndarray, better: np.ndarray, worse: np.ndarray) -> float:
    """Share of pairs where ``scores[better] > scores[worse]``; ties (e.g. identical answers) count zero."""
    return float(np.mean(scores[better] > scores[worse]))


def load_benchmark(datakit: Path) -> tuple[list[str], list[str], dict[str, np.ndarray], np.ndarray, int]:
    """Prompts and responses of alpaca_random9k followed by alpaca_gpt4_demo, the two flags, and the GPT-4 pairs.

    Returns ``(prompts, responses, flags, pairs, n_random9k)``; ``pairs`` has shape (n_pairs, 2) with the row of
    the GPT-4 answer first and the row of the davinci answer second (first occurrence of each shared prompt).
    """
    random9k = load_pool(datakit / "alpaca_random9k" / "alpaca_random9k.jsonl")
    gpt4 = load_pool(datakit / "alpaca_gpt4_demo" / "alpaca_gpt4_demo.jsonl")
    prompts, responses = zip(*(split_turns(r["messages"]) for r in random9k + gpt4), strict=True)
    flags = {
        name: np.array([r[f"in_alpagasus_{name}"] for r in random9k], dtype=bool)
        for name in ("claude_t45", "helpfulness_t45")
    }
    davinci_row: dict[str, int] = {}
    for i, rec in enumerate(random9k):
        davinci_row.setdefault(first_user_key(rec["messages"]), i)
    pairs, seen = [], set()
    for j, rec in enumerate(gpt4):
        key = first_user_key(rec["messages"])
        if key in davinci_row and key not in seen:
            seen.add(key)
            pairs.append((len(random9k) + j, davinci_row[key]))
    return list(prompts), list(responses), flags, np.array(pairs, dtype=np.int64), len(random9k)


def evaluate(
    signals: dict[str, np.ndarray], flags: dict[str, np.ndarray], pairs: np.ndarray, n_flagged: int
) -> list[tuple[str, float, float, float, float]]:
    """One row ``(name, AUC claude, AUC helpfulness, GPT-4 preference (ties 1/2), strict)`` per signal."""
    rows = []
    for name, values in signals.items():
        rows.append(
            (
                name,
                auc(values[:n_flagged], flags["claude_t45"]),
                auc(values[:n_flagged], flags["helpfulness_t45"]),
                preference_rate(values, pairs[:, 0], pairs[:, 1]),
                strict_preference_rate(values, pairs[:, 0], pairs[:, 1]),
            )
        )
    return rows


def format_table(rows: list[tuple[str, float, float, float, float]]) -> str:
    """A markdown table of :func:`evaluate` rows."""
    lines = [
        "| signal | AUC claude_t45 | AUC helpfulness_t45 | prefers GPT-4 (ties 1/2) | prefers GPT-4 (strict) |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {name} | {c:.3f} | {h:.3f} | {100 * p:.1f}% | {100 * q:.1f}% |" for name, c, h, p, q in rows]
    return "\n".join(lines)


def length_table(
    signals: dict[str, np.ndarray], features: dict[str, np.ndarray], pools: dict[str, slice]
) -> str:
    """Per pool: Spearman of each heuristic score with response length, and the rows a hygiene penalty touches."""
    length = signals["length (chars), baseline"]
    scores = [name for name in signals if name.startswith("heuristic score")]
    hygiene = ("empty", "refusal", "truncated", "duplicate", "boilerplate", "off_topic")
    penalties = [n for n in hygiene if n in features]
    penalised = np.any([features[n] > 0 for n in penalties], axis=0)
    lines = [
        "| pool | rows | " + " | ".join(f"Spearman({name}, length)" for name in scores) + " | rows with a penalty |",
        "|---|---|" + "---|" * len(scores) + "---|",
    ]
    for pool, rows in pools.items():
        rhos = " | ".join(f"{spearman(signals[name][rows], length[rows]):.3f}" for name in scores)
        n, hit = len(length[rows]), int(penalised[rows].sum())
        lines.append(f"| {pool} | {n} | {rhos} | {hit} ({100 * hit / n:.1f}%) |")
    return "\n".join(lines) + f"\n\npenalties counted: {', '.join(penalties)}"


def spherical_kmeans(x: np.ndarray, k: int, *, n_iter: int = 25, seed: int = 0) -> np.ndarray:
    """Cluster labels of L2-normalised rows ``x`` (n, d) by cosine k-means; a small stand-in for kmq's clusterer."""
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), size=k, replace=False)].astype(np.float64)
    for _ in range(n_iter):
        labels = np.argmax(x @ centroids.T, axis=1)
        for j in range(k):
            members = x[labels == j]
            if len(members):
                centroids[j] = members.sum(axis=0) / max(np.linalg.norm(members.sum(axis=0)), 1e-12)
    return np.argmax(x @ centroids.T, axis=1)


def standardize_within(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Z-score ``values`` inside each cluster, as kMQ does before sampling (a constant cluster gives zeros)."""
    out = np.zeros_like(values, dtype=np.float64)
    for j in np.unique(labels):
        members = labels == j
        v = values[members]
        std = v.std()
        out[members] = (v - v.mean()) / std if std > 0 else 0.0
    return out


def build_signals(
    prompts: list[str], responses: list[str], prompt_vecs: np.ndarray | None, response_vecs: np.ndarray | None
) -> dict[str, np.ndarray]:
    """The length baseline, every single feature (penalties negated so that higher is better) and the full scores."""
    features = heuristic_features(prompts, responses, prompt_vecs, response_vecs)
    signals = {"length (chars), baseline": np.array([len(r) for r in responses], dtype=np.float64)}
    if "relevance" in features:
        signals["relevance alone"] = features["relevance"]
    for name, values in features.items():
        if name != "relevance":
            signals[name if HEURISTIC_WEIGHTS[name] > 0 else f"-{name}"] = (
                values if HEURISTIC_WEIGHTS[name] > 0 else -values
            )
    signals["heuristic score, no relevance"] = heuristic_scores(prompts, responses)[0]
    if prompt_vecs is not None:
        signals["heuristic score (full)"] = heuristic_scores(prompts, responses, prompt_vecs, response_vecs)[0]
    return signals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datakit", type=Path, default=REPO_ROOT.parent / "shared" / "datakit")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/kmq-heur/cache"), help="embedding cache folder")
    parser.add_argument("--no-relevance", action="store_true", help="score without embeddings (no encoder)")
    parser.add_argument(
        "--embedder",
        default="minilm",
        help="encoder of the relevance features: minilm (kmq select's default) or hashing (model-free, fast)",
    )
    parser.add_argument(
        "--clusters",
        type=int,
        default=0,
        help="also report every signal z-scored within K prompt clusters, as kMQ uses it (needs embeddings)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    prompts, responses, flags, pairs, n_flagged = load_benchmark(args.datakit)
    prompt_vecs = response_vecs = None
    if not args.no_relevance:
        split = (slice(0, n_flagged), slice(n_flagged, None))
        prompt_vecs = np.concatenate([encode_cached(prompts[s], args.cache, args.embedder) for s in split])
        response_vecs = np.concatenate([encode_cached(responses[s], args.cache, args.embedder) for s in split])
    start = time.perf_counter()
    _, stats = heuristic_scores(prompts, responses, prompt_vecs, response_vecs)
    elapsed = time.perf_counter() - start
    signals = build_signals(prompts, responses, prompt_vecs, response_vecs)

    print("$ python benchmarks/heuristic_validation.py " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(
        f"alpaca_random9k: {n_flagged} rows, claude_t45 {int(flags['claude_t45'].sum())} true, "
        f"helpfulness_t45 {int(flags['helpfulness_t45'].sum())} true; GPT-4 vs davinci pairs: {len(pairs)}; "
        f"all {len(responses)} rows scored as one pool; encoder: "
        + ("none" if prompt_vecs is None else args.embedder)
    )
    print(format_table(evaluate(signals, flags, pairs, n_flagged)))
    pools = {"alpaca_random9k": slice(0, n_flagged), "alpaca_gpt4_demo": slice(n_flagged, None),
             "both (one pool)": slice(None)}  # fmt: skip
    print("\nhow much of the score is length (Spearman with response length in characters, per pool):")
    print(length_table(signals, heuristic_features(prompts, responses, prompt_vecs, response_vecs), pools))
    if args.clusters and prompt_vecs is not None:
        labels = spherical_kmeans(prompt_vecs, args.clusters)
        within = {name: standardize_within(values, labels) for name, values in signals.items()}
        print(f"\nwithin {args.clusters} prompt clusters (cosine k-means on {args.embedder} prompt vectors, seed 0):")
        print(format_table(evaluate(within, flags, pairs, n_flagged)))
    print(f"\nheuristic_scores on {len(responses)} rows: {elapsed:.2f} s; stats: {json.dumps(stats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
