"""kmq writes only paths it owns, never an input, and publishes a run's outputs together (issue 9, items 1-6, 10).

Every case runs the real command line in-process and checks the files on disk afterwards, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv  # noqa: F401
import pyarrow.parquet as pq
import pytest

from kmq.cli.main import main

HASHING = ["--embedder", "hashing", "-q"]


@pytest.fixture
def pool_file(datakit, tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:120]) + "\n")
    return path


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (relative path -> sha256), to compare whole trees before and after."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def select(pool, out, *extra):
    return main(["select", str(pool), "--budget", "12", "--out", str(out), *HASHING, *extra])


def test_default_run_dirs_differ_by_extension(datakit, tmp_path, capsys):
    rows = json.loads((datakit / "alpaca_random9k" / "orig" / "claude_t45.json").read_text())[:80]
    pool_file = tmp_path / "pool.csv"
    pa.csv.write_csv(pa.Table.from_pylist(rows), pool_file)
    for name in ("s.jsonl", "s.json", "s.parquet", "s.csv"):
        assert select(pool_file, tmp_path / name) == 0, capsys.readouterr().err
        assert (tmp_path / f"{name}.kmq-run" / "kmq-run.json").is_file()
    for name in ("s.jsonl", "s.json", "s.parquet", "s.csv"):  # each run directory records its own subset
        manifest = json.loads((tmp_path / f"{name}.kmq-run" / "manifest.json").read_text())
        assert manifest["outputs"]["subset"]["path"] == str((tmp_path / name).resolve())
        assert manifest["outputs"]["subset"]["sha256"] == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_rerun_replaces_its_own_outputs(pool_file, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert select(pool_file, out) == 0
    assert select(pool_file, out, "--seed", "3") == 0, capsys.readouterr().err
    manifest = json.loads((tmp_path / "s.jsonl.kmq-run" / "manifest.json").read_text())
    assert manifest["seed"] == 3
    assert manifest["outputs"]["subset"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_out_that_kmq_did_not_write_needs_overwrite(pool_file, tmp_path, capsys):
    out = tmp_path / "notes.jsonl"
    out.write_text('{"mine": 1}\n')
    assert select(pool_file, out) == 2
    err = capsys.readouterr().err
    assert "exists and kmq did not write it" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert out.read_text() == '{"mine": 1}\n' and not (tmp_path / "notes.jsonl.kmq-run").exists()
    assert select(pool_file, out, "--overwrite") == 0
    assert len(out.read_text().splitlines()) == 12


def test_edited_subset_is_not_overwritten_silently(pool_file, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert select(pool_file, out) == 0
    out.write_text(out.read_text() + '{"hand": "edited"}\n')
    assert select(pool_file, out) == 2
    assert "kmq did not write it (or it changed since)" in capsys.readouterr().err
    assert out.read_text().endswith('{"hand": "edited"}\n')


def test_run_dir_that_is_not_kmqs_is_refused(pool_file, tmp_path, capsys):
    folder = tmp_path / "results"
    folder.mkdir()
    for name in ("config.yaml", "manifest.json", "selection.parquet", "notes.txt"):
        (folder / name).write_text(f"user's {name}\n")
    before = snapshot(folder)
    assert select(pool_file, tmp_path / "s.jsonl", "--run-dir", str(folder)) == 2
    err = capsys.readouterr().err
    assert "is not a kmq run directory" in err and "--overwrite" in err
    assert snapshot(folder) == before and not (tmp_path / "s.jsonl").exists()
    # --overwrite writes kmq's files into it and leaves the others alone
    assert select(pool_file, tmp_path / "s.jsonl", "--run-dir", str(folder), "--overwrite") == 0
    assert (folder / "notes.txt").read_text() == "user's notes.txt\n"
    assert json.loads((folder / "manifest.json").read_text())["command"] == "select"


def test_pool_inside_the_run_dir_is_never_replaced(pool_file, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [json.loads(line) for line in pool_file.read_text().splitlines()]
    pool = folder / "selection.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pool)
    before = pool.read_bytes()
    for extra in ([], ["--overwrite"]):
        rc = main(["select", str(pool), "--budget", "12", "--out", str(tmp_path / "s.parquet"), "--run-dir",
                   str(folder), *HASHING, *extra])  # fmt: skip
        assert rc == 2
        assert "is an input of this run" in capsys.readouterr().err
        assert pool.read_bytes() == before and not (tmp_path / "s.parquet").exists()


@pytest.mark.parametrize("which", ["pool", "npy", "config", "pool-symlink"])
def test_out_equal_to_an_input_is_refused(pool_file, tmp_path, capsys, which):
    emb = tmp_path / "emb.npy"
    rng = np.random.default_rng(0)
    np.save(emb, rng.standard_normal((120, 8)).astype(np.float32))
    config = tmp_path / "run.yaml"
    config.write_text("seed: 1\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(pool_file)
    target = {"pool": pool_file, "npy": emb, "config": config, "pool-symlink": link}[which]
    before = snapshot(tmp_path)
    rc = main(["select", str(pool_file), "--budget", "12", "--out", str(target), "--embedder", f"npy:{emb}",
               "--scorer", "column:instruction", "--config", str(config), "--overwrite", "-q"])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err
    assert "is an input of this run" in err and len(err.splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_out_equal_to_run_dir_and_out_a_directory(pool_file, tmp_path, capsys):
    same = tmp_path / "both"
    assert select(pool_file, same, "--run-dir", str(same)) == 2
    assert "the same path" in capsys.readouterr().err and not same.exists()
    folder = tmp_path / "adir"
    folder.mkdir()
    assert select(pool_file, folder) == 2
    err = capsys.readouterr().err
    assert "is an existing folder" in err and "internal error" not in err
    assert list(folder.iterdir()) == []


def iterate(pool, out, *extra):
    return main(["iterate", str(pool), "--budget", "10", "--rounds", "1", "--model", "unused-model",
                 "--out", str(out), *HASHING, *extra])  # fmt: skip


def test_select_refuses_an_iterate_run_dir(pool_file, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    assert iterate(pool_file, out) == 0, capsys.readouterr().err
    run = tmp_path / "s.jsonl.kmq-run"
    before = snapshot(tmp_path)
    assert (run / "rounds" / "r01" / "DONE-select").is_file()
    assert select(pool_file, out) == 2
    err = capsys.readouterr().err
    assert "holds a `kmq iterate` run" in err and snapshot(tmp_path) == before
    # and the other way round
    out2 = tmp_path / "t.jsonl"
    assert select(pool_file, out2) == 0
    assert iterate(pool_file, out2) == 2
    assert "holds a `kmq select` run" in capsys.readouterr().err
    # --overwrite replaces the other command's files (only those kmq made)
    (run / "my-notes.txt").write_text("keep me\n")
    assert select(pool_file, out, "--overwrite") == 0
    assert not (run / "rounds").exists() and not (run / "prepare").exists()
    assert (run / "my-notes.txt").read_text() == "keep me\n"
    assert json.loads((run / "kmq-run.json").read_text())["command"] == "select"


def test_iterate_never_deletes_folders_it_did_not_make(pool_file, tmp_path, capsys):
    folder = tmp_path / "exp"
    (folder / "prepare").mkdir(parents=True)
    (folder / "prepare" / "important.txt").write_text("mine\n")
    assert iterate(pool_file, tmp_path / "s.jsonl", "--run-dir", str(folder)) == 2
    assert "is not a kmq run directory" in capsys.readouterr().err
    # even with --overwrite, a folder at a step's path that kmq did not make is an error, not deleted
    assert iterate(pool_file, tmp_path / "s.jsonl", "--run-dir", str(folder), "--overwrite") == 2
    err = capsys.readouterr().err
    assert "was not made by kmq" in err and str(folder / "prepare") in err
    assert (folder / "prepare" / "important.txt").read_text() == "mine\n"
    # inside a kmq iterate run directory too: a hand-made rounds/r01/select is left alone
    run = tmp_path / "run2"
    assert iterate(pool_file, tmp_path / "u.jsonl", "--run-dir", str(run)) == 0
    (run / "rounds" / "r01" / "DONE-select").unlink()
    (run / "rounds" / "r01" / "select" / ".kmq-step").unlink()
    (run / "rounds" / "r01" / "select" / "by-hand.txt").write_text("x\n")
    assert iterate(pool_file, tmp_path / "u.jsonl", "--run-dir", str(run)) == 2
    assert "was not made by kmq" in capsys.readouterr().err
    assert (run / "rounds" / "r01" / "select" / "by-hand.txt").is_file()


def test_kmq_iterate_resume_still_cleans_its_own_half_done_step(pool_file, tmp_path, capsys):
    run = tmp_path / "run"
    assert iterate(pool_file, tmp_path / "u.jsonl", "--run-dir", str(run)) == 0
    first = (tmp_path / "u.jsonl").read_bytes()
    (run / "rounds" / "r01" / "DONE-select").unlink()  # as if killed after the rename, before the marker
    assert iterate(pool_file, tmp_path / "u.jsonl", "--run-dir", str(run)) == 0, capsys.readouterr().err
    assert (tmp_path / "u.jsonl").read_bytes() == first


# ------------------------------------------------------------------------------------- failures while writing


def test_failure_while_publishing_leaves_the_previous_outputs(pool_file, tmp_path, capsys):
    out = tmp_path / "s.jsonl"
    run = tmp_path / "blocked" / "run"
    assert select(pool_file, out, "--run-dir", str(run)) == 0
    before = snapshot(tmp_path)
    # the run directory's parent becomes a file: the run directory cannot be written
    import shutil

    shutil.rmtree(tmp_path / "blocked")
    (tmp_path / "blocked").write_text("a file now\n")
    before = {k: v for k, v in before.items() if not k.startswith("blocked/")}
    before["blocked"] = hashlib.sha256(b"a file now\n").hexdigest()
    assert select(pool_file, out, "--run-dir", str(run), "--seed", "5", "--overwrite") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error" not in err and "blocked" in err
    assert snapshot(tmp_path) == before  # the subset was not replaced: no new subset beside an old manifest


def _mount(kind: str, target: Path) -> bool:
    target.mkdir()
    opts = "size=256k" if kind == "full" else "size=8m"
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)], capture_output=True).returncode
    return ok == 0


@pytest.fixture
def small_fs(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount; skipped elsewhere)."""
    target = tmp_path / "small"
    if os.geteuid() != 0 or not _mount("full", target):
        pytest.skip("needs root to mount a small tmpfs")
    yield target
    subprocess.run(["umount", "-l", str(target)], check=False)


