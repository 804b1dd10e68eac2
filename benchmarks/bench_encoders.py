"""Throughput of the ``hf:`` and ``openai:`` encoders (issue 15, "More encoders").

1. ``hf:<bundled MiniLM folder>`` (mean pooling over its BERT: the same network and pooling as
   sentence-transformers' MiniLM) against kmq's ``minilm`` and ``SentenceTransformer.encode``, on the same
   texts (prompts of the datakit pools that fit MiniLM's 256-token window), cache off, alternated; plus the
   cosine between the ``hf:`` and ``minilm`` vectors (they should be the same vectors).
2. ``hf:`` on tiny random Llama and GPT-2 models (tests/tiny_models.py), last-token pooling: the encoder's
   own overhead (tokenising, sorting, padding, pooling) where the network costs almost nothing.
3. ``openai:`` against the loopback server of tests/embed_server.py: kmq's ``encode`` (cache off) against
   bare openai SDK calls with the same batches, sequential and on the same number of threads; the
   difference per 1,000 texts is kmq's overhead.

Wall and process CPU seconds are both reported (the machine is shared: CPU time is the steadier one).

    .venv/bin/python benchmarks/bench_encoders.py [--n 1000] [--repeats 3] [--openai-n 5000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("KMQ_CACHE_DIR", tempfile.mkdtemp(prefix="kmq-bench-enc-"))
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _datakit import DATAKIT, TRAINING_POOLS  # noqa: E402

SERVE = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from embed_server import EmbedServer
srv = EmbedServer(dim=384)
print(srv.url, flush=True)
srv.serve_forever()
"""


