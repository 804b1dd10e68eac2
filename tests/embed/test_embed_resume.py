"""Embedding resumes after a SIGKILL: ``kmq select`` killed after k vector shards encodes only the rest.

The resume logic is the embedder base class's cached block loop (:func:`kmq.cache.cached_map`: every
finished block is a shard folder renamed into place), so the hashing embedder with blocks of 16 texts
exercises it in a second. The kills are deterministic (:mod:`killpoints`): the child is SIGKILLed right
before its (k+1)-th shard rename under the cache folder. The real MiniLM encoder goes through the same
loop; ``tests/loop/test_loop_e2e.py`` keeps the one slow kill-and-resume case with real models.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

import killpoints

BLOCK = 16
SMALL_BLOCKS = f"from kmq.embed.hashing import HashingEmbedder\nHashingEmbedder.block_size = {BLOCK}\n"
SHARD = r"^vectors/[0-9a-f]+/shard-[0-9a-f]+$"
PRELOAD = ["pandas", "faiss", "pyarrow.parquet", "yaml", "tqdm", "kmq.pipeline", "kmq.publish", "kmq.embed.hashing",
           "kmq.cluster.kmeans", "kmq.scorers.heuristic"]  # fmt: skip


@pytest.fixture(scope="module")
def select(datakit, tmp_path_factory):
    """``select(folder, **killpoints)``: ``kmq select`` of 150 real records into ``folder`` (its own cache)."""
    pool = tmp_path_factory.mktemp("pool") / "pool.jsonl"
    pool.write_text("".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines(keepends=True)[:150]))
    with killpoints.Forkserver(PRELOAD) as forks:

        def run(folder, **kw):
            folder.mkdir(exist_ok=True)
            args = ["select", str(pool), "--budget", "20", "--embedder", "hashing", "--out", "s.jsonl", "-q"]
            env = {**os.environ, "KMQ_CACHE_DIR": str(folder / "cache")}
            return forks.run(args, root=folder / "cache", cwd=folder, env=env, setup=SMALL_BLOCKS, **kw)

        yield run


@pytest.fixture(scope="module")
def reference(select, tmp_path_factory):
    """The uninterrupted run's folder and the number of vector shards it wrote."""
    folder = tmp_path_factory.mktemp("uninterrupted")
    res = select(folder)
    assert res.returncode == 0, res.stderr
    return folder, sum(1 for c in res.changes if c.startswith("vectors/"))


def _embed_stats(folder) -> dict:
    return json.loads((folder / "s.jsonl.kmq-run" / "manifest.json").read_text())["stages"]["embed"]["conversation"]


def _cached_rows(cache) -> dict[bytes, bytes]:
    """Every cached (key, vector) row of every shard, as bytes."""
    rows = {}
    for shard in cache.glob("vectors/*/shard-*"):
        keys, vectors = np.load(shard / "keys.npy"), np.load(shard / "vectors.npy")
        rows.update(zip((k.tobytes() for k in keys), (v.tobytes() for v in vectors), strict=True))
    return rows


@pytest.mark.parametrize("shards", [1, 6])
def test_select_killed_after_k_shards_encodes_only_the_rest(select, reference, tmp_path, shards):
    reference, written = reference
    want = _embed_stats(reference)
    assert want["cached"] == 0 and want["encoded"] > shards * BLOCK, "the pool must span more blocks"
    killed = select(tmp_path, match=SHARD, kill_at=shards + 1)
    assert killed.killed, killed.stderr
    assert len(list((tmp_path / "cache").glob("vectors/*/shard-*"))) == shards  # the finished blocks survived
    assert not (tmp_path / "s.jsonl").exists()
    resumed = select(tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    got = _embed_stats(tmp_path)
    assert got["cached"] == shards * BLOCK and got["encoded"] == want["encoded"] - shards * BLOCK
    assert got["unique"] == want["unique"] and got["empty"] == want["empty"]
    # what the resumed run embedded: the rest of the conversations, then the scorer's prompts and responses
    assert sum(1 for c in resumed.changes if c.startswith("vectors/")) == written - shards
    assert (tmp_path / "s.jsonl").read_bytes() == (reference / "s.jsonl").read_bytes()
    got_rows, want_rows = _cached_rows(tmp_path / "cache"), _cached_rows(reference / "cache")
    assert got_rows == want_rows  # byte-identical vectors, whichever run encoded them
    t = pq.read_table(tmp_path / "s.jsonl.kmq-run" / "selection.parquet")
    assert t.equals(pq.read_table(reference / "s.jsonl.kmq-run" / "selection.parquet"))
