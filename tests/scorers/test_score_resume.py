"""Scoring resumes after a SIGKILL: ``kmq select`` killed after k score blocks requests only the rest.

The model and judge scorers share one cached block loop (:func:`kmq.cache.cached_map` through
``kmq.scorers._blocks.cached_rows``: every finished block of per-example scores is a shard folder renamed
into place). The fastest real scorer on it is the LLM judge against a loopback OpenAI-compatible server
(no model to load; blocks of 64 requests), so it exercises the loop here; the perplexity, IFD, reward and
Deita scorers go through the same code. The kills are deterministic (:mod:`killpoints`): the child is
SIGKILLed right before its (k+1)-th shard rename under the cache folder.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

import killpoints
from chat_server import ChatServer, rate_by_hash

BLOCK = 64  # JudgeScorer.block_size (at least 4 x the concurrency of 8)
SHARD = r"^scores/[0-9a-f]+/shard-[0-9a-f]+$"
PRELOAD = ["openai", "pandas", "pyarrow.parquet", "yaml", "tqdm", "kmq.pipeline", "kmq.publish", "kmq.scorers.judge"]


@pytest.fixture(scope="module")
def select(datakit, tmp_path_factory):
    """``select(folder, **killpoints)``: top-quality ``kmq select`` of 150 records by the judge.

    Returns the run and the number of requests the server answered during it.
    """
    pytest.importorskip("openai")
    pool = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    pool.write_text("".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines(keepends=True)[:150]))
    with ChatServer(rate_by_hash) as server, killpoints.Forkserver(PRELOAD) as forks:

        def run(folder, **kw):
            folder.mkdir(exist_ok=True)
            args = ["select", str(pool), "--budget", "20", "--method", "top-quality", "--scorer",
                    f"judge:m@{server.url}", "--out", "s.jsonl", "-q"]  # fmt: skip
            env = {**os.environ, "KMQ_CACHE_DIR": str(folder / "cache")}
            calls = server.calls
            res = forks.run(args, root=folder / "cache", cwd=folder, env=env, **kw)
            return res, server.calls - calls

        yield run


@pytest.fixture(scope="module")
def reference(select, tmp_path_factory):
    folder = tmp_path_factory.mktemp("uninterrupted")
    res, requests = select(folder)
    assert res.returncode == 0, res.stderr
    assert requests == 150
    return folder


def _score_stats(folder) -> dict:
    return json.loads((folder / "s.jsonl.kmq-run" / "manifest.json").read_text())["stages"]["score"]


def _cached_rows(cache) -> dict[bytes, bytes]:
    """Every cached (request key, rating) row of every shard, as bytes."""
    rows = {}
    for shard in cache.glob("scores/*/shard-*"):
        keys, values = np.load(shard / "keys.npy"), np.load(shard / "vectors.npy")
        rows.update(zip((k.tobytes() for k in keys), (v.tobytes() for v in values), strict=True))
    return rows


@pytest.mark.parametrize("shards", [1, 2])
def test_select_killed_after_k_score_blocks_requests_only_the_rest(select, reference, tmp_path, shards):
    killed, requests = select(tmp_path, match=SHARD, kill_at=shards + 1)
    assert killed.killed, killed.stderr
    assert len(list((tmp_path / "cache").glob("scores/*/shard-*"))) == shards  # the finished blocks survived
    assert requests > shards * BLOCK  # the killed block was requested, and is lost
    resumed, requests = select(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    st = _score_stats(tmp_path)
    # (the stage's "from_cache" is whether the whole quality array came from the cache: False here)
    assert st["requested"] == 150 - shards * BLOCK and st["examples"] == 150 and st["from_cache"] is False
    assert requests == 150 - shards * BLOCK  # nothing cached was asked again
    assert _score_stats(reference)["requested"] == 150
    assert (tmp_path / "s.jsonl").read_bytes() == (reference / "s.jsonl").read_bytes()
    assert _cached_rows(tmp_path / "cache") == _cached_rows(reference / "cache")
    t = pq.read_table(tmp_path / "s.jsonl.kmq-run" / "selection.parquet")
    assert t.equals(pq.read_table(reference / "s.jsonl.kmq-run" / "selection.parquet"))