def _texts(n: int, fits) -> list[str]:
    texts: list[str] = []
    for name in TRAINING_POOLS:
        for line in (DATAKIT / name / f"{name}.jsonl").read_text().splitlines()[: n]:
            t = json.loads(line)["messages"][0]["content"]
            if t.strip() and fits(t):
                texts.append(t)
    return texts[:: max(1, len(texts) // n)][:n]


def _timed(fn) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _report(rows: dict[str, list[tuple[float, float]]], n: int) -> None:
    for name, runs in rows.items():
        wall = min(r[0] for r in runs)
        cpu = min(r[1] for r in runs)
        print(f"  {name:44s} wall {wall:7.2f} s ({n / wall:7.1f} texts/s)   cpu {cpu:7.2f} s ({n / cpu:7.1f} texts/s)")


def bench_hf(n: int, repeats: int, batch: int) -> None:
    import numpy as np

    from kmq.embed import get_embedder
    from kmq.embed.sentence import bundled_minilm_path

    folder = str(bundled_minilm_path())
    st = get_embedder("minilm", batch_size=batch)
    model = st.model
    texts = _texts(n, lambda t: len(model.tokenizer(t)["input_ids"]) <= model.max_seq_length)
    hf = get_embedder(f"hf:{folder}", batch_size=batch)
    paths = {
        "kmq hf:<minilm folder> (mean)": lambda: hf.encode(texts, cache=False, show_progress=False),
        "kmq minilm (sentence-transformers model)": lambda: st.encode(texts, cache=False, show_progress=False),
        "SentenceTransformer.encode": lambda: model.encode(texts, batch_size=batch, convert_to_numpy=True),
    }
    for fn in paths.values():  # warm-up: weights loaded, first-call costs paid
        fn() if fn is not paths["SentenceTransformer.encode"] else model.encode(texts[:64], batch_size=batch)
    rows: dict[str, list[tuple[float, float]]] = {k: [] for k in paths}
    out = {}
    for _ in range(repeats):
        for name, fn in paths.items():
            wall, cpu, out[name] = _timed(fn)
            rows[name].append((wall, cpu))
    print(f"hf: vs MiniLM: {len(texts)} prompts, fp32, batch {batch}, best of {repeats}, alternated")
    _report(rows, len(texts))
    a, b = out["kmq hf:<minilm folder> (mean)"], out["kmq minilm (sentence-transformers model)"]
    cos = (np.asarray(a) * np.asarray(b)).sum(axis=1)
    print(f"  cosine hf: vs minilm vectors: min {cos.min():.7f}  mean {cos.mean():.7f}")


def bench_tiny(n: int, repeats: int, batch: int) -> None:
    from kmq.embed import get_embedder
    from tiny_models import build_causal_lm

    root = Path(tempfile.mkdtemp(prefix="kmq-bench-tiny-"))
    specs = {}
    for arch in ("llama", "gpt2"):
        path = build_causal_lm(root / arch, arch=arch)
        specs[f"hf:tiny-{arch} (last)"] = get_embedder(f"hf:{path}:last", batch_size=batch)
    texts = _texts(n, lambda t: True)
    for emb in specs.values():
        emb.encode(texts[:64], cache=False, show_progress=False)
    rows: dict[str, list[tuple[float, float]]] = {k: [] for k in specs}
    for _ in range(repeats):
        for name, emb in specs.items():
            wall, cpu, _ = _timed(lambda emb=emb: emb.encode(texts, cache=False, show_progress=False))
            rows[name].append((wall, cpu))
    print(f"hf: on tiny models (hidden 64, 2 layers, window 512): {len(texts)} prompts, batch {batch}, "
          f"best of {repeats}; truncated {specs['hf:tiny-llama (last)'].stats_['truncated']}")
    _report(rows, len(texts))


def bench_openai(n: int, repeats: int, batch: int, concurrency: int) -> None:
    import base64

    import numpy as np

    from kmq.embed.openai import OpenAIEmbedder

    texts = [f"text {i}: " + "word " * (5 + i % 40) for i in range(n)]
    batches = [texts[lo : lo + batch] for lo in range(0, n, batch)]
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(HERE.parent / "tests")], stdout=subprocess.PIPE, text=True
    )  # its own process: the CPU times below are the client's alone
    try:
        url = server.stdout.readline().strip()
        import openai

        client = openai.OpenAI(api_key="EMPTY", base_url=url, max_retries=0)

        def bare(chunk):
            resp = client.embeddings.create(model="m", input=chunk, encoding_format="base64")
            return np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in resp.data])

        emb = OpenAIEmbedder("m", url, batch_size=batch, concurrency=concurrency)
        emb.encode(texts[:256], cache=False, show_progress=False)  # probe and warm-up
        for chunk in batches[:4]:
            bare(chunk)
        paths = {
            f"kmq openai: (batch {batch}, concurrency {concurrency})":
                lambda: emb.encode(texts, cache=False, show_progress=False),
            "bare SDK, sequential": lambda: [bare(c) for c in batches],
            f"bare SDK, {concurrency} threads": lambda: list(ThreadPoolExecutor(concurrency).map(bare, batches)),
        }  # fmt: skip
        rows: dict[str, list[tuple[float, float]]] = {k: [] for k in paths}
        for _ in range(repeats):
            for name, fn in paths.items():
                wall, cpu, _ = _timed(fn)
                rows[name].append((wall, cpu))
    finally:
        server.kill()
    print(f"openai: against the loopback server (d = 384, server in another process): {n} texts, best of {repeats}")
    _report(rows, n)
    ours = min(r[0] for r in rows[next(iter(paths))])
    threads = min(r[0] for r in rows[f"bare SDK, {concurrency} threads"])
    ours_cpu = min(r[1] for r in rows[next(iter(paths))])
    threads_cpu = min(r[1] for r in rows[f"bare SDK, {concurrency} threads"])
    print(f"  kmq overhead per 1,000 texts vs the bare SDK on {concurrency} threads: "
          f"wall {1e6 * (ours - threads) / n:+.1f} ms, cpu {1e6 * (ours_cpu - threads_cpu) / n:+.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--openai-n", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--only", choices=["hf", "tiny", "openai"], default=None)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f}")
    if args.only in (None, "openai"):
        bench_openai(args.openai_n, args.repeats, args.batch_size, args.concurrency)
    if args.only in (None, "tiny"):
        bench_tiny(args.n, args.repeats, args.batch_size)
    if args.only in (None, "hf"):
        bench_hf(args.n, args.repeats, args.batch_size)
    print(f"load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