def test_disk_full_is_one_line_and_leaves_nothing(datakit, tmp_path, small_fs, capsys):
    pool = datakit / "dolly_3k" / "dolly_3k.jsonl"
    out = small_fs / "s.jsonl"
    rc = main(["select", str(pool), "--budget", "2000", "--out", str(out), *HASHING])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "No space left on device" in err and str(small_fs) in err and err.count("\n") == 1
    assert "internal error" not in err
    assert list(small_fs.iterdir()) == []  # no subset, no half-written staging folder


def test_read_only_folder_is_one_line(pool_file, tmp_path, small_fs, capsys):
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    rc = select(pool_file, small_fs / "s.jsonl")
    err = capsys.readouterr().err
    assert rc == 1 and "Read-only file system" in err and err.count("\n") == 1 and "internal error" not in err


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_score_out_equal_to_the_pool_is_refused(pool_file, tmp_path, capsys, kind):
    pool = pool_file
    if kind == "parquet":
        pool = tmp_path / "pool.parquet"
        pq.write_table(pa.Table.from_pylist([json.loads(x) for x in pool_file.read_text().splitlines()]), pool)
    before = pool.read_bytes()
    rc = main(["score", str(pool), "--out", str(pool), *HASHING, "--overwrite"])
    err = capsys.readouterr().err
    assert rc == 2 and "is an input of this run" in err and len(err.splitlines()) == 1
    assert pool.read_bytes() == before


