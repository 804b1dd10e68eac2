"""iterate's step digests come from the stages' identities: a model folder changed in place is not reused."""

from __future__ import annotations

import shutil

import pytest

from kmq.cli.main import main


def test_scorer_model_changed_in_place_invalidates_prepare(pool_file, tiny_llama, tmp_path, capsys):
    model = tmp_path / "scorer"
    shutil.copytree(tiny_llama, model)
    args = ["iterate", str(pool_file), "--budget", "12", "--rounds", "1", "--model", "unused", "--embedder",
            "hashing", "--clusters", "3", "--scorer", f"perplexity:{model}",
            "--out", str(tmp_path / "s.jsonl"), "-q"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    assert main(args) == 0  # unchanged: everything is reused
    config = model / "config.json"
    config.write_text(config.read_text() + "\n")  # the same folder, other files
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "prepare was prepared with stage_keys.quality=" in err and "--restart-from prepare" in err


@pytest.mark.parametrize("which", ["prepare"])
def test_old_run_folders_without_stage_keys_still_resume(pool_file, tmp_path, capsys, which):
    import json

    args = ["iterate", str(pool_file), "--budget", "12", "--rounds", "1", "--model", "unused", "--embedder",
            "hashing", "--clusters", "3", "--out", str(tmp_path / "s.jsonl"), "-q"]  # fmt: skip
    assert main(args) == 0
    run = tmp_path / "s.jsonl.kmq-run"
    marker = run / "DONE-prepare"
    done = json.loads(marker.read_text())
    done["settings"].pop("stage_keys")  # as kmq before stage keys (and deduplication) wrote it
    done["settings"].pop("dedup")
    from kmq.cache import digest

    done["digest"] = digest("kmq-iterate-step-v1", "prepare", done["settings"], {})
    marker.write_text(json.dumps(done))
    select = run / "rounds" / "r01" / "DONE-select"  # and the step that read it recorded that digest
    sel = json.loads(select.read_text())
    sel["inputs"]["prepare"] = done["digest"]
    sel["digest"] = digest("kmq-iterate-step-v1", "r01-select", sel["settings"], sel["inputs"])
    select.write_text(json.dumps(sel))
    first = (tmp_path / "s.jsonl").read_bytes()
    assert main(args) == 0, capsys.readouterr().err
    assert (tmp_path / "s.jsonl").read_bytes() == first
