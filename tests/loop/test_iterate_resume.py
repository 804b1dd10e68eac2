"""``kmq iterate`` SIGKILLed at every step boundary, then resumed: the result equals an uninterrupted run.

The resume logic lives in :class:`kmq.loop.rundir.RunDir` (step folders renamed into place, then their
``DONE-<step>`` marker), so fast components exercise it: the hashing embedder, ``--judge relevance``, a
command trainer (a tiny script that copies the model folder) and an OpenAI-compatible loopback server as
the generator. The kills are deterministic (:mod:`killpoints`): each run of a chain is SIGKILLed right
before one commit, in turn before every step folder's rename (the step computed, not in place) and before
every marker (the folder in place, unmarked), and once inside publishing. Every resumed run must redo
exactly the steps that have no marker, and the last run must end with the uninterrupted run's
selection.parquet and subset bytes. The real TRL trainer is killed in the one slow case of
``test_loop_e2e.py``.
"""

from __future__ import annotations

import json
import os
import re
import sys

import pyarrow.parquet as pq
import pytest

import killpoints
from chat_server import ChatServer, echo_words

STEPS = ["prepare"] + [f"rounds/r01/{s}" for s in ("select", "train", "generate", "judge", "reweight")]
STEPS += ["rounds/r02/select"]
PRELOAD = ["openai", "pandas", "faiss", "pyarrow.parquet", "yaml", "tqdm", "kmq.pipeline", "kmq.publish",
           "kmq.loop.runner", "kmq.loop.train", "kmq.loop.generate", "kmq.loop.judge", "kmq.scorers.relevance",
           "kmq.embed.hashing", "kmq.cluster.kmeans"]  # fmt: skip
TRAINER = """
import json, shutil, sys
base, out, data, rnd = sys.argv[1:5]
shutil.copytree(base, out)
json.dump({"round": int(rnd), "examples": sum(1 for _ in open(data))}, open(out + "/kmq_round.json", "w"))
"""


@pytest.fixture(scope="module")
def iterate(pool_file, tmp_path_factory):
    """``iterate(out, **killpoints)`` runs the command in a forked child (generator endpoint, trainer, model ready)."""
    pytest.importorskip("openai")
    root = tmp_path_factory.mktemp("iterate-resume")
    model = root / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "tiny"}\n')
    (root / "train.py").write_text(TRAINER)
    with ChatServer(echo_words) as server, killpoints.Forkserver(PRELOAD) as forks:

        def args(out):
            return ["iterate", str(pool_file), "--budget", "24", "--rounds", "2", "--seed", "3", "--embedder",
                    "hashing", "--clusters", "6", "--judge", "relevance", "--model", str(model), "--out", str(out),
                    "--trainer", "command", "--train-command",
                    f"{sys.executable} {root / 'train.py'} {{base_model}} {{output_dir}} {{data}} {{round}}",
                    "--generator", f"openai:tiny@{server.url}", "--max-new-tokens", "8", "-q"]  # fmt: skip

        def run(out, **kw):
            cache = out.parent / "cache"
            return forks.run(args(out), root=out.parent / f"{out.name}.kmq-run", cwd=out.parent,
                             env={**os.environ, "KMQ_CACHE_DIR": str(cache)}, **kw)  # fmt: skip

        yield run


_STEP = re.compile(
    r"^(?:(rounds/r\d+)/)?(?:\.|DONE-)?(prepare|select|train|generate|judge|reweight)(?:\.tmp-\*)?(?:/.*)?$"
)


def _changes(res: killpoints.KmqRun) -> list[str]:
    """The run's changes with temporary names normalised, without the run-directory marker (written once)."""
    return [c for c in (re.sub(r"\.tmp-[0-9a-f]+", ".tmp-*", c) for c in res.changes) if c != "kmq-run.json"]


def _step(change: str) -> str | None:
    """The step a change belongs to (``rounds/r01/train``), None for publishing."""
    m = _STEP.match(change)
    return None if m is None else "/".join(p for p in m.groups() if p)


def _marker(step: str) -> str:
    head, _, name = step.rpartition("/")
    return f"{head}/DONE-{name}" if head else f"DONE-{name}"


def _resume_point(trace: list[str], run) -> int:
    """Where a resumed run must start in the uninterrupted run's changes: the first step without a marker."""
    todo = next((s for s in STEPS if not (run / _marker(s)).is_file()), None)
    return next(i for i, c in enumerate(trace) if _step(c) == todo)


def test_sigkill_at_every_step_boundary_then_resume_equals_uninterrupted(iterate, tmp_path):
    (tmp_path / "ref").mkdir()
    ref = iterate(tmp_path / "ref" / "s.jsonl")
    assert ref.returncode == 0, ref.stderr[-3000:]
    trace = _changes(ref)
    boundaries = [b for step in STEPS for b in (step, _marker(step))]
    assert [c for c in trace if _step(c) and "/." not in c and not c.startswith(".")] == boundaries
    (tmp_path / "kill").mkdir()
    out = tmp_path / "kill" / "s.jsonl"
    run = tmp_path / "kill" / "s.jsonl.kmq-run"
    for b in [*boundaries, "selection.parquet"]:  # the last one: inside the commit of the outputs
        start = _resume_point(trace, run)
        res = iterate(out, match=rf"^{re.escape(b)}$", kill_at=1)
        assert res.killed, (b, res.stderr[-3000:])
        # the run redid exactly the steps without a marker, with the uninterrupted run's changes, up to the kill
        assert _changes(res) == trace[start : trace.index(b) + 1], b
        if b in STEPS:  # computed in a hidden folder that the next run must clear
            assert not (run / b).exists() and not (run / _marker(b)).exists()
            head, _, name = b.rpartition("/")
            assert list((run / head).glob(f".{name}.tmp-*"))
        elif b != "selection.parquet":  # the folder in place without its marker: the next run redoes the step
            step = b.replace("DONE-", "")
            assert (run / step).is_dir() and not (run / b).exists()
    done = iterate(out)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not [c for c in _changes(done) if _step(c)]  # every step was reused, only the outputs were written
    want = pq.read_table(tmp_path / "ref" / "s.jsonl.kmq-run" / "selection.parquet").to_pydict()
    assert pq.read_table(run / "selection.parquet").to_pydict() == want
    assert out.read_bytes() == (tmp_path / "ref" / "s.jsonl").read_bytes()
    assert not list(run.rglob(".*tmp-*")) and not (run / ".kmq-commit.json").exists()  # no leftovers
    info = json.loads((run / "rounds/r01/train/model/kmq_round.json").read_text())
    assert info == {"round": 1, "examples": 12}
