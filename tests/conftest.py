"""Shared fixtures: the datakit location, offline mode, and a per-test kmq cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
DATAKIT = Path(os.environ.get("KMQ_DATAKIT", REPO_ROOT.parent / "shared" / "datakit"))


@pytest.fixture(scope="session")
def datakit() -> Path:
    """Path of ``../shared/datakit``; tests that need it are skipped when it is absent."""
    if not DATAKIT.is_dir():
        pytest.skip(f"datakit not found at {DATAKIT} (set KMQ_DATAKIT)")
    return DATAKIT


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty kmq cache, so cache reuse is always tested from a cold start."""
    monkeypatch.setenv("KMQ_CACHE_DIR", str(tmp_path_factory.mktemp("kmq-cache")))


@pytest.fixture(params=[0, 1, 7])
def global_random_seed(request) -> int:
    """A few seeds for invariants that must hold whatever the seed."""
    return request.param


@pytest.fixture
def rng(global_random_seed) -> np.random.Generator:
    return np.random.default_rng(global_random_seed)