def test_score_replaces_its_own_scores_but_not_other_files(pool_file, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["score", str(pool_file), "--out", str(out), *HASHING]) == 0
    assert main(["score", str(pool_file), "--out", str(out), "--embedder", "hashing:64", "-q"]) == 0  # a rerun
    other = tmp_path / "table.csv"
    other.write_text("name,value\na,1\n")
    assert main(["score", str(pool_file), "--out", str(other), *HASHING]) == 2
    assert "kmq did not write it" in capsys.readouterr().err and other.read_text() == "name,value\na,1\n"
    assert main(["score", str(pool_file), "--out", str(tmp_path / "s.txt"), *HASHING]) == 2
    assert "a scores file ends in .jsonl, .csv, .parquet" in capsys.readouterr().err


def test_a_failed_publish_leaves_no_new_folder(datakit, tmp_path, capsys):
    rows = [json.loads(line) for line in (datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:60]]
    for row in rows:
        row["x"] = 1.0
    rows[3]["x"] = float("inf")  # fine in Parquet, not JSON: the subset cannot be written as .json
    pool = tmp_path / "pool.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pool)
    out = tmp_path / "new" / "s.json"
    rc = main(["select", str(pool), "--budget", "60", "--out", str(out), *HASHING])
    err = capsys.readouterr().err
    assert rc == 2 and "inf" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "new").exists()
