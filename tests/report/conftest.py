"""Fixtures of the report tests: real run directories (``kmq select`` on datakit pools with the hashing
embedder and the heuristic scorer, ``kmq iterate`` with fast components), synthetic ones, and one headless
Chromium per test module.

The Chromium tests skip, with the reason, when no chromium binary exists; in CI (``CI=true``) a missing
binary is a failure (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from cdp import chromium, find_chromium

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _select(tmp: Path, pool: Path, *flags: str) -> Path:
    from kmq.cli.main import main

    out = tmp / "s.jsonl"
    code = main(["select", str(pool), "--out", str(out), "--embedder", "hashing", "--scorer", "heuristic", "-q",
                 *flags])  # fmt: skip
    assert code == 0
    return tmp / "s.jsonl.kmq-run"


@pytest.fixture(scope="session")
def mixed_pool(datakit, tmp_path_factory) -> Path:
    """901 real records: 300 each of dolly_3k, gsm8k_train and code_alpaca_2k (source and category labels), and
    ``copy-of-dolly_3k-0005``, an exact copy of dolly_3k-0005 under another id (dedup removes it)."""
    lines = []
    for name in ("dolly_3k", "gsm8k_train", "code_alpaca_2k"):
        lines += (datakit / name / f"{name}.jsonl").read_text().splitlines()[:300]
    copy = json.loads(lines[5])
    assert copy["id"] == "dolly_3k-0005"
    lines.append(json.dumps({**copy, "id": "copy-of-dolly_3k-0005"}))
    path = tmp_path_factory.mktemp("pool") / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def kmq_run(mixed_pool, tmp_path_factory) -> Path:
    """A real ``kmq select`` run directory (kmq, budget 90)."""
    return _select(tmp_path_factory.mktemp("kmq-run"), mixed_pool, "--budget", "90")


@pytest.fixture(scope="session")
def random_run(mixed_pool, tmp_path_factory) -> Path:
    """A real ``kmq select --method random`` run directory (no embeddings: no map, no clusters)."""
    return _select(tmp_path_factory.mktemp("random-run"), mixed_pool, "--budget", "90", "--method", "random")


@pytest.fixture(scope="session")
def auto_run(mixed_pool, tmp_path_factory) -> Path:
    """A real ``kmq select --clusters auto`` run directory (a silhouette table in the manifest)."""
    return _select(tmp_path_factory.mktemp("auto-run"), mixed_pool, "--budget", "90", "--clusters", "auto",
                   "--candidates", "4,6,9")  # fmt: skip


@pytest.fixture(scope="session")
def iterate_run(mixed_pool, tmp_path_factory) -> Path:
    """A real three-round ``kmq iterate`` run directory on 150 of the records (command trainer, loopback
    generator, relevance judge)."""
    pytest.importorskip("openai")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chat_server import ChatServer, echo_words
    from kmq.cli.main import main

    tmp = tmp_path_factory.mktemp("iterate-run")
    lines = mixed_pool.read_text().splitlines()
    pool = tmp / "pool.jsonl"
    pool.write_text("\n".join(lines[:50] + lines[300:350] + lines[600:650]) + "\n")
    model = tmp / "model"
    model.mkdir()
    (model / "config.json").write_text("{}\n")
    (tmp / "train.py").write_text("import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])")
    with ChatServer(echo_words) as srv:
        code = main(["iterate", str(pool), "--budget", "36", "--rounds", "3", "--seed", "3", "--embedder",
                     "hashing", "--clusters", "6", "--judge", "relevance", "--model", str(model), "--out",
                     str(tmp / "s.jsonl"), "--trainer", "command", "--train-command",
                     f"{sys.executable} {tmp / 'train.py'} {{base_model}} {{output_dir}}",
                     "--generator", f"openai:tiny@{srv.url}", "-q"])  # fmt: skip
    assert code == 0
    return tmp / "s.jsonl.kmq-run"


@pytest.fixture(scope="session")
def chromium_binary() -> str:
    binary = find_chromium()
    if binary is None:
        where = f"KMQ_CHROMIUM={os.environ['KMQ_CHROMIUM']} is not an executable" if os.environ.get("KMQ_CHROMIUM") \
            else "no chromium binary found"
        if IN_CI:
            pytest.fail(f"CI=true but {where}: .ci/run must install Debian's chromium")
        pytest.skip(f"{where} (install Debian's `chromium`, or set KMQ_CHROMIUM); CI runs these tests")
    return binary


@pytest.fixture(scope="module")
def browser(chromium_binary):
    """One headless Chromium for the whole test module (launching costs about a second)."""
    with chromium(chromium_binary) as b:
        yield b
