"""A real pool for the method tests: dolly_3k embedded (hashing), clustered and scored (heuristic) once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass(frozen=True)
class PoolArrays:
    X: np.ndarray  # (n, d) float32, L2-normalised
    labels: np.ndarray  # (n,) int
    centroids: np.ndarray  # (k, d) float32
    quality: np.ndarray  # (n,) float64


@pytest.fixture(scope="module")
def dolly_arrays(datakit, tmp_path_factory) -> PoolArrays:
    """dolly_3k (2,996 records) through kmq's own stages at budget 300: hashing vectors, k-means, heuristic."""
    from kmq.data import read_pool
    from kmq.pipeline import build_config
    from kmq.stages import Stages

    path = str(datakit / "dolly_3k" / "dolly_3k.jsonl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KMQ_CACHE_DIR", str(tmp_path_factory.mktemp("kmq-cache-dolly")))
        cfg = build_config(None, {"pool": path, "budget": 300, "embed.embedder": "hashing"})
        stages = Stages(cfg, read_pool(path), False)
        X = stages.vectors().value
        labels, centroids = stages.clusters(300).value
        stages.check_responses()
        quality = np.asarray(stages.quality().value, dtype=np.float64)
    return PoolArrays(X=X, labels=labels, centroids=centroids, quality=quality)


@dataclass(frozen=True)
class MixedArrays(PoolArrays):
    source: list  # (n,) the datakit's ``source`` of every row
    tokens: np.ndarray  # (n,) int64: words of the conversation + 4 per turn, a stand-in for a tokenizer's count


MIXED_SOURCES = ("lima", "gsm8k_train", "code_alpaca_2k", "dolly_3k", "fastchat_dummy")


@pytest.fixture(scope="session")
def mixed_arrays(datakit, tmp_path_factory) -> MixedArrays:
    """A slice of the datakit's mixed pool (the first 300 rows of 5 of its sources, 1,500 records) through kmq's
    own stages: hashing vectors, k-means with k = 30, heuristic quality."""
    from kmq.data import read_pool
    from kmq.pipeline import build_config
    from kmq.stages import Stages

    folder = tmp_path_factory.mktemp("mixed-slice")
    path = folder / "mixed_slice.jsonl"
    with open(path, "wb") as f:
        for name in MIXED_SOURCES:
            lines = (datakit / name / f"{name}.jsonl").read_bytes().splitlines(keepends=True)[:300]
            f.writelines(line if line.endswith(b"\n") else line + b"\n" for line in lines)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KMQ_CACHE_DIR", str(tmp_path_factory.mktemp("kmq-cache-mixed")))
        cfg = build_config(
            None, {"pool": str(path), "budget": 150, "cluster.clusters": 30, "embed.embedder": "hashing"}
        )
        pool = read_pool(str(path))
        stages = Stages(cfg, pool, False)
        X = stages.vectors().value
        labels, centroids = stages.clusters(150).value
        stages.check_responses()
        quality = np.asarray(stages.quality().value, dtype=np.float64)
    tokens = np.array([sum(len(t["content"].split()) + 4 for t in turns) for turns in pool.messages], dtype=np.int64)
    return MixedArrays(
        X=X, labels=labels, centroids=centroids, quality=quality, source=pool.column("source"), tokens=tokens
    )
