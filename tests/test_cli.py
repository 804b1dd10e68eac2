"""The command line: results on stdout, one-line errors with exit code 2 and nothing written."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from kmq.cli.main import main


@pytest.fixture
def pool_file(datakit, tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:200]) + "\n")
    return path


def test_select_prints_where_things_went(pool_file, tmp_path, capsys):
    out = tmp_path / "sub.jsonl"
    assert main(["select", str(pool_file), "--budget", "20", "--out", str(out), "--embedder", "hashing", "-q"]) == 0
    stdout = capsys.readouterr().out
    assert str(out) in stdout and "sub.jsonl.kmq-run" in stdout and "20 records" in stdout
    assert len(out.read_text().splitlines()) == 20
    assert (tmp_path / "sub.jsonl.kmq-run" / "manifest.json").is_file()


def test_parquet_in_parquet_out(pool_file, tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in pool_file.read_text().splitlines()]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pool.parquet")
    out = tmp_path / "sub.parquet"
    args = ["select", str(tmp_path / "pool.parquet"), "--budget", "0.1", "--out", str(out), "--embedder", "hashing"]
    assert main([*args, "-q"]) == 0
    got = pq.read_table(out).to_pylist()
    assert len(got) == 20 and all(r in rows for r in got)


def test_score_command(pool_file, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["score", str(pool_file), "--embedder", "hashing", "--out", str(out), "-q"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "id,score" and len(lines) == 201 and lines[1].startswith("dolly_3k-0000,")
    assert "200 records" in capsys.readouterr().out


def test_score_command_with_the_relevance_scorer(pool_file, tmp_path, capsys):
    from kmq.data import read_pool
    from kmq.embed import get_embedder

    out = tmp_path / "rel.jsonl"
    args = ["score", str(pool_file), "--scorer", "relevance", "--embedder", "hashing", "--out", str(out), "-q"]
    assert main(args) == 0
    got = [json.loads(x) for x in out.read_text().splitlines()]
    pool, enc = read_pool(str(pool_file)), get_embedder("hashing")
    expected = np.einsum("ij,ij->i", enc.encode(pool.texts("prompt")), enc.encode(pool.texts("response")))
    np.testing.assert_allclose([r["score"] for r in got], expected, atol=1e-6)  # the clustering encoder's cosine
    assert "scorer relevance" in capsys.readouterr().out
    sub = tmp_path / "sub.jsonl"
    args = ["select", str(pool_file), "--budget", "20", "--scorer", "relevance", "--embedder", "hashing"]
    assert main([*args, "--within", "top", "--out", str(sub), "-q"]) == 0
    manifest = json.loads((tmp_path / "sub.jsonl.kmq-run" / "manifest.json").read_text())
    score_stage = manifest["stages"]["score"]
    assert score_stage["scorer"] == "relevance" and score_stage["from_cache"]  # reuses what `kmq score` computed


def test_choose_k_command(pool_file, capsys):
    assert main(["choose-k", str(pool_file), "--embedder", "hashing", "--candidates", "2,4,8", "-q"]) == 0
    out = capsys.readouterr().out
    assert "best k =" in out and out.count("\n") == 5


def bad(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("make", "extra", "message"),
    [
        (lambda p: bad(p, "m.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n{oops\n'), [], "line 2"),
        (lambda p: bad(p, "u.jsonl", '{"foo": 1, "bar": 2}\n'), [], "fields found: ['foo', 'bar']"),
        (lambda p: bad(p, "e.jsonl", ""), [], "has no records"),
        (None, ["--budget", "0"], "budget"),
        (None, ["--budget", "201"], "larger than the pool (200 records)"),
        (None, ["--clusters", "500"], "larger than the pool"),
        (None, ["--embedder", "st:/nonexistent/model"], "Cannot load sentence-transformers model"),
        (None, ["--method", "nope"], "'method' parameter must be one of"),
        (None, ["--method", "random", "--within", "top"], "Unknown parameter(s) ['within'] for method 'random'"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(pool_file, tmp_path, capsys, make, extra, message):
    pool = make(tmp_path) if make else pool_file
    out = tmp_path / "out" / "sub.jsonl"
    args = ["select", str(pool), "--out", str(out), "--embedder", "hashing", "-q"]
    if "--budget" not in extra:
        args += ["--budget", "10"]
    assert main([*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_nan_scores_and_mismatched_embeddings(pool_file, tmp_path, capsys):
    rows = [json.loads(x) for x in pool_file.read_text().splitlines()]
    for i, r in enumerate(rows):
        r["q"] = float("nan") if i == 7 else 1.0
    scored = bad(tmp_path, "q.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "o.jsonl"
    assert main(["select", str(scored), "--budget", "5", "--out", str(out), "--embedder", "hashing",
                 "--scorer", "column:q", "-q"]) == 2  # fmt: skip
    assert "dolly_3k-0007" in capsys.readouterr().err
    np.save(tmp_path / "e.npy", np.ones((199, 8), dtype=np.float32))
    assert main(["select", str(pool_file), "--budget", "5", "--out", str(out), "--embedder",
                 f"npy:{tmp_path / 'e.npy'}", "-q"]) == 2  # fmt: skip
    assert "199 rows but the pool has 200 records" in capsys.readouterr().err
    assert not out.exists()


def test_console_script_and_debug_traceback(tmp_path):
    pool = bad(tmp_path, "x.jsonl", "{broken\n")
    env = {**os.environ, "KMQ_DEBUG": "0"}
    cmd = [sys.executable, "-m", "kmq.cli.main", "select", str(pool), "--budget", "1", "--out", str(tmp_path / "o")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "line 1" in res.stderr and "Traceback" not in res.stderr
    res = subprocess.run(cmd, capture_output=True, text=True, env={**env, "KMQ_DEBUG": "1"})
    assert res.returncode == 2 and "Traceback" in res.stderr
