"""SIGKILL at seeded points of publishing: the visible outputs are always one complete, consistent run.

A small wrapper runs the real command line in a subprocess and SIGKILLs it at the N-th file-system
change (``open`` for writing, ``os.replace``, ``os.rename``, ``os.unlink``) under the output folder: every
write of a staged file, the commit journal, each rename of the commit and the journal's removal. Not timing-dependent:
the same N always stops at the same point. After each kill the outputs must be either the previous
run's, byte for byte, or (a kill inside the commit's renames, which leaves the journal) become the new
run's once :func:`kmq.publish.recover` has run, as the next kmq command on that run directory does first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import killpoints
from kmq.publish import JOURNAL, recover


@pytest.fixture(scope="module")
def pool_file(datakit, tmp_path_factory):
    path = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    path.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:150]) + "\n")
    return path


def _run(wrapper: Path, root: Path, n: int, args: list[str], cache: Path) -> killpoints.KmqRun:
    env = {"KMQ_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    ops = ("open", "replace", "rename", "unlink")
    return killpoints.run_kmq(wrapper, args, root=root, kill_at=n, ops=ops, env=env,
                              count_file=root.parent / "count.txt")  # fmt: skip


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _visible(root: Path) -> dict[str, bytes]:
    """The files a user sees (hidden staging folders and the journal excluded)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    }


def _check_select_consistent(out: Path, run: Path) -> int:
    """The subset, manifest, marker, selection and config agree; returns the run's seed."""
    manifest = json.loads((run / "manifest.json").read_text())
    marker = json.loads((run / "kmq-run.json").read_text())
    assert manifest["outputs"]["subset"]["sha256"] == _sha(out) == marker["outputs"]["subset"]["sha256"]
    ids = [json.loads(line)["id"] for line in out.read_text().splitlines()]
    assert sorted(pq.read_table(run / "selection.parquet").column("id").to_pylist()) == sorted(ids)
    assert f"seed: {manifest['seed']}\n" in (run / "config.yaml").read_text()
    return int(manifest["seed"])


@pytest.mark.parametrize("command", ["select", "score"])
def test_kill_during_publish_never_shows_a_mismatched_set(pool_file, tmp_path, command):
    wrapper = killpoints.wrapper(tmp_path)
    cache = tmp_path / "cache"
    if command == "select":
        name = "s.jsonl"
        args = lambda root, seed: ["select", str(pool_file), "--budget", "20", "--out", str(root / name),  # noqa: E731
                                   "--embedder", "hashing", "--seed", str(seed), "-q"]  # fmt: skip
    else:
        name = "scores.jsonl"
        args = lambda root, seed: ["score", str(pool_file), "--out", str(root / name), "--embedder",  # noqa: E731
                                   f"hashing:{8 + seed}", "-q"]  # fmt: skip

    def check(root: Path) -> int:
        if command == "select":
            return _check_select_consistent(root / name, root / f"{name}.kmq-run")
        rows = [json.loads(line) for line in (root / name).read_text().splitlines()]
        assert len(rows) == 150 and all(set(r) == {"id", "score"} for r in rows)
        return -1

    # the previous complete state (seed 0) and the new one (seed 1), each from an uninterrupted run
    states = {}
    for seed in (0, 1):
        root = tmp_path / f"ref{seed}" / "o"
        root.mkdir(parents=True)
        assert _run(wrapper, root, 0, args(root, seed), cache).returncode == 0
        states[seed] = _visible(root)
    total = int((tmp_path / "ref1" / "count.txt").read_text())
    assert total >= (3 if command == "select" else 2), "publishing should stage, commit and clean up"
    points = sorted(set(np.random.default_rng(9).choice(np.arange(1, total + 1), size=min(4, total), replace=False)))
    points = sorted({*points, total})  # always include the very last change (the journal's removal)
    seen = set()
    for n in points:
        base = tmp_path / f"kill{n}"
        shutil.copytree(tmp_path / "ref0", base)
        root = base / "o"
        # the same paths as the reference runs, so manifests compare byte for byte apart from times
        proc = _run(wrapper, root, int(n), args(root, 1), cache)
        assert proc.returncode == -9, (n, proc.stderr)
        run = root / f"{name}.kmq-run"
        journal = (run if command == "select" else root) / JOURNAL
        if journal.exists():  # killed among the commit's renames: the next run finishes it
            recover(journal.parent)
            seen.add("recovered")
        got = _visible(root)
        if got == states[0]:  # the previous outputs, byte for byte
            seen.add("old")
        else:
            new = _strip(states[1], tmp_path / "ref1" / "o")
            assert _strip(got, root) == new, f"kill at change {n}/{total}: a mixed set of outputs"
            seen.add("new")
        check(root)
        # the next run cleans whatever the kill left and succeeds
        assert _run(wrapper, root, 0, args(root, 1), cache).returncode == 0
        assert not [p for p in root.rglob(".kmq-stage-*")] and not journal.exists()
        check(root)
    # a scores file is one rename: a kill leaves the old file or (after the rename) the new one
    assert "old" in seen and ("new" in seen or command == "score")


def _strip(files: dict[str, bytes], root: Path) -> dict[str, bytes]:
    """Files with run-specific text (absolute paths, times) normalised so two runs of one command compare equal."""
    out = {}
    for rel, data in files.items():
        text = data.replace(str(root.resolve()).encode(), b"<root>").replace(str(root).encode(), b"<root>")
        if rel.endswith(".json"):
            obj = json.loads(text)
            _drop_times(obj)
            text = json.dumps(obj, sort_keys=True).encode()
        out[rel] = text
    return out


def _drop_times(obj) -> None:
    if isinstance(obj, dict):
        for key in list(obj):
            if key in ("created_utc", "updated_utc", "seconds", "argv", "source", "stages"):
                obj.pop(key)
            else:
                _drop_times(obj[key])
    elif isinstance(obj, list):
        for v in obj:
            _drop_times(v)
