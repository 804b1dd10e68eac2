"""``kmq select --config RUN/config.yaml`` reruns a run (README), from any working directory (issue 11)."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from kmq.cli.main import main


@pytest.fixture
def pool_file(datakit, tmp_path):
    path = tmp_path / "data" / "pool.jsonl"
    path.parent.mkdir()
    path.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:100]) + "\n")
    return path


def test_rerun_from_the_run_config_in_another_directory(pool_file, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    rel_pool = os.path.relpath(pool_file, work)
    assert main(["select", rel_pool, "--budget", "15", "--out", "out/s.jsonl", "--embedder", "hashing",
                 "--seed", "4", "-q"]) == 0  # fmt: skip
    run = work / "out" / "s.jsonl.kmq-run"
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["pool"] == str(pool_file) and cfg["out"] == str(work / "out" / "s.jsonl")  # absolute
    assert cfg["run_dir"] == str(run) and cfg["budget"] == 15  # an int, not '15'
    first = (work / "out" / "s.jsonl").read_bytes()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert main(["select", "--config", str(run / "config.yaml"), "-q"]) == 0, capsys.readouterr().err
    assert (work / "out" / "s.jsonl").read_bytes() == first  # the same files, the same selection
    assert list(elsewhere.iterdir()) == []
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["input"]["source"] == str(pool_file) and manifest["seed"] == 4
    # flags override the config; a new --out gets its own run directory
    assert main(["select", "--config", str(run / "config.yaml"), "--budget", "20", "--out", "t.jsonl", "-q"]) == 0
    assert len((elsewhere / "t.jsonl").read_text().splitlines()) == 20
    assert (elsewhere / "t.jsonl.kmq-run" / "manifest.json").is_file()


@pytest.mark.parametrize("command", ["select", "iterate"])
def test_missing_pool_budget_or_out_say_where_to_give_them(tmp_path, capsys, command):
    config = tmp_path / "c.yaml"
    config.write_text("budget: 10\n" + ("model: m\n" if command == "iterate" else ""))
    assert main([command, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"kmq {command} needs POOL, --out SUBSET" in err and "in the --config file" in err


def test_subset_is_in_pool_order_or_a_seeded_shuffle(pool_file, tmp_path, capsys):
    lines = pool_file.read_bytes().splitlines()
    base = ["select", str(pool_file), "--budget", "30", "--embedder", "hashing", "-q"]
    assert main([*base, "--out", str(tmp_path / "a.jsonl")]) == 0
    got = (tmp_path / "a.jsonl").read_bytes().splitlines()
    assert got == [line for line in lines if line in set(got)]  # the pool's order
    for name in ("b.jsonl", "c.jsonl"):
        assert main([*base, "--out", str(tmp_path / name), "--shuffle"]) == 0
    b, c = ((tmp_path / n).read_bytes() for n in ("b.jsonl", "c.jsonl"))
    assert b == c and b.splitlines() != got and sorted(b.splitlines()) == sorted(got)  # seeded, same records
    manifest = json.loads((tmp_path / "b.jsonl.kmq-run" / "manifest.json").read_text())
    assert manifest["outputs"]["subset"]["order"] == "seeded shuffle"
