"""``kmq select``: pick a diverse, high-quality subset of a pool."""

from __future__ import annotations

import argparse
import sys

import yaml

from kmq.cli._common import (
    SCORER_HELP,
    add_common_options,
    add_embed_options,
    add_overwrite_option,
    add_pool_options,
    add_score_options,
    config_inputs,
    require,
    run_outputs,
    show_progress,
)
from kmq.cli._flags import setting, setting_overrides
from kmq.errors import InvalidParameterError

EXAMPLES = """examples:
  kmq select pool.jsonl --budget 1000 --out subset.jsonl
  kmq select pool.parquet --budget 0.1 --out subset.parquet --clusters auto
  kmq select pool.jsonl --budget 5000 --out s.jsonl --embedder hashing --method random
  kmq select pool.jsonl --budget 5000 --out s.jsonl --embedder npy:emb.npy --scorer column:score
  kmq select databricks/databricks-dolly-15k --budget 1000 --out dolly_1k.jsonl   (online)
"""


def register(sub: argparse._SubParsersAction) -> None:
    from kmq.config import RunConfig as C
    from kmq.methods import get_method

    kmq_choices = get_method("kmq").choices

    p = sub.add_parser(
        "select",
        help="select a subset (static kMQ or a baseline)",
        description="Select BUDGET records from POOL and write them in POOL's own format.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_pool_options(p, C)
    p.add_argument("--budget", default=None,
                   help="a count (1000), a fraction of the pool (0.1) or training tokens (2M-tokens, 40k-tokens)")
    p.add_argument("--out", default=None, metavar="SUBSET",
                   help="the subset: .jsonl .json .parquet .csv (.gz), or DIR/ for a save_to_disk folder")  # fmt: skip
    p.add_argument("--run-dir", default=None, help="run directory (default: SUBSET.kmq-run beside the subset)")
    add_overwrite_option(p)
    setting(p, C, "shuffle", "--shuffle")
    setting(p, C, "dedup", "--dedup")
    setting(p, C, "stratify", "--stratify", metavar="FIELD")
    setting(p, C, "quota", "--quota", metavar="FIELD=VALUE:N|FRACTION")
    setting(p, C, "tokenizer", "--tokenizer", metavar="NAME")
    setting(p, C, "decontaminate", "--decontaminate", metavar="PATH[:FIELD]")
    setting(p, C, "decontaminate_ngram", "--decontaminate-ngram")
    setting(p, C, "out_format", "--out-format")
    setting(p, C, "report", "--report")
    setting(p, C, "select.method", "--method", help="kmq (default) | random | kmeans-random | kmeans-closest | "
            "kcenter | deita | qdit | top-quality")  # fmt: skip
    g = p.add_argument_group("clustering")
    setting(g, C, "cluster.clusters", "--clusters")
    setting(g, C, "cluster.candidates", "--candidates")
    setting(g, C, "cluster.silhouette_sample", "--silhouette-sample")
    setting(g, C, "cluster.niter", "--niter")
    setting(g, C, "cluster.nredo", "--nredo")
    setting(g, C, "cluster.kmeans_backend", "--kmeans-backend")
    g = p.add_argument_group("quality")
    setting(g, C, "score.scorer", "--scorer", help=SCORER_HELP)
    setting(g, C, "score.relevance_embedder", "--relevance-embedder")
    add_score_options(g, C)
    g = p.add_argument_group("method parameters")
    g.add_argument("--allocation", default=None, choices=list(kmq_choices["allocation"]),
                   help="kmq: budget per cluster (default equal)")  # fmt: skip
    g.add_argument("--within", default=None, choices=list(kmq_choices["within"]),
                   help="kmq: draw inside a cluster (default softmax of standardised quality)")  # fmt: skip
    g.add_argument("--temperature", type=float, default=None, help="kmq: softmax temperature (default 1.0)")
    g.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other method parameter (repeatable), e.g. --param tau=0.85")  # fmt: skip
    add_embed_options(p, C, scorer_sections=("score",))
    add_common_options(p, C)
    p.set_defaults(func=run)


def _method_params(args: argparse.Namespace) -> dict:
    params = {k: v for k in ("allocation", "within", "temperature") if (v := getattr(args, k)) is not None}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidParameterError(f"--param expects KEY=VALUE. Got {item!r} instead.")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            reason = str(err).splitlines()[0]
            raise InvalidParameterError(
                f"--param {item!r}: the value is not valid YAML ({reason}). Quote it, e.g. --param 'key=\"text\"'."
            ) from None
    return params


def run(args: argparse.Namespace) -> int:
    from kmq.pipeline import build_config, run_select
    from kmq.publish import default_run_dir

    overrides = {
        **setting_overrides(args),
        **run_outputs(args),
        "pool": args.pool,
        "budget": args.budget,
        "select.params": _method_params(args) or None,
    }
    cfg = build_config(args.config, overrides)
    require(cfg, "select", "pool", "budget", "out")
    if not cfg.run_dir:
        cfg = cfg.updated({"run_dir": str(default_run_dir(cfg.out))})
    report = None
    if cfg.report:
        from kmq.report import write_report as report
    sel = run_select(
        cfg, show_progress=show_progress(args), overwrite=args.overwrite, inputs=config_inputs(args), report=report
    )
    sys.stdout.write("\n".join(summary(sel)) + "\n")
    return 0


def summary(sel) -> list[str]:
    """The stdout lines of a finished selection: what was written where, with what, and what to look at."""
    m = sel.manifest
    subset = m.get("outputs", {}).get("subset", {})
    files = sorted(p.name for p in sel.run_dir.iterdir() if p.is_file()) if sel.run_dir else []
    files = [f for f in files if f not in ("kmq-run.json", "duplicates.parquet")]
    lines = [
        f"subset    {subset.get('path', sel.config.out)}  ({len(sel)} records, "
        f"{subset.get('format', m['input']['format'])} as "
        f"{subset.get('container', m['input']['container'])}, {subset.get('order', 'pool order')})",
        f"run dir   {sel.run_dir}  ({', '.join(files)})",
        f"pool      {m['input']['source']}  ({m['input']['records']} records)",
        f"method    {m['method']['name']}  " + " ".join(f"{k}={v}" for k, v in (m["method"]["params"] or {}).items()),
    ]
    tk = m["budget"].get("tokens")
    if tk:
        st = m["stages"].get("tokens", {})
        lines.append(
            f"tokens    {tk['achieved']} of a budget of {tk['budget']} tokens in {tk['records']} records "
            f"(counted with {st.get('tokenizer')}{', its chat template' if st.get('template') == 'model' else ''})"
        )
    sa = m["stages"].get("select", {}).get("strata")
    if sa:
        parts = [f"{name}={v['picked']}/{v['size']}" for name, v in list(sa.items())[:12] if isinstance(v, dict)]
        lines.append(f"strata    by {m['stages'].get('strata', {}).get('field')}: " + ", ".join(parts))
    conv = subset.get("conversion")
    if conv:
        lines.append("convert   " + _conversion_line(conv))
    for view, st in m["stages"].get("embed", {}).items():
        how = " (pooled from the prompt and response vectors)" if st.get("conversation_vectors") == "pooled" else ""
        lines.append(f"embedder  {st['embedder']} on {view}s{how}: " + _embed_counts(st))
    dd = m["stages"].get("dedup")
    if dd and dd["records"] != dd["kept"]:
        lines.append(
            f"dedup     {dd['mode']}: {dd['records'] - dd['kept']} of {dd['records']} records are duplicates "
            f"({dd['exact_duplicates']} exact), not candidates; listed in duplicates.parquet"
        )
    dc = m["stages"].get("decontaminate")
    if dc:
        per = ", ".join(f"{k}={v}" for k, v in dc["per_set"].items())
        lines.append(
            f"decontam  {dc['contaminated']} of {dc['pool_records']} records overlap the eval sets "
            f"({dc['ngram']}-grams or exact prompt: {per}), not candidates; listed in decontaminated.parquet"
        )
    sc = m["stages"].get("score")
    if sc:
        extra = f" (relevance encoder {sc['relevance_encoder']})" if sc.get("relevance_encoder") else ""
        lines.append(f"scorer    {sc['scorer']}{' (scores from the cache)' if sc.get('from_cache') else ''}{extra}")
    cl = m["stages"].get("cluster")
    if cl:
        lines.append(
            f"clusters  k={cl['n_clusters']} ({cl['k_source']}), {m['counts']['clusters_with_picks']} with picks"
        )
    if "per_source" in m["counts"]:
        top = sorted(m["counts"]["per_source"].items(), key=lambda kv: -kv[1])
        lines.append("sources   " + ", ".join(f"{k}={v}" for k, v in top))
    lines += [f"warning   {w}" for w in m.get("warnings", [])]
    lines.append(f"time      {m['seconds']:.1f}s")
    return [line.rstrip() for line in lines]


def _embed_counts(st: dict) -> str:
    if st.get("source") == "precomputed":
        return f"{st['rows']} precomputed rows, d={st['dim']}"
    texts, unique = st.get("texts", 0), st.get("unique", st.get("texts", 0))
    parts = [f"{st.get('encoded', 0)} encoded", f"{st.get('cached', 0)} cached"]
    if texts - unique:
        parts.append(f"{texts - unique} duplicates of other texts")
    if st.get("empty"):
        parts.append(f"{st['empty']} empty")
    return f"{texts} texts ({', '.join(parts)})"



def _conversion_line(conv: dict) -> str:
    """What the --out-format conversion kept and lost, in one line."""
    keys = {k: v for k, v in conv.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return ", ".join(f"{k}={v}" for k, v in keys.items()) or str(conv)
