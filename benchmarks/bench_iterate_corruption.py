"""Does iterative kMQ "automatically filter out clusters containing low-quality data"? (paper §3.2)

Setup (CPU, offline):

1. The datakit mixed pool: the 12 training pools concatenated (60,885 records), seeded subsample of ``--n``.
2. Cluster it once (bundled MiniLM, k = ``--clusters``) and pick ``--corrupt-frac`` of the clusters at random
   (seeded); corrupt the responses of every member of those clusters: ``within`` shuffles the responses among
   the prompts of the same cluster (the answers stay on the cluster's topic but answer another prompt),
   ``across`` gives each a response drawn from the rest of the pool. Records keep a ``corrupted`` flag.
3. At the same budget, select from the corrupted pool with ``random``, static ``kmq`` (``kmq select``) and
   ``kmq iterate`` (relevance judge). What the loop trains and generates with is deliberately cheap: the
   ``command`` trainer just copies a tiny random local Llama (no learning happens) and the ``hf`` generator
   decodes 8 greedy tokens from it: garbage, so the judge's ``S = rel(prompt, gold) − rel(prompt, generated)``
   is driven by ``rel(prompt, gold)``, which is exactly the corruption signal. This isolates the selection
   mechanics (cluster signal -> weights -> allocation); it does not test whether a trained model's answers
   help.
4. Report the share of corrupted records selected (overall and per round), over several seeds.

Run (about 15-30 minutes on 2 busy CPU cores; the embeddings are cached in ``WORK/cache``)::

    .venv/bin/python benchmarks/bench_iterate_corruption.py --n 3000 --budget 300 --rounds 3 --clusters 30 \\
        --seeds 0 1 2 --temperatures 1.0 0.1 --corruption within across
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATAKIT = Path(os.environ.get("KMQ_DATAKIT", ROOT.parent / "shared" / "datakit"))
POOLS = (
    "t0_p3_subset", "gpteacher", "alpaca_random9k", "gsm8k_train", "alpagasus_filtered", "dolly_3k",
    "code_alpaca_2k", "lima", "alpaca_gpt4_demo", "instructionwild_v2", "fastchat_dummy", "self_instruct_seed",
)  # fmt: skip
COPY_TRAINER = f"{sys.executable} -c 'import shutil,sys; shutil.copytree(sys.argv[1], sys.argv[2])' " + (
    "{base_model} {output_dir}"
)


def mixed_subsample(n: int, seed: int) -> list[dict]:
    records = []
    for name in POOLS:
        with open(DATAKIT / name / f"{name}.jsonl", encoding="utf-8") as fh:
            records += [json.loads(line) for line in fh]
    rng = np.random.default_rng([seed, 101])
    keep = np.sort(rng.choice(len(records), size=n, replace=False))
    return [records[i] for i in keep]


def first_answer(rec: dict) -> int | None:
    for i, turn in enumerate(rec["messages"]):
        if turn["role"] == "assistant":
            return i
    return None


def corrupt(records: list[dict], labels: np.ndarray, frac: float, mode: str, seed: int) -> list[dict]:
    """Corrupt the first answer of every member of a random ``frac`` of the clusters (see the module docstring)."""
    rng = np.random.default_rng([seed, 202])
    k = int(labels.max()) + 1
    bad = set(rng.choice(k, size=max(1, round(frac * k)), replace=False).tolist())
    out = [json.loads(json.dumps(r)) for r in records]
    answers = [r["messages"][j]["content"] if (j := first_answer(r)) is not None else "" for r in records]
    clean = [i for i in range(len(records)) if labels[i] not in bad]
    for c in sorted(bad):
        members = [i for i in np.flatnonzero(labels == c).tolist() if first_answer(records[i]) is not None]
        if mode == "within":
            donors = members[1:] + members[:1] if len(members) > 1 else members  # a derangement: rotate
        else:
            donors = rng.choice(clean, size=len(members), replace=False).tolist()
        for i, d in zip(members, donors, strict=True):
            out[i]["messages"][first_answer(out[i])]["content"] = answers[d]
    for i, r in enumerate(out):
        r["corrupted"] = bool(labels[i] in bad and first_answer(records[i]) is not None)
    return out


def share(pool_flags: np.ndarray, picked: np.ndarray) -> float:
    return float(pool_flags[picked].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--budget", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clusters", type=int, default=30)
    ap.add_argument("--corrupt-frac", type=float, default=0.2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 0.1])
    ap.add_argument("--corruption", nargs="+", default=["within"], choices=["within", "across"])
    ap.add_argument("--work", default="/tmp/kmq-iterate/bench")
    args = ap.parse_args()

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("KMQ_CACHE_DIR", str(work / "cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT / "tests"))
    import kmq
    from kmq.data import Pool
    from kmq.pipeline import build_config
    from kmq.stages import Stages
    from tiny_models import build_causal_lm

    model = work / "tiny-llama"
    if not model.is_dir():
        build_causal_lm(model)
    base = mixed_subsample(args.n, 0)
    pool0 = Pool.from_records(base)
    cfg0 = build_config(None, {"pool": "mixed", "budget": args.budget, "cluster.clusters": args.clusters})
    labels0, _ = Stages(cfg0, pool0, False).clusters(args.budget).value
    results = []
    for mode in args.corruption:
        for seed in args.seeds:
            records = corrupt(base, labels0, args.corrupt_frac, mode, seed)
            path = work / f"pool-{mode}-{seed}.jsonl"
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
            flags = np.array([r["corrupted"] for r in records])
            row = {"mode": mode, "seed": seed, "pool_share": float(flags.mean())}
            t = time.perf_counter()
            for method in ("random", "kmq"):
                sel = kmq.select(str(path), budget=args.budget, method=method, clusters=args.clusters, seed=seed,
                                 show_progress=False)  # fmt: skip
                row[method] = share(flags, sel.indices)
            first = None
            for temp in args.temperatures:
                run = work / f"run-{mode}-{seed}-T{temp}"
                if first is not None and not run.exists():  # reuse round 1 (select, train, generate, judge)
                    shutil.copytree(first, run)
                sel = kmq.iterate(
                    str(path), budget=args.budget, rounds=args.rounds, seed=seed, model=str(model), run_dir=run,
                    clusters=args.clusters, trainer="command", judge="relevance", show_progress=False,
                    restart_from="r01-reweight" if first is not None else None,
                    settings={"train.command": COPY_TRAINER, "generate.max_new_tokens": 8,
                              "generate.batch_size": 16, "reweight.temperature": temp},
                )  # fmt: skip
                first = first or run
                by_round = [share(flags, sel.indices[sel.rounds == r]) for r in range(1, args.rounds + 1)]
                judged = np.load(run / "rounds/r01/judge/arrays/pool_index.npy")
                S = np.load(run / "rounds/r01/judge/arrays/S.npy")
                row[f"iterate_T{temp}"] = share(flags, sel.indices)
                row[f"iterate_T{temp}_rounds"] = by_round
                row["S_r01_corrupted"] = float(np.nanmean(S[flags[judged]])) if flags[judged].any() else None
                row["S_r01_clean"] = float(np.nanmean(S[~flags[judged]]))
            row["seconds"] = round(time.perf_counter() - t, 1)
            results.append(row)
            print(json.dumps(row), flush=True)
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\ncorrupted share of the selection (pool n={args.n}, budget {args.budget}, k={args.clusters}, "
          f"{args.corrupt_frac:.0%} of clusters corrupted), mean ± sd over seeds {args.seeds}:")  # fmt: skip
    keys = ["pool_share", "random", "kmq", *[f"iterate_T{t}" for t in args.temperatures]]
    for mode in args.corruption:
        rows = [r for r in results if r["mode"] == mode]
        cells = []
        for key in keys:
            v = np.array([r[key] for r in rows])
            cells.append(f"{key} {v.mean():.3f}±{v.std():.3f}")
        print(f"  {mode:7s} " + " | ".join(cells))
        for t in args.temperatures:
            per = np.array([r[f"iterate_T{t}_rounds"] for r in rows]).mean(0)
            print(f"          iterate T={t} per round: " + ", ".join(f"r{i + 1} {x:.3f}" for i, x in enumerate(per)))


if __name__ == "__main__":
    main()
