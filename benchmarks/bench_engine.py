"""--engine ray against the local engine: overhead on 5,000 texts, and throughput with 1 and 2 actors.

Encodes the first 5,000 conversations of alpaca_random9k (datakit) with a cold cache (``cache=False``: every
text is encoded) in blocks of 500 texts (one Ray task each; the same blocks on every engine), with the
hashing encoder and the bundled MiniLM (fp32), on the local engine and on Ray Data with 1 and 2 actors
(0.5 CPU each), alternated round by round so that the machine's load hits them
alike. A Ray time includes what a run pays: building the dataset and the actor pool (each actor loads its
model) and moving the vectors back; starting Ray itself happens once per process and is reported apart.
The vectors are checked against the local engine's (max abs difference).

Ray binds the host's interface address, so the benchmark re-runs itself inside a private network namespace
whose only interface is loopback (``unshare --net``, as root) unless it already is in one.

With ``--scorers perplexity`` it also times the perplexity scorer (a tiny random Llama from
``tests/tiny_models.py``, built once; ``--score-texts`` conversations, blocks of ``--score-block-size``, no
cache) on the local engine and on Ray, alternated the same way, and checks the scores are equal.

    .venv/bin/python benchmarks/bench_engine.py                       # 5,000 texts, 2 rounds, hashing + minilm
    .venv/bin/python benchmarks/bench_engine.py --texts 1000 --rounds 1 --encoders hashing
    .venv/bin/python benchmarks/bench_engine.py --encoders none --scorers perplexity --score-texts 1000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _datakit import DATAKIT  # noqa: E402


def only_loopback() -> bool:
    """Whether this network namespace has no interface but ``lo``."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


def texts(n: int) -> list[str]:
    path = DATAKIT / "alpaca_random9k" / "alpaca_random9k.jsonl"
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            out.append("\n".join(m["content"] for m in rec["messages"]))
            if len(out) == n:
                break
    return out


def encode(spec: str, engine: str, actors: int, data: list[str], block: int) -> tuple[float, np.ndarray]:
    from kmq.config import EngineConfig
    from kmq.embed import get_embedder
    from kmq.engine import attach

    options = {"precision": "fp32"} if spec == "minilm" else {}
    emb = get_embedder(spec, **options)
    emb.block_size = block  # the same blocks on every engine (and several, for several actors)
    if engine == "ray":
        attach(emb, spec, options, EngineConfig(engine="ray", actors=actors))
    start = time.perf_counter()
    X = emb.encode(data, cache=False, show_progress=False)
    return time.perf_counter() - start, X


def conversations(n: int) -> list[list[dict[str, str]]]:
    path = DATAKIT / "alpaca_random9k" / "alpaca_random9k.jsonl"
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)["messages"])
            if len(out) == n:
                break
    return out


def score(model: Path, engine: str, actors: int, convs: list, block: int) -> tuple[float, np.ndarray]:
    from kmq.engine import attach_scorer
    from kmq.engine.ray import RayEngine
    from kmq.scorers import get_scorer

    scorer = get_scorer(f"perplexity:{model}", batch_size=8, max_length=256, show_progress=False)
    scorer.cache, scorer.block_size = False, block  # every conversation computed; the same blocks on every engine
    if engine == "ray":
        attach_scorer(scorer, RayEngine(actors=actors))
    start = time.perf_counter()
    values = scorer.score_messages(convs)
    return time.perf_counter() - start, values


def bench_scorer(args: argparse.Namespace, configs: list[tuple[str, int]]) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import tempfile

    import tiny_models

    model = tiny_models.build_causal_lm(Path(tempfile.mkdtemp(prefix="kmq-bench-")) / "tiny-llama", arch="llama")
    convs = conversations(args.score_texts)
    score(model, "local", 1, convs[:16], args.score_block_size)  # warm the imports and the model files
    times, diffs = alternate(lambda engine, actors: score(model, engine, actors, convs, args.score_block_size),
                             configs, args.rounds)  # fmt: skip
    table(f"perplexity (tiny Llama, {len(convs)} conversations, blocks of {args.score_block_size})", args.rounds,
          times, diffs, len(convs), configs)  # fmt: skip


def alternate(run, configs: list[tuple[str, int]], rounds: int) -> tuple[dict, dict]:
    """``run(engine, actors) -> (seconds, values)`` of every config, round by round, the order reversed every
    other round; the seconds of each config, and its values' max abs difference to the local engine's."""
    times: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    ref, diffs = None, {}
    for r in range(rounds):
        for engine, actors in configs if r % 2 == 0 else configs[::-1]:
            sec, values = run(engine, actors)
            times[(engine, actors)].append(sec)
            ref = values if ref is None and engine == "local" else ref
            if ref is not None:
                diffs[(engine, actors)] = float(np.abs(values - ref).max())
    return times, diffs


def table(what: str, rounds: int, times: dict, diffs: dict, n: int, configs: list[tuple[str, int]]) -> None:
    base = np.median(times[("local", 1)])
    print(f"\n{what}: median of {rounds} alternated round(s)", flush=True)
    print("| engine | actors | seconds | items/s | time / local | max abs diff vs local |", flush=True)
    print("|---|---|---|---|---|---|", flush=True)
    for engine, actors in configs:
        sec = float(np.median(times[(engine, actors)]))
        diff = diffs.get((engine, actors), float("nan"))
        print(f"| {engine} | {actors} | {sec:.2f} | {n / sec:.0f} | {sec / base:.2f} | {diff:.2g} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--encoders", default="hashing,minilm")
    ap.add_argument("--block-size", type=int, default=500, help="texts per block (per Ray task), every engine")
    ap.add_argument("--scorers", default="", help="perplexity: also time the perplexity scorer (a tiny Llama)")
    ap.add_argument("--score-texts", type=int, default=1000, help="conversations the scorer rates")
    ap.add_argument("--score-block-size", type=int, default=250, help="conversations per block (per Ray task)")
    args = ap.parse_args()
    if not only_loopback():
        cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "sh", "-c", 'ip link set lo up && exec "$@"',
               "sh", sys.executable, *sys.argv]  # fmt: skip
        sys.exit(subprocess.run(cmd).returncode)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from kmq.config import EngineConfig
    from kmq.engine import get_engine

    data = texts(args.texts)
    start = time.perf_counter()
    get_engine(EngineConfig(engine="ray")).start()
    print(f"ray start (once per process): {time.perf_counter() - start:.1f} s; {len(data)} texts", flush=True)
    configs = [("local", 1), ("ray", 1), ("ray", 2)]
    for spec in [e for e in args.encoders.split(",") if e and e != "none"]:
        encode(spec, "local", 1, data[:64], args.block_size)  # warm the imports and the model files
        times, diffs = alternate(lambda engine, actors, spec=spec: encode(spec, engine, actors, data, args.block_size),
                                 configs, args.rounds)  # fmt: skip
        table(spec, args.rounds, times, diffs, len(data), configs)
    if "perplexity" in args.scorers.split(","):
        bench_scorer(args, configs)


if __name__ == "__main__":
    main()
