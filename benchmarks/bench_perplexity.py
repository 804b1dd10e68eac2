"""Perplexity scoring throughput: a naive one-example-at-a-time loop vs kmq's batched, length-bucketed path.

A Llama of about 5M parameters (random weights, a BPE tokenizer trained on the pool, ChatML template) is
built locally; the same process then scores the same examples (default: the first 1,000 of
``alpaca_random9k``) four ways, all with the cache off:

1. ``naive``: the textbook loop, one example per forward pass, full logits, ``log_softmax``, manual mask;
2. ``scorer, batch 1``: :class:`kmq.scorers.PerplexityScorer` with ``batch_size=1``;
3. ``batched, unsorted``: batches of ``--batch-size`` consecutive examples (padding to each batch's longest);
4. ``batched + bucketed``: :class:`~kmq.scorers.PerplexityScorer` (sorted by length, then batched).

It checks that all four give the same mean NLL (max abs difference) and prints examples/s (best of
``--repeats`` interleaved runs) and the ratio of (4) to (1). Run from the repository root::

    .venv/bin/python benchmarks/bench_perplexity.py [--n 1000] [--batch-size 16] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "tests"))  # tiny_models: local model builders shared with the tests
DEFAULT_POOL = REPO_ROOT.parent / "shared" / "datakit" / "alpaca_random9k" / "alpaca_random9k.jsonl"


def naive_mean_nll(scorer, conversations) -> np.ndarray:
    """One conversation per forward pass, full logits, log-softmax, mask from the rendered spans."""
    import torch

    from kmq.scorers._lm import render_with_spans
    from kmq.scorers.perplexity import tokenize_masked

    model, tok, out = scorer.model, scorer.tokenizer, []
    for conv in conversations:
        text, spans = render_with_spans(tok, conv)
        ids, scored = tokenize_masked(tok, text, spans)
        x = torch.tensor([ids[-scorer.max_tokens :]])
        mask = torch.from_numpy(scored[-scorer.max_tokens :][1:])
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), dim=-1)
        nll = -logp.gather(1, x[0, 1:, None])[:, 0]
        out.append(float(nll[mask].double().mean()))
    return np.asarray(out)


def unsorted_mean_nll(scorer, conversations, batch_size: int) -> np.ndarray:
    """Batches of consecutive conversations (no length sorting), through the same kernel."""
    from kmq.scorers._lm import render_with_spans
    from kmq.scorers.perplexity import token_nll, tokenize_masked

    tok, limit, out = scorer.tokenizer, scorer.max_tokens, []
    for lo in range(0, len(conversations), batch_size):
        seqs = []
        for conv in conversations[lo : lo + batch_size]:
            ids, scored = tokenize_masked(tok, *render_with_spans(tok, conv))
            seqs.append((ids[-limit:], scored[-limit:]))
        rows = token_nll(scorer.model, seqs, batch_size=len(seqs), pad_id=tok.pad_token_id)
        out.extend(rows[:, 0] / rows[:, 1])
    return np.asarray(out)


def timed(fn):
    """(value, wall seconds, CPU seconds of this process: all threads, immune to waiting for a busy CPU)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=Path, default=DEFAULT_POOL)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the best time of each path counts")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from kmq.scorers import PerplexityScorer
    from tiny_models import build_causal_lm

    records = [json.loads(line) for line in args.pool.read_text().splitlines()[: args.n]]
    convs = [r["messages"] for r in records]
    texts = [m["content"] for c in convs for m in c]
    tmp = Path(tempfile.mkdtemp(prefix="kmq-bench-ppl-"))
    os.environ["KMQ_CACHE_DIR"] = str(tmp / "cache")
    path = build_causal_lm(tmp / "model", hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688,
                           vocab_size=4096, max_positions=1024, texts=texts)  # fmt: skip
    opts = {"max_length": 1024, "cache": False, "show_progress": False}
    batched = PerplexityScorer(str(path), batch_size=args.batch_size, **opts)
    single = PerplexityScorer(str(path), batch_size=1, **opts)
    params = sum(p.numel() for p in batched.model.parameters())
    single._model = batched.model  # one model in memory
    tokens = sum(len(batched.tokenizer(batched.tokenizer.apply_chat_template(c, tokenize=False))["input_ids"])
                 for c in convs)  # fmt: skip
    paths = {
        "naive": lambda: naive_mean_nll(batched, convs),
        "scorer, batch 1": lambda: single.mean_nll(convs),
        f"batched {args.batch_size}, unsorted": lambda: unsorted_mean_nll(batched, convs, args.batch_size),
        f"batched {args.batch_size} + bucketed": lambda: batched.mean_nll(convs),
    }
    batched.mean_nll(convs[:32])  # warm-up: first-call allocations and kernel selection
    results: dict[str, tuple[np.ndarray, float, float]] = {}
    for _ in range(args.repeats):  # interleaved repeats, best time per path: robust to a busy machine
        for name, fn in paths.items():
            value, wall, cpu = timed(fn)
            _, best_wall, best_cpu = results.get(name, (None, np.inf, np.inf))
            results[name] = (value, min(wall, best_wall), min(cpu, best_cpu))
    ref = results["naive"][0]
    print(f"command   {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"model     Llama {params / 1e6:.2f}M parameters, vocab {len(batched.tokenizer)}, fp32, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")  # fmt: skip
    print(f"data      {len(convs)} examples of {args.pool.name}, {tokens} tokens (mean {tokens / len(convs):.0f})")
    print(f"load      {os.getloadavg()[0]:.1f} (1-min load average at the end; other processes share the CPUs)")
    print(f"{'path':<28} {'best wall s':>11} {'examples/s':>11} {'best CPU s':>11} {'max |dNLL|':>11}")
    for name, (value, wall, cpu) in results.items():
        print(f"{name:<28} {wall:11.2f} {len(convs) / wall:11.1f} {cpu:11.2f} {np.abs(value - ref).max():11.2e}")
    naive, fast = results["naive"], results[f"batched {args.batch_size} + bucketed"]
    print(f"ratio     batched + bucketed vs naive: {naive[1] / fast[1]:.2f}x wall, {naive[2] / fast[2]:.2f}x CPU time")


if __name__ == "__main__":
    main()
