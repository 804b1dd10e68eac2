"""The cache: checksummed entries (a damaged one is a miss, recomputed, warned about once and replaced), an
unwritable cache folder (the run goes on uncached with one warning), and the one cached block-map that serves
embedders and scorers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmq import cache
from kmq.cache import ArtifactStore, VectorStore, array_digest, cached_map, digest, text_keys, unique_keys


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


# -- the vector store at scale: one index per process, float16 shards, compaction ----------------------------
def _vec(ids: np.ndarray, dim: int) -> np.ndarray:
    """The vector of "text" i: a function of i alone, as a cache's rows are of their text."""
    x = np.array([np.random.default_rng(int(i)).standard_normal(dim) for i in ids], dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True) if len(x) else x.reshape(0, dim)


UNIVERSE = text_keys([f"text {i}" for i in range(64)])


def _fill(folder: Path, shards: list[list[int]], dim: int, **kw) -> dict[bytes, np.ndarray]:
    """Write ``shards`` (lists of text ids, repeats across shards allowed); returns the dict reference."""
    store = VectorStore(folder, dim, **kw)
    ref = {}
    for ids in shards:
        ids = np.unique(ids)
        store.add(UNIVERSE[ids], _vec(ids, dim))
        ref.update({UNIVERSE[i].tobytes(): v for i, v in zip(ids, _vec(ids, dim), strict=True)})
    return ref


def _check_against(ref: dict[bytes, np.ndarray], store: VectorStore, queries: np.ndarray, atol: float = 0) -> None:
    keys = UNIVERSE[queries]
    expected_found = np.array([k.tobytes() in ref for k in keys], dtype=bool)
    expected = np.array([ref.get(k.tobytes(), np.zeros(store.dim, np.float32)) for k in keys]).reshape(-1, store.dim)
    assert store.contains(keys).tolist() == expected_found.tolist()
    found, got = store.gather(keys)
    assert found.tolist() == expected_found.tolist() and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=atol)
    found2, rows = store.lookup(keys)
    assert found2.tolist() == expected_found.tolist()
    np.testing.assert_allclose(rows, expected[expected_found], rtol=0, atol=atol)
    parts = list(store.iter_found(keys, chunk_rows=3))
    if parts:
        where, rows = np.concatenate([p for p, _ in parts]), np.concatenate([v for _, v in parts])
        assert sorted(where.tolist()) == np.flatnonzero(expected_found).tolist()
        np.testing.assert_allclose(rows, expected[where], rtol=0, atol=atol)
    else:
        assert not expected_found.any()
    blocks = list(store.iter_gather(keys, chunk_rows=5))
    assert [lo for lo, _, _ in blocks] == list(range(0, len(keys), 5))
    if blocks:
        assert np.array_equal(np.concatenate([v for _, _, v in blocks]), got)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    shards=st.lists(st.lists(st.integers(0, 47), min_size=1, max_size=12), max_size=8),
    queries=st.lists(st.integers(0, 63), max_size=40),
    store_dtype=st.sampled_from(["float32", "float16"]),
    compact=st.booleans(),
)
def test_lookup_and_gather_equal_a_dict_of_the_rows(tmp_path, shards, queries, store_dtype, compact):
    with tempfile.TemporaryDirectory(dir=tmp_path) as tmp:
        folder = Path(tmp) / "store"
        ref = _fill(folder, shards, 4, store_dtype=store_dtype)
        atol = 0 if store_dtype == "float32" else 2.0**-11
        q = np.array(queries, dtype=np.int64)
        _check_against(ref, VectorStore(folder, 4, store_dtype=store_dtype), q, atol)  # the same index, reopened
        if compact:
            row_bytes = 4 * np.dtype(store_dtype).itemsize
            VectorStore(folder, 4, store_dtype=store_dtype).compact(target_bytes=10 * row_bytes)  # groups of ~10
        cache._OPEN.clear()  # as a new process: index the folder from scratch
        _check_against(ref, VectorStore(folder, 4, store_dtype=store_dtype), q, atol)
        assert len(VectorStore(folder, 4, store_dtype="float16" if store_dtype == "float32" else "float32")) == 0


def shard_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("shard-*"))


