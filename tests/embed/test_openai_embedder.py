"""The ``openai:MODEL@URL`` encoder against a loopback /v1/embeddings server, through the real openai client."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openai")

from embed_server import EmbedServer, vector_of  # noqa: E402
from kmq.embed import get_embedder  # noqa: E402
from kmq.embed.openai import EmbeddingEndpointError, OpenAIEmbedder  # noqa: E402
from kmq.errors import InvalidParameterError, KmqError  # noqa: E402

KEY = "sk-embed-secret-4321"
TEXTS = [f"text number {i} about {'cats' if i % 2 else 'the sea'}" for i in range(23)]


@pytest.fixture
def server():
    with EmbedServer(dim=12) as srv:
        yield srv


def _expected(texts, dim=12) -> np.ndarray:
    rows = np.stack([vector_of(t, dim) if t.strip() else np.zeros(dim, np.float32) for t in texts])
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _embedder(server, **kw) -> OpenAIEmbedder:
    return OpenAIEmbedder("embed-model", server.url, **{"timeout": 5.0, **kw})


def test_vectors_order_batches_and_concurrency(server):
    server.delay = 0.05
    texts = TEXTS + [TEXTS[3], "", "   "]  # a duplicate and two blanks (zero rows, never sent)
    emb = _embedder(server, batch_size=5, concurrency=3)
    got = emb.encode(texts, show_progress=False)
    assert got.dtype == np.float32 and got.shape == (26, 12)
    np.testing.assert_allclose(got, _expected(texts), rtol=1e-6, atol=1e-6)
    probe, *sent = server.requests
    assert probe == ["dimension probe"]
    assert sorted(len(r) for r in sent) == [3, 5, 5, 5, 5]  # 23 distinct texts, 5 per request
    assert sorted(t for r in sent for t in r) == sorted(TEXTS)  # each distinct text once, blanks never
    assert server.max_in_flight == 3  # bounded, and actually concurrent
    assert {b["encoding_format"] for b in server.bodies} == {"base64"} and "dimensions" not in server.bodies[0]
    assert emb.stats_["requests"] == 6 and emb.stats_["encoded"] == 23  # the probe counts and emb.stats_["empty"] == 2


@pytest.mark.parametrize("quirk", ["floats_only", "reverse"])
def test_float_answers_and_items_out_of_order(server, quirk):
    setattr(server, quirk, True)
    got = _embedder(server, batch_size=7).encode(TEXTS, show_progress=False)
    np.testing.assert_allclose(got, _expected(TEXTS), rtol=1e-6, atol=1e-6)


def test_dimensions_are_sent_and_need_no_probe(server):
    emb = _embedder(server, dimensions=6)
    assert emb.dim == 6 and server.calls == 0
    got = emb.encode(TEXTS[:4], show_progress=False)
    np.testing.assert_allclose(got, _expected(TEXTS[:4], dim=6), rtol=1e-6, atol=1e-6)
    assert server.calls == 1 and server.bodies[0]["dimensions"] == 6


def test_retries_on_429_and_500(server):
    texts = ["a fail 429 x2", "b fail 500 x1", "c plain"]
    emb = _embedder(server, batch_size=1, max_retries=3)
    np.testing.assert_allclose(emb.encode(texts, show_progress=False), _expected(texts), rtol=1e-6, atol=1e-6)
    assert server.calls == 1 + 3 + 2 + 1  # the probe, then 3, 2 and 1 attempts
    assert emb.stats_["http_attempts"] == 7 and emb.stats_["requests"] == 4  # the probe included


def test_exhausted_retries_name_the_endpoint_and_the_batch(server):
    emb = _embedder(server, batch_size=4, max_retries=2)
    with pytest.raises(EmbeddingEndpointError, match=r"after 3 attempts \(HTTP 500\)") as info:
        emb.encode(["x fail 500 x9", "y"], show_progress=False)
    msg = str(info.value)
    assert msg.startswith(f"openai:embed-model@{server.url}: ") and "\n" not in msg
    assert msg.endswith("scripted failure. The request held a batch of 2 texts (the first starts 'y').")
    assert isinstance(info.value, KmqError)


@pytest.mark.parametrize(
    ("mode", "match"),
    [
        ("short", r"has 2 vectors for 3 inputs"),
        ("dim", r"has a vector of dimension 11 for input 0; expected dimension 12 \(the dimension an earlier"),
        ("nan", r"non-finite values \(NaN or inf\) in the vectors of inputs \[0\]"),
        ("nodata", r"has no 'data' list\. Is the URL an embeddings endpoint"),
    ],
)
def test_wrong_answers_are_clear_errors(server, mode, match):
    emb = _embedder(server)
    assert emb.dim == 12  # probed while the server still answers well
    server.mode = mode
    with pytest.raises(EmbeddingEndpointError, match=match) as info:
        emb.encode(["one", "two", "three"], show_progress=False)
    assert f"openai:embed-model@{server.url}: the answer to a batch of 3 texts" in str(info.value)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dead_endpoint_fails_fast_with_one_line():
    port = _closed_port()
    emb = get_embedder(f"openai:m@http://user:sk-secret-99@127.0.0.1:{port}/v1", concurrency=8, max_retries=5)
    start = time.perf_counter()
    with pytest.raises(EmbeddingEndpointError) as info:
        emb.encode(TEXTS, show_progress=False)
    msg = str(info.value)
    assert time.perf_counter() - start < 5.0 and "\n" not in msg
    assert "connection refused" in msg and f"http://***@127.0.0.1:{port}/v1" in msg and "sk-secret" not in msg


def test_second_run_is_served_from_the_cache(server):
    first = _embedder(server, batch_size=8).encode(TEXTS, show_progress=False)
    calls = server.calls
    server.shutdown()  # the second run must not need the server at all: dimension and vectors are cached
    again = _embedder(server, batch_size=8)
    np.testing.assert_array_equal(again.encode(TEXTS, show_progress=False), first)
    assert server.calls == calls and again.stats_["cached"] == len(TEXTS) and again.stats_["requests"] == 0


def test_cache_key_has_model_url_and_dim_but_no_credentials(server):
    base = _embedder(server).identity()
    assert base == {"class": "OpenAIEmbedder", "model": "embed-model", "base_url": server.url, "dim": 12,
                    "normalize": "l2"}  # fmt: skip
    with_creds = OpenAIEmbedder("embed-model", server.url.replace("http://", "http://u:sk-x-1@"), timeout=5.0)
    assert with_creds.dim == 12 and "sk-x-1" not in json.dumps(with_creds.identity()) + with_creds.name
    assert _embedder(server, dimensions=6).key != _embedder(server).key
    assert OpenAIEmbedder("other-model", server.url).key != _embedder(server).key


def test_key_is_a_header_and_never_recorded(server, monkeypatch, tmp_path, caplog):
    from kmq.config import dump_config
    from kmq.data import Pool
    from kmq.pipeline import build_config, run_select

    monkeypatch.setenv("MY_EMBED_KEY", KEY)
    spec = f"openai:embed-model@{server.url}"
    emb = get_embedder(spec, api_key_env="MY_EMBED_KEY")
    with caplog.at_level(logging.DEBUG):
        emb.encode(TEXTS, show_progress=False)
    assert server.auth == {f"Bearer {KEY}"}
    assert KEY not in caplog.text + json.dumps(emb.stats_) + json.dumps(emb.identity()) + emb.name

    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # a whole run, with the default variable
    convs = [[{"role": "user", "content": t}, {"role": "assistant", "content": t[::-1]}] for t in TEXTS]
    pool = Pool.from_records([{"id": f"r{i}", "messages": c} for i, c in enumerate(convs)])
    cfg = build_config(None, {
        "budget": 6, "embed.embedder": spec, "cluster.clusters": 2, "score.scorer": "heuristic",
        "score.relevance_embedder": "hashing", "run_dir": str(tmp_path / "run"), "out": str(tmp_path / "subset.jsonl"),
    })  # fmt: skip
    with caplog.at_level(logging.DEBUG):
        sel = run_select(cfg, pool=pool, show_progress=False)
    assert len(sel) == 6
    files = [p for p in [*(tmp_path / "run").rglob("*"), *tmp_path.glob("*")] if p.is_file()]
    cache = [p for p in Path(os.environ["KMQ_CACHE_DIR"]).rglob("*") if p.is_file()]
    assert files and cache and not [p for p in files + cache if KEY.encode() in p.read_bytes()]
    assert KEY not in caplog.text + dump_config(cfg) + json.dumps(sel.manifest, default=str)


def test_cli_run_with_credentials_in_the_url(server, tmp_path):
    secret = "sk-url-secret-55"
    url = server.url.replace("http://", f"http://user:{secret}@")
    pool = tmp_path / "pool.jsonl"
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": t}, {"role": "assistant", "content": "ok " + t}]}
            for i, t in enumerate(TEXTS)]  # fmt: skip
    pool.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cmd = [sys.executable, "-m", "kmq.cli.main", "select", str(pool), "--budget", "5", "--embedder",
           f"openai:embed-model@{url}", "--clusters", "2", "--out", str(tmp_path / "subset.jsonl"),
           "--run-dir", str(tmp_path / "run"), "-v"]  # fmt: skip
    env = {**os.environ, "KMQ_CACHE_DIR": str(tmp_path / "cache"), "OPENAI_API_KEY": KEY}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)
    assert res.returncode == 0, res.stderr
    assert server.auth and all(a.startswith("Basic ") for a in server.auth)  # URL credentials win, as httpx sends
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and (secret.encode() in p.read_bytes()
                                                               or KEY.encode() in p.read_bytes())]  # fmt: skip
    assert not leaks and secret not in res.stdout + res.stderr and KEY not in res.stdout + res.stderr


def test_spec_errors_and_parameters():
    with pytest.raises(InvalidParameterError, match=r"openai:MODEL@URL needs a model and an http\(s\) base URL"):
        get_embedder("openai:just-a-model")
    with pytest.raises(InvalidParameterError, match=r"'u:p@h'|\*\*\*@"):
        get_embedder("openai:m@ftp://u:p@h/v1")
    with pytest.raises(InvalidParameterError, match=r"The 'concurrency' parameter of openai:m@http://\*\*\*@h/v1"):
        _ = get_embedder("openai:m@http://u:p@h/v1", concurrency=0).dim
    emb = get_embedder("openai:org/model@http://127.0.0.1:1/v1", batch_size=16, concurrency=2, dimensions=8)
    assert (emb.model_name, emb.batch_size, emb.concurrency, emb.dim) == ("org/model", 16, 2, 8)


def test_lone_surrogates_are_sent_as_replacement_characters(server):
    texts = ["broken \ud800 text", "fine"]
    got = _embedder(server).encode(texts, show_progress=False)
    np.testing.assert_allclose(got, _expected(["broken \ufffd text", "fine"]), rtol=1e-6, atol=1e-6)
