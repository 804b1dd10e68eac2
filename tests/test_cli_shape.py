"""Shaping the pool through the CLI: --decontaminate, --out-format, and the diagnostics of every run."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from kmq.cli.main import main
from kmq.errors import InvalidParameterError


@pytest.fixture
def leaky_pool(datakit, tmp_path):
    """400 dolly records plus 5 gsm8k_test questions (3 verbatim, 2 with changed case and spacing) and 1 MMLU one."""
    lines = (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:400]
    gsm = [json.loads(x) for x in (datakit / "gsm8k_test" / "gsm8k_test.jsonl").read_text().splitlines()[:5]]
    for i, r in enumerate(gsm):
        prompt = r["prompt"] if i < 3 else "  ".join(r["prompt"].upper().split())
        lines.append(json.dumps({"id": f"leak-{i}", "messages": [
            {"role": "user", "content": prompt}, {"role": "assistant", "content": r["answer"]}]}))  # fmt: skip
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_decontaminate_removes_eval_prompts_and_says_where(leaky_pool, datakit, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    evals = [str(datakit / "gsm8k_test"), str(datakit / "arc")]
    args = ["select", str(leaky_pool), "--budget", "400", "--out", str(out), "--embedder", "hashing", "-q"]
    assert main([*args, "--decontaminate", *evals]) == 0
    stdout = capsys.readouterr().out
    assert "5 of 405 records overlap the eval sets" in stdout and "gsm8k_test=5" in stdout
    ids = {json.loads(x)["id"] for x in out.read_text().splitlines()}
    assert len(ids) == 400 and not any(i.startswith("leak-") for i in ids)  # every clean record, no leak
    run = tmp_path / "s.jsonl.kmq-run"
    matches = pq.read_table(run / "decontaminated.parquet").to_pydict()
    assert sorted(set(matches["id"])) == [f"leak-{i}" for i in range(5)]
    assert set(matches["eval_set"]) == {"gsm8k_test"}
    pool = pq.read_table(run / "pool.parquet").to_pydict()
    flagged = {i: c for i, c in zip(pool["id"], pool["contaminated"], strict=True) if c}
    assert flagged == {f"leak-{i}": "gsm8k_test" for i in range(5)}
    manifest = json.loads((run / "manifest.json").read_text())
    dc = manifest["stages"]["decontaminate"]
    assert dc["contaminated"] == 5 and dc["per_set"] == {"gsm8k_test": 5, "arc": 0} and dc["ngram"] == 13
    assert manifest["diagnostics"]["pool"]["candidates"] == 400


def test_decontaminate_budget_above_clean_records_names_both(leaky_pool, datakit, tmp_path, capsys):
    args = ["select", str(leaky_pool), "--budget", "402", "--out", str(tmp_path / "s.jsonl"), "--embedder", "hashing"]
    assert main([*args, "--decontaminate", str(datakit / "gsm8k_test"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "402" in err and "400 of them also clean" in err and not (tmp_path / "s.jsonl").exists()


def test_decontaminate_bad_spec_and_eval_as_output_are_refused(leaky_pool, datakit, tmp_path, capsys):
    base = ["select", str(leaky_pool), "--budget", "10", "--embedder", "hashing", "-q"]
    assert main([*base, "--out", str(tmp_path / "a.jsonl"), "--decontaminate", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    evals = tmp_path / "evals.jsonl"
    evals.write_text(json.dumps({"question": "What is two plus two, written as a word?"}) + "\n")
    before = evals.read_bytes()
    assert main([*base, "--out", str(evals), "--decontaminate", f"{evals}:question", "--overwrite"]) == 2
    assert "input" in capsys.readouterr().err and evals.read_bytes() == before
    assert main([*base, "--out", str(tmp_path / "b.jsonl"), "--decontaminate", f"{evals}:nope"]) == 2
    assert "nope" in capsys.readouterr().err


def test_out_format_converts_alpaca_to_messages(datakit, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    pool = datakit / "alpaca_random9k" / "alpaca_random9k.jsonl"
    args = ["select", str(pool), "--budget", "40", "--out", str(out), "--embedder", "hashing", "-q"]
    assert main([*args, "--out-format", "messages"]) == 0
    assert "40 records, messages as jsonl" in capsys.readouterr().out
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(r["messages"][0]["role"] in ("system", "user") and r["messages"][-1]["role"] == "assistant"
               for r in rows)  # fmt: skip
    assert all("instruction" not in r and r["id"] for r in rows)
    manifest = json.loads((tmp_path / "s.jsonl.kmq-run" / "manifest.json").read_text())
    assert manifest["outputs"]["subset"]["format"] == "messages"
    assert manifest["outputs"]["subset"]["conversion"]["records"] == 40
    with pytest.raises(SystemExit) as stop:  # not a format: argparse names the choices
        main([*args, "--out-format", "chatml"])
    assert stop.value.code == 2 and "prompt-completion" in capsys.readouterr().err


def test_every_run_has_diagnostics_with_a_random_reference(datakit, tmp_path):
    out = tmp_path / "s.jsonl"
    pool = datakit / "dolly_3k" / "dolly_3k.jsonl"
    assert main(["select", str(pool), "--budget", "150", "--out", str(out), "--embedder", "hashing", "-q"]) == 0
    d = json.loads((tmp_path / "s.jsonl.kmq-run" / "manifest.json").read_text())["diagnostics"]
    for block in ("selected", "random"):
        assert d[block]["n"] == 150 and d[block]["vendi"] > 1 and 0 <= d[block]["coverage_mean"] <= 2
        assert sum(d[block]["mix"]["category"].values()) == 150
    assert d["selected"]["empty_clusters"] == 0
    assert d["selected"]["quality"]["mean"] > d["random"]["quality"]["mean"]  # kMQ draws by quality
    assert sum(d["pool"]["mix"]["category"].values()) == 2996


@pytest.fixture
def mixed_pool(datakit, tmp_path):
    """600 dolly, 300 lima and 300 gsm8k_train records, each with its datakit ``source``."""
    rows = []
    for name, k in (("dolly_3k", 600), ("lima", 300), ("gsm8k_train", 300)):
        for line in (datakit / name / f"{name}.jsonl").read_text().splitlines()[:k]:
            record = json.loads(line)
            record["source"] = name
            rows.append(json.dumps(record))
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_stratify_keeps_pool_shares_and_quota_fixes_one(mixed_pool, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    base = ["select", str(mixed_pool), "--out", str(out), "--embedder", "hashing", "-q"]
    assert main([*base, "--budget", "120", "--stratify", "source"]) == 0
    sources = [json.loads(x)["source"] for x in out.read_text().splitlines()]
    assert {s: sources.count(s) for s in set(sources)} == {"dolly_3k": 60, "lima": 30, "gsm8k_train": 30}
    assert main([*base, "--budget", "120", "--quota", "source=lima:50", "--overwrite"]) == 0  # --quota implies it
    assert "strata    by source: dolly_3k=47/600, gsm8k_train=23/300, lima=50/300" in capsys.readouterr().out
    pool = pq.read_table(tmp_path / "s.jsonl.kmq-run" / "pool.parquet").to_pydict()
    picked = [s for s, sel in zip(pool["stratum"], pool["selected"], strict=True) if sel]
    assert picked.count("lima") == 50 and len(picked) == 120
    table = pq.read_table(tmp_path / "s.jsonl.kmq-run" / "selection.parquet").to_pydict()
    assert sorted(set(table["stratum"])) == ["dolly_3k", "gsm8k_train", "lima"]


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--quota", "source=lima:301"], ["301", "300"]),  # larger than its stratum: both numbers
        (["--quota", "source=alpaca:10"], ["alpaca", "dolly_3k"]),  # no such value: the values
        (["--stratify", "source", "--quota", "category=x:3"], ["category", "source"]),
        (["--stratify", "flavour"], ["flavour", "fields found"]),
        (["--quota", "source=lima"], ["FIELD=VALUE:N"]),
    ],
)
def test_bad_strata_and_quotas_are_refused_before_anything_is_written(mixed_pool, tmp_path, capsys, flags, words):
    out = tmp_path / "s.jsonl"
    args = ["select", str(mixed_pool), "--budget", "120", "--out", str(out), "--embedder", "hashing"]
    assert main([*args, *flags]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err
    assert not out.exists() and not (tmp_path / "s.jsonl.kmq-run").exists()


def test_token_budget_is_met_as_exactly_as_records_allow(datakit, tmp_path, capsys):
    import kmq.data
    from kmq.embed.tokens import count_tokens
    from tiny_models import make_tokenizer

    tok_dir = tmp_path / "tok"
    make_tokenizer().save_pretrained(tok_dir)
    pool = datakit / "dolly_3k" / "dolly_3k.jsonl"
    out = tmp_path / "s.jsonl"
    args = ["select", str(pool), "--budget", "60k-tokens", "--tokenizer", str(tok_dir), "--out", str(out)]
    assert main([*args, "--embedder", "hashing", "-q"]) == 0
    assert "tokens    " in capsys.readouterr().out
    manifest = json.loads((tmp_path / "s.jsonl.kmq-run" / "manifest.json").read_text())
    got = manifest["budget"]["tokens"]
    assert manifest["budget"]["requested"] == "60000-tokens" and got["budget"] == 60_000
    subset = kmq.data.read_pool(out)
    counted, stats = count_tokens(subset.messages, str(tok_dir), cache=False)
    assert stats["template"] == "model" and int(counted.sum()) == got["achieved"] <= 60_000
    everything, _ = count_tokens(kmq.data.read_pool(pool).messages, str(tok_dir))
    assert 60_000 - got["achieved"] < everything.max()  # the gap is less than one record
    assert len(subset) == got["records"] == manifest["budget"]["resolved"]
    d = manifest["diagnostics"]["selected"]
    assert d["cluster_kl"] is not None and d["empty_clusters"] is not None  # the clusters reach the diagnostics
    clusters = pq.read_table(tmp_path / "s.jsonl.kmq-run" / "clusters.parquet").to_pydict()
    assert sum(clusters["picks"]) == got["records"]


def test_token_budget_above_the_pool_names_its_tokens(datakit, tmp_path, capsys):
    pool = datakit / "lima" / "lima.jsonl"
    args = ["select", str(pool), "--budget", "50M-tokens", "--out", str(tmp_path / "s.jsonl"), "--embedder", "hashing"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "50000000 tokens" in err and "-tokens or less" in err


def test_api_takes_the_shaping_options(mixed_pool, datakit, tmp_path):
    import kmq

    out = tmp_path / "api.jsonl"
    sel = kmq.select(
        str(mixed_pool), budget=100, embedder="hashing", stratify="source", quota=["source=lima:40"],
        decontaminate=[datakit / "gsm8k_train"], dedup="none", out_format="sharegpt", out=out,
    )  # fmt: skip
    assert sel.manifest["stages"]["select"]["strata"]["lima"]["picked"] == 40
    assert sel.manifest["stages"]["decontaminate"]["per_set"]["gsm8k_train"] == 300  # the pool's gsm8k rows
    assert not any(i.startswith("gsm8k_train") for i in sel.ids)
    assert all("conversations" in json.loads(x) for x in out.read_text().splitlines())
    with pytest.raises(InvalidParameterError, match="stratify"):
        kmq.select(str(mixed_pool), budget=10, embedder="hashing", stratfy="source")  # the close match is named


def test_pooled_conversation_vectors_need_no_third_pass(datakit, tmp_path):
    import kmq

    pool = datakit / "dolly_3k" / "dolly_3k.jsonl"
    cfg = {"embed": {"embedder": "hashing", "conversation_vectors": "joint"}}
    (tmp_path / "joint.yaml").write_text(json.dumps(cfg))
    joint = kmq.select(str(pool), budget=100, config=tmp_path / "joint.yaml", out=tmp_path / "j.jsonl")
    assert joint.manifest["stages"]["embed"]["conversation"]["texts"] == len(joint.pool)  # one pass of whole texts
    cfg = {"embed": {"embedder": "hashing"}}  # pooled is the default
    (tmp_path / "pooled.yaml").write_text(json.dumps(cfg))
    pooled = kmq.select(str(pool), budget=100, config=tmp_path / "pooled.yaml", out=tmp_path / "p.jsonl")
    st = pooled.manifest["stages"]["embed"]["conversation"]
    assert st["conversation_vectors"] == "pooled" and st["texts"] == 2 * len(pooled.pool)
    assert list(pooled.manifest["stages"]["embed"]) == ["conversation"]  # the heuristic found both views cached
    assert pooled.manifest["stages"]["cluster"]["cached"] is False  # other vectors: their own clusters
    assert len(set(joint.ids) & set(pooled.ids)) > 20  # close vectors, other clusters: many picks shared