def test_compaction_keeps_every_key_and_vector_and_survives_a_crash_before_the_delete(tmp_path):
    folder = tmp_path / "s"
    ref = _fill(folder, [list(range(lo, lo + 6)) for lo in range(0, 48, 4)], 3)  # 12 shards, overlapping
    small = {name: (folder / name).read_bytes() if False else None for name in shard_names(folder)}
    aside = tmp_path / "aside"
    shutil.copytree(folder, aside)  # the small shards, as a crash between the write and the delete leaves them
    stats = VectorStore(folder, 3).compact(target_bytes=20 * 3 * 4)  # about 20 rows per merged shard
    assert stats["merged"] >= 10 and stats["written"] >= 2 and stats["rows"] <= 72
    after = shard_names(folder)
    assert len(after) < len(small) and not set(after) & set(small)
    everything = np.arange(64)
    _check_against(ref, VectorStore(folder, 3), everything)  # the same index, caught up
    cache._OPEN.clear()
    _check_against(ref, VectorStore(folder, 3), everything)  # a new process
    for name in small:  # the crash: the merged shards were written, the small ones never deleted
        shutil.copytree(aside / name, folder / name)
    cache._OPEN.clear()
    store = VectorStore(folder, 3)
    assert len(store) > len(ref)  # duplicate rows: tolerated
    _check_against(ref, store, everything)
    store.compact(target_bytes=20 * 3 * 4)
    cache._OPEN.clear()
    _check_against(ref, VectorStore(folder, 3), everything)


def test_compaction_never_merges_a_damaged_shard_and_a_damaged_merged_shard_is_caught(tmp_path, caplog):
    folder = tmp_path / "s"
    ref = _fill(folder, [[0, 1], [2, 3], [4, 5], [6, 7]], 3)
    cache._OPEN.clear()
    cache._VERIFIED.clear()  # as a new process: no shard checked yet
    bad = sorted(folder.glob("shard-*"))[0]
    bad_keys = np.load(bad / "keys.npy")
    flip_last_byte(bad / "vectors.npy")
    with caplog.at_level("WARNING", logger="kmq"):
        stats = VectorStore(folder, 3).compact()
    assert stats == {"merged": 3, "written": 1, "rows": 6} and not bad.exists()
    assert len(caplog.records) == 1 and str(bad) in caplog.records[0].getMessage()
    for k in bad_keys:
        del ref[k.tobytes()]
    (merged,) = sorted(folder.glob("shard-*"))
    _check_against(ref, VectorStore(folder, 3), np.arange(10))
    flip_last_byte(merged / "vectors.npy")  # damage after compaction: its digest still catches it
    cache._OPEN.clear()
    cache._VERIFIED.clear()
    caplog.clear()
    with caplog.at_level("WARNING", logger="kmq"):
        found, _ = VectorStore(folder, 3).gather(UNIVERSE[:8])
    assert not found.any() and not merged.exists()
    assert len(caplog.records) == 1 and str(merged) in caplog.records[0].getMessage()


