"""The cache: checksummed entries (a damaged one is a miss, recomputed, warned about once and replaced), an
unwritable cache folder (the run goes on uncached with one warning), and the one cached block-map that serves
embedders and scorers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmq.cache import ArtifactStore, VectorStore, array_digest, cached_map, text_keys, unique_keys


@pytest.fixture(scope="module")
def reference(datakit, tmp_path_factory):
    """One `kmq select` on a fresh cache: the pool, the subset it wrote and the (pristine) cache it left."""
    tmp = tmp_path_factory.mktemp("reference")
    pool = tmp / "pool.jsonl"
    pool.write_text("\n".join((datakit / "dolly_3k" / "dolly_3k.jsonl").read_text().splitlines()[:300]) + "\n")
    res = select(pool, tmp / "sub.jsonl", tmp / "cache")
    assert res.returncode == 0, res.stderr
    assert "kmq:" not in res.stderr  # a clean run warns about nothing
    return pool, (tmp / "sub.jsonl").read_bytes(), tmp / "cache"


def select(pool: Path, out: Path, cache: Path) -> subprocess.CompletedProcess:
    """`kmq select` through the real command line, in its own process, with ``cache`` as KMQ_CACHE_DIR."""
    cmd = [sys.executable, "-m", "kmq.cli.main", "select", str(pool), "--budget", "30", "--embedder", "hashing",
           "--out", str(out), "-q"]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "KMQ_CACHE_DIR": str(cache)})


def entry_ok(folder: Path) -> bool:
    """Every array of a cache entry matches the digest that its meta.json records."""
    digests = json.loads((folder / "meta.json").read_text()).get("digests", {})
    arrays = sorted(p.stem for p in folder.glob("*.npy"))
    return (
        bool(arrays)
        and sorted(digests) == arrays
        and all(array_digest(np.load(folder / f"{name}.npy", allow_pickle=False)) == digests[name] for name in arrays)
    )


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))


def artifact(cache: Path, kind: str) -> Path:
    (folder,) = (cache / "artifacts" / kind).iterdir()
    return folder


def first_shard(cache: Path) -> Path:
    (store,) = (cache / "vectors").iterdir()
    return sorted(store.glob("shard-*"))[0]


TARGETS = {
    "labels": lambda cache: artifact(cache, "clusters") / "labels.npy",
    "quality": lambda cache: artifact(cache, "quality") / "quality.npy",
    "vector-shard": lambda cache: first_shard(cache) / "vectors.npy",
}


@pytest.mark.parametrize("tamper", [flip_last_byte, random_bytes], ids=["flip-one-byte", "random-bytes"])
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_a_tampered_entry_is_recomputed_warned_once_and_replaced(reference, tmp_path, target, tamper):
    pool, expected, pristine = reference
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache)
    damaged = TARGETS[target](cache)
    tamper(damaged)
    if target == "vector-shard":  # cluster and score again, so that every shard is read (shards are checked lazily)
        shutil.rmtree(cache / "artifacts")
    res = select(pool, tmp_path / "sub.jsonl", cache)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "sub.jsonl").read_bytes() == expected  # the same selection as on the untampered cache
    warnings = [line for line in res.stderr.splitlines() if str(damaged.parent) in line]
    assert len(warnings) == 1 and "recomputed" in warnings[0], res.stderr
    if target != "vector-shard":
        assert entry_ok(damaged.parent)
        return
    assert not damaged.parent.exists()  # the bad shard is gone; fresh shards hold its vectors again
    assert all(entry_ok(shard) for shard in damaged.parent.parent.glob("shard-*"))
    again = select(pool, tmp_path / "again.jsonl", cache)  # and a later run reads them without a warning
    assert again.returncode == 0 and "kmq:" not in again.stderr, again.stderr
    assert (tmp_path / "again.jsonl").read_bytes() == expected


def test_entries_without_a_digest_from_older_versions_are_rewritten(reference, tmp_path):
    pool, expected, pristine = reference
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache)
    for meta in cache.rglob("meta.json"):  # what kmq wrote before entries carried digests
        old = json.loads(meta.read_text())
        old.pop("digests")
        meta.write_text(json.dumps(old))
    res = select(pool, tmp_path / "sub.jsonl", cache)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "sub.jsonl").read_bytes() == expected
    entries = [m.parent for m in cache.rglob("meta.json")]
    assert entries and all(entry_ok(folder) for folder in entries)


@pytest.mark.parametrize(
    "where",
    [
        "under-a-file",  # what fails even as root: a path whose parent is a regular file (ENOTDIR)
        pytest.param(
            "read-only-dir",
            marks=pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anyway"),
        ),
    ],
)
def test_an_unwritable_cache_falls_back_to_running_uncached(reference, tmp_path, where):
    pool, expected, _ = reference
    if where == "under-a-file":
        (tmp_path / "afile").write_text("not a folder\n")
        cache = tmp_path / "afile" / "cache"
    else:
        cache = tmp_path / "ro"
        cache.mkdir()
        cache.chmod(0o555)
    res = select(pool, tmp_path / "sub.jsonl", cache)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "sub.jsonl").read_bytes() == expected
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(cache) in lines[0] and "uncached" in lines[0], res.stderr


# -- the store itself -----------------------------------------------------------------------------------
def test_artifact_store_treats_a_damaged_entry_as_a_miss(tmp_path, caplog):
    store = ArtifactStore(tmp_path)
    store.put("clusters", "k1", {"n": 3}, labels=np.array([0, 1, 1]))
    assert store.get("clusters", "k1", "labels")[0].tolist() == [0, 1, 1]
    flip_last_byte(store.path("clusters", "k1") / "labels.npy")
    with caplog.at_level("WARNING", logger="kmq"):
        assert store.get("clusters", "k1", "labels") is None
        assert store.get("clusters", "k1", "labels") is None
    assert len(caplog.records) == 1 and str(store.path("clusters", "k1")) in caplog.records[0].getMessage()
    store.put("clusters", "k1", {"n": 3}, labels=np.array([0, 1, 1]))
    assert store.get("clusters", "k1", "labels")[0].tolist() == [0, 1, 1]


def test_vector_store_drops_a_damaged_shard_and_keeps_the_others(tmp_path, caplog):
    keys = text_keys([f"t{i}" for i in range(6)])
    vecs = np.arange(12, dtype=np.float32).reshape(6, 2)
    store = VectorStore(tmp_path / "written", 2)
    store.add(keys[:3], vecs[:3])
    store.add(keys[3:], vecs[3:])
    shutil.copytree(tmp_path / "written", tmp_path / "copy")  # a folder this process has not verified yet
    bad = sorted((tmp_path / "copy").glob("shard-*"))[0]
    flip_last_byte(bad / "vectors.npy")
    in_bad = np.isin(keys, np.load(bad / "keys.npy"))
    with caplog.at_level("WARNING", logger="kmq"):
        found, got = VectorStore(tmp_path / "copy", 2).gather(keys)  # the bad shard is gone: its keys are misses
    assert in_bad.sum() == 3 and found.tolist() == (~in_bad).tolist()
    assert np.array_equal(got[found], vecs[found]) and not got[~found].any()
    assert not bad.exists() and len(caplog.records) == 1 and str(bad) in caplog.records[0].getMessage()


def test_vector_store_verification_can_be_switched_off(tmp_path):
    keys = text_keys(["a", "b"])
    VectorStore(tmp_path / "s", 2).add(keys, np.ones((2, 2), dtype=np.float32))
    shutil.copytree(tmp_path / "s", tmp_path / "t")
    flip_last_byte(next((tmp_path / "t").glob("shard-*")) / "vectors.npy")
    found, got = VectorStore(tmp_path / "t", 2, verify=False).gather(keys)
    assert found.all() and got[1, 1] != 1.0  # the damage is read as is: what the benchmark's baseline times


def test_a_full_or_read_only_cache_keeps_vectors_in_memory(tmp_path, caplog):
    (tmp_path / "afile").write_text("")
    store = VectorStore(tmp_path / "afile" / "vectors" / "k", 2)
    keys = text_keys(["a", "b", "c"])
    with caplog.at_level("WARNING", logger="kmq"):
        store.add(keys[:2], np.ones((2, 2), dtype=np.float32))
        store.add(keys[2:], np.zeros((1, 2), dtype=np.float32))
    assert store.gather(keys)[0].all() and len(store) == 3
    assert len(caplog.records) == 1 and "uncached" in caplog.records[0].getMessage()
    assert ArtifactStore(tmp_path / "afile" / "c").put("quality", "k", None, quality=np.ones(3)) is None


# -- one cached block-map for embedders and scorers --------------------------------------------------------
class Counting:
    """A block function that records what it was asked for; values are a function of the item."""

    def __init__(self, fail_on_block: int | None = None) -> None:
        self.blocks: list[list[str]] = []
        self.fail_on_block = fail_on_block

    def __call__(self, items: list[str]) -> np.ndarray:
        if len(self.blocks) == self.fail_on_block:
            raise KeyboardInterrupt
        self.blocks.append(items)
        return np.array([[len(s), float("nan") if s == "nan" else ord(s[0])] for s in items])


def test_cached_map_dedupes_persists_each_block_and_resumes(tmp_path):
    items = ["bb", "a", "dddd", "a", "ccc", "eeeee", "bb"]
    store = VectorStore(tmp_path / "s", 2, dtype=np.float64)
    with pytest.raises(KeyboardInterrupt):  # interrupted after the first block of two
        cached_map(items, Counting(fail_on_block=1), store, dim=2, dtype=np.float64, block_size=2)
    fn = Counting()
    res = cached_map(items, fn, VectorStore(tmp_path / "s", 2, dtype=np.float64), dim=2, dtype=np.float64,
                     block_size=2, longest_first=True)  # fmt: skip
    assert fn.blocks == [["eeeee", "dddd"], ["ccc"]]  # the first run's block ["a", "bb"] was kept
    assert res.values[:, 0].tolist() == [len(s) for s in items] and res.values.dtype == np.float64
    assert res.stats == {"items": 7, "unique": 5, "cached": 2, "computed": 3, "skipped": 0,
                         "seconds": res.stats["seconds"]}  # fmt: skip
    assert res.keys.tolist() == text_keys(items).tolist()


def test_cached_map_returns_but_never_caches_nonfinite_rows_and_skips_blanks(tmp_path):
    store = VectorStore(tmp_path / "s", 2)
    items = ["x", "nan", " ", "x", "nan"]
    res = cached_map(items, Counting(), store, dim=2, block_size=8, skip_blank=True)
    assert np.isnan(res.values[[1, 4], 1]).all() and not res.values[2].any() and res.values[0, 1] == ord("x")
    again = Counting()
    res2 = cached_map(items, again, VectorStore(tmp_path / "s", 2), dim=2, block_size=8, skip_blank=True)
    assert again.blocks == [["nan"]] and res2.stats["skipped"] == 1 and res2.stats["cached"] == 1
    no_store = cached_map(items, Counting(), None, dim=2, block_size=8, skip_blank=True)
    assert np.array_equal(no_store.values, res.values, equal_nan=True)


def test_cached_map_checks_the_block_shape():
    with pytest.raises(RuntimeError, match=r"returned shape \(2, 3\), expected \(2, 2\)"):
        cached_map(["a", "b"], lambda items: np.zeros((len(items), 3)), None, dim=2, block_size=8)
    one = cached_map(["a", "b"], lambda items: np.ones(len(items)), None, dim=1, block_size=8)  # (n,) for dim 1
    assert one.values.shape == (2, 1)


def test_embedders_and_scorers_share_the_block_map(tmp_path):
    from kmq.embed import get_embedder
    from kmq.scorers._blocks import cached_rows

    emb = get_embedder("hashing")
    texts = ["one text", "another text", "one text", ""]
    x = emb.encode(texts, show_progress=False)
    direct = cached_map(texts, emb.embed_batch, None, dim=emb.dim, block_size=emb.block_size, skip_blank=True)
    assert np.array_equal(x, direct.values) and emb.text_keys_.tolist() == direct.keys.tolist()
    assert emb.stats_["encoded"] == 2 and emb.stats_["empty"] == 1
    rows, stats = cached_rows(texts, lambda b: np.array([len(t) for t in b]), store_key="k", dim=1, block_size=8)
    assert rows[:, 0].tolist() == [8, 12, 8, 0] and stats["computed"] == 3
    assert cached_rows(texts, None, store_key="k", dim=1, block_size=8)[1]["cached"] == 3


def test_vector_store_finds_keys_that_share_their_first_eight_bytes(tmp_path):
    def key(*parts: bytes) -> np.ndarray:
        return np.frombuffer(b"".join(parts), dtype="V16")

    same = b"\x07" * 8  # the index searches on the first 8 bytes; these keys differ only after them
    a, b, c, d = key(same, b"\x09" * 8), key(same, b"\x01" * 8), key(b"\x00" * 16), key(same, b"\x05" * 8)
    store = VectorStore(tmp_path / "s", 1)
    store.add(np.concatenate([a, c]), np.array([[1.0], [3.0]], dtype=np.float32))
    store.add(b, np.array([[2.0]], dtype=np.float32))
    found, got = VectorStore(tmp_path / "s", 1).gather(np.concatenate([b, a, d, c, a]))
    assert found.tolist() == [True, True, False, True, True] and got[:, 0].tolist() == [2, 1, 0, 3, 1]


def test_unique_keys_equals_numpys_unique(rng):
    raw = rng.integers(0, 4, size=(500, 16), dtype=np.uint8)  # many duplicates and many shared first halves
    raw[::3, 8:] = rng.integers(0, 256, size=(len(raw[::3]), 8), dtype=np.uint8)
    for keys in (np.ascontiguousarray(raw).view("V16")[:, 0], text_keys([str(i % 37) for i in range(300)])):
        expected = np.unique(keys, return_index=True, return_inverse=True)
        got = unique_keys(keys)
        assert all(np.array_equal(g, e.reshape(-1)) for g, e in zip(got, expected, strict=True))
    assert all(len(a) == 0 for a in unique_keys(np.empty(0, dtype="V16")))
