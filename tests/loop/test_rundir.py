"""Completion markers, resume, leftovers of killed steps, the settings check and --restart-from."""

import json

import pytest

from kmq.errors import InvalidParameterError
from kmq.loop.rundir import RunDir, SettingsChangedError


def writer(calls, text="x"):
    def compute(tmp):
        calls.append(tmp.name)
        (tmp / "out.txt").write_text(text)
        return {"n": len(calls)}

    return compute


def test_finished_step_is_reused_and_marker_holds_digest_settings_and_timing(tmp_path):
    rd, calls = RunDir(tmp_path), []
    first = rd.ensure("r01-train", {"lr": 2e-5}, {"r01-select": "abc"}, writer(calls))
    again = rd.ensure("r01-train", {"lr": 2e-5}, {"r01-select": "abc"}, writer(calls))
    assert first.computed and not again.computed and len(calls) == 1 and first.digest == again.digest
    assert (tmp_path / "rounds/r01/train/out.txt").read_text() == "x"
    marker = json.loads((tmp_path / "rounds/r01/DONE-train").read_text())
    assert marker["settings"] == {"lr": 2e-5} and marker["inputs"] == {"r01-select": "abc"}
    assert marker["stats"] == {"n": 1} and marker["seconds"] >= 0 and marker["digest"] == first.digest


def test_changed_setting_names_setting_step_and_fix(tmp_path):
    rd = RunDir(tmp_path)
    rd.ensure("r01-train", {"lr": 2e-05, "epochs": 3}, {}, writer([]))
    with pytest.raises(SettingsChangedError) as err:
        rd.ensure("r01-train", {"lr": 1e-05, "epochs": 3}, {}, writer([]))
    assert str(err.value) == (
        "rounds/r01 was trained with lr=2e-05; now lr=1e-05. Use a new --run-dir or pass --restart-from r01-train."
    )
    rd.ensure("prepare", {"embed": {"embedder": "hashing"}}, {}, writer([]))
    with pytest.raises(SettingsChangedError, match="prepare was prepared with embed.embedder=hashing; now "
                       "embed.embedder=minilm"):  # fmt: skip
        rd.ensure("prepare", {"embed": {"embedder": "minilm"}}, {}, writer([]))
    with pytest.raises(SettingsChangedError, match=r"from other inputs than now \(r01-select changed\)"):
        rd.ensure("r01-train", {"lr": 2e-05, "epochs": 3}, {"r01-select": "new"}, writer([]))


def test_leftovers_of_a_killed_step_are_removed_and_recomputed(tmp_path):
    rd, calls = RunDir(tmp_path), []
    folder = tmp_path / "rounds/r02/generate"
    half = folder.parent / ".generate.tmp-1234abcd"  # killed while writing
    half.mkdir(parents=True)
    (half / "partial").write_text("?")
    res = rd.ensure("r02-generate", {}, {}, writer(calls, "a"))
    assert res.computed and not half.exists() and (folder / "out.txt").read_text() == "a"
    (folder.parent / "DONE-generate").unlink()  # killed after the rename, before the marker
    (folder / "stale").write_text("old")
    res = rd.ensure("r02-generate", {}, {}, writer(calls, "b"))
    assert res.computed and not (folder / "stale").exists() and (folder / "out.txt").read_text() == "b"
    (folder.parent / "DONE-generate").unlink()  # killed while writing the marker itself
    half_marker = folder.parent / ".DONE-generate.tmp-5678ef01"
    half_marker.write_text('{"step": ')
    res = rd.ensure("r02-generate", {}, {}, writer(calls, "c"))
    assert res.computed and not half_marker.exists() and (folder.parent / "DONE-generate").is_file()


def test_failed_compute_leaves_no_marker_and_no_folder(tmp_path):
    rd = RunDir(tmp_path)

    def boom(tmp):
        (tmp / "x").write_text("1")
        raise RuntimeError("trainer crashed")

    with pytest.raises(RuntimeError):
        rd.ensure("r01-train", {}, {}, boom)
    assert not (tmp_path / "rounds/r01/DONE-train").exists()
    assert list((tmp_path / "rounds/r01").iterdir()) == []


def test_restart_from_deletes_that_step_and_every_later_one(tmp_path):
    rd = RunDir(tmp_path)
    sids = ["prepare", "r01-select", "r01-train", "r01-generate", "r01-judge", "r01-reweight", "r02-select"]
    for sid in sids:
        rd.ensure(sid, {}, {}, writer([]))
    assert rd.finished() == sids
    assert rd.restart_from("r01-judge") == ["r01-judge", "r01-reweight", "r02-select"]
    assert rd.finished() == sids[:4] and not (tmp_path / "rounds/r01/judge").exists()
    assert (tmp_path / "rounds/r01/train/out.txt").exists()
    with pytest.raises(InvalidParameterError, match="--restart-from must be 'prepare' or rNN-STEP"):
        rd.restart_from("round1-train")


def test_lock_refuses_a_live_owner_and_takes_over_a_killed_ones(tmp_path):
    import os
    import subprocess
    import sys

    from kmq.loop.rundir import RunDirBusyError

    rd = RunDir(tmp_path)
    (tmp_path / ".lock").write_text(str(os.getppid()))  # a live process that is not us
    with pytest.raises(RunDirBusyError, match=f"in use by another kmq iterate \\(pid {os.getppid()}\\)"):
        with rd.lock():
            pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(dead.stdout.strip())  # its process has exited (as after a SIGKILL)
    with rd.lock():
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()