def test_float16_shards_round_trip_within_the_documented_tolerance(tmp_path):
    x = np.random.default_rng(0).standard_normal((500, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    keys = text_keys([f"t{i}" for i in range(500)])
    VectorStore(tmp_path / "s", 384, store_dtype=np.float16).add(keys, x)
    shard = next((tmp_path / "s").glob("shard-*"))
    assert np.load(shard / "vectors.npy", mmap_mode="r").dtype == np.float16  # half the bytes on disk
    cache._OPEN.clear()
    found, got = VectorStore(tmp_path / "s", 384, store_dtype=np.float16).gather(keys)
    assert found.all() and got.dtype == np.float32
    assert (np.abs(got - x) <= np.abs(x) * 2.0**-11 + 2.0**-25).all()  # float16's rounding, per coordinate
    cos = (got * x).sum(axis=1) / np.linalg.norm(got, axis=1)
    assert cos.min() >= 0.9999
    assert not VectorStore(tmp_path / "s", 384).contains(keys).any()  # a float32 request never gets float16 rows


def test_the_embedders_float16_cache_has_a_folder_and_key_of_its_own(tmp_path):
    from kmq.embed import get_embedder

    texts = ["a text about cats", "one about dogs", "and fish", ""]
    emb32, emb16 = get_embedder("hashing"), get_embedder("hashing")
    emb16.store_dtype = "float16"
    assert emb16.key != emb32.key
    x32 = emb32.encode(texts, show_progress=False)
    x16 = emb16.encode(texts, show_progress=False)
    assert emb16.stats_["encoded"] == 3  # nothing reused from the float32 folder
    assert x16.dtype == np.float32 and np.abs(x16 - x32).max() <= 2.0**-11 and not x16[3].any()
    again = emb16.encode(texts, show_progress=False)
    assert emb16.stats_["cached"] == 3 and np.array_equal(again, x16)
    folders = sorted(p.name for p in (cache.default_cache_dir() / "vectors").iterdir())
    assert folders == sorted([emb32.key, emb16.key])


def test_gather_into_a_memmap_and_a_reopen_reuses_the_index(tmp_path):
    ref = _fill(tmp_path / "s", [[0, 1, 2], [3, 4], [5]], 2)
    store = VectorStore(tmp_path / "s", 2)
    assert VectorStore(tmp_path / "s", 2)._ix is store._ix  # one index per folder in a process
    out = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=(8, 2))
    out[:] = 7
    found, got = store.gather(UNIVERSE[[5, 9, 0, 3, 1, 2, 4, 10]], out=out)
    assert got is out and found.tolist() == [True, False, True, True, True, True, True, False]
    assert not out[[1, 7]].any() and np.array_equal(out[0], ref[UNIVERSE[5].tobytes()])
    with pytest.raises(ValueError, match=r"out has shape \(3, 2\)"):
        store.gather(UNIVERSE[:8], out=np.zeros((3, 2), np.float32))


READER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from kmq import cache
    from kmq.cache import VectorStore, text_keys
    folder, n, mode = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    keys = text_keys([f"text {i}" for i in range(n)])
    if mode == "add":
        VectorStore(folder, 2).add(keys[-1:], np.ones((1, 2), np.float32))
        sys.exit(0)
    end, reads = time.time() + float(sys.argv[4]), 0
    while time.time() < end:
        cache._OPEN.clear()  # open the folder afresh each time, as separate runs do
        found = VectorStore(folder, 2).contains(keys)
        if not found.all():
            sys.exit(f"missing {int((~found).sum())} keys after {reads} reads")
        reads += 1
        if reads == 1:
            print("ready", flush=True)
    print(reads)
    """
)


def test_another_processes_new_shard_is_seen_and_readers_never_miss_a_key_during_compaction(tmp_path):
    folder = tmp_path / "s"
    n = 200
    keys = text_keys([f"text {i}" for i in range(n)])
    store = VectorStore(folder, 2)
    for lo in range(0, n - 1, 3):
        store.add(keys[lo : min(lo + 3, n - 1)], np.full((min(3, n - 1 - lo), 2), lo, np.float32))
    assert store.contains(keys).sum() == n - 1
    run = [sys.executable, "-c", READER, str(folder), str(n)]
    assert subprocess.run([*run, "add"], capture_output=True, text=True).returncode == 0
    assert VectorStore(folder, 2).contains(keys).all()  # this process catches up with the other's shard
    reader = subprocess.Popen([*run, "read", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert reader.stdout.readline() == "ready\n", reader.stderr.read()
    written, round_ = 0, 0
    while reader.poll() is None:  # compact, then refill with small shards of the same keys, until the reader ends
        written += VectorStore(folder, 2).compact(target_bytes=40 * 2 * 4)["written"]
        for lo in range(0, n, 7):
            VectorStore(folder, 2).add(keys[lo : lo + 7], np.full((len(keys[lo : lo + 7]), 2), round_, np.float32))
        round_ += 1
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err
    assert int(out) > 1 and written > 1


def test_cached_map_compacts_a_store_that_many_small_blocks_left(tmp_path):
    items = [f"item {i}" for i in range(cache.COMPACT_AFTER + 6)]
    fn = Counting()
    res = cached_map(items, fn, VectorStore(tmp_path / "s", 2), dim=2, block_size=1)
    assert len(fn.blocks) == len(items) and len(shard_names(tmp_path / "s")) == 1  # merged after the run
    cache._OPEN.clear()
    again = cached_map(items, Counting(), VectorStore(tmp_path / "s", 2), dim=2, block_size=1)
    assert again.stats["cached"] == len(items) and np.array_equal(again.values, res.values)


def test_the_npy_key_is_the_old_digest_and_float16_files_are_accepted(tmp_path):
    from kmq.embed.precomputed import load_npy_embeddings, load_npy_source

    x = np.random.default_rng(3).standard_normal((70_000, 3)).astype(np.float32)  # more than one chunk of rows
    x[5] = 0
    np.save(tmp_path / "x.npy", x)
    X, key = load_npy_source(tmp_path / "x.npy", len(x))
    assert key == digest("npy", load_npy_embeddings(tmp_path / "x.npy", len(x)).tobytes())  # what kmq keyed before
    assert np.allclose(np.linalg.norm(X[np.arange(len(X)) != 5], axis=1), 1, atol=1e-6) and not X[5].any()
    np.save(tmp_path / "h.npy", x.astype(np.float16))
    H, hkey = load_npy_source(tmp_path / "h.npy", len(x))
    assert H.dtype == np.float32 and hkey != key and ((H * X).sum(axis=1)[np.arange(len(X)) != 5] >= 0.999).all()
