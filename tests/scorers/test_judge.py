"""The LLM judge against a local OpenAI-compatible server speaking /v1/chat/completions, with the real client."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("openai")

from kmq.scorers import JudgeScorer, get_scorer  # noqa: E402
from kmq.scorers.judge import JudgeError, judge_messages, parse_rating  # noqa: E402

KEY = "sk-test-secret-1234"


class FakeJudge(ThreadingHTTPServer):
    """Answers chat completions; the judged answer text scripts the behaviour.

    ``rate N``: reply "... [[N]]"; ``garble``: reply without a rating; ``fail CODE xK``: answer HTTP CODE to the
    first K attempts of that request (with ``retry-after-ms: 10``, or ``Retry-After: S`` when the answer also
    says ``after S``); ``slow xK``: sleep past the client timeout on the first K attempts. With ``die_after``
    set, the server stops listening once that many requests were answered and drops every later one.
    """

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.calls = 0
        self.attempts: dict[str, int] = {}
        self.auth: set[str] = set()
        self.times: dict[str, list[float]] = {}
        self.delay = 0.05
        self.die_after: int | None = None
        self.dead = False

    def die(self) -> None:
        """Stop accepting connections (later connects are refused); called from a request thread."""
        self.dead = True
        threading.Thread(target=lambda: (self.shutdown(), self.server_close()), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        srv: FakeJudge = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        answer = prompt.split("[The Start of Assistant's Answer]\n")[1].split("\n[The End")[0]
        with srv.lock:
            if srv.die_after is not None and srv.calls >= srv.die_after and not srv.dead:
                srv.die()
            if srv.dead:
                self.close_connection = True  # hang up without an answer
                return
            srv.calls += 1
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            srv.auth.add(self.headers.get("Authorization", ""))
            attempt = srv.attempts[prompt] = srv.attempts.get(prompt, 0) + 1
            srv.times.setdefault(prompt, []).append(time.monotonic())
        try:
            time.sleep(srv.delay)
            fail = re.search(r"fail (\d+) x(\d+)", answer)
            if fail and attempt <= int(fail[2]):
                after = re.search(r"after (\d+)", answer)
                headers = {"Retry-After": after[1]} if after else {"retry-after-ms": "10"}
                error = {"error": {"message": "scripted failure", "type": "server_error"}}
                return self._send(int(fail[1]), error, headers)
            slow = re.search(r"slow x(\d+)", answer)
            if slow and attempt <= int(slow[1]):
                time.sleep(1.0)
            rate = re.search(r"rate ([\d.]+)", answer)
            text = f"The answer is fine. Rating: [[{rate[1]}]]" if rate else "I cannot decide. Rating: 7/10"
            self._send(200, {
                "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            })  # fmt: skip
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


@pytest.fixture
def server():
    srv = FakeJudge()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _conv(answer: str, question: str = "What is 2 + 2?") -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def _judge(server, **kw) -> JudgeScorer:
    kw = {"timeout": 5.0, **kw}
    return JudgeScorer("judge-model", server.url, **kw)


def test_parse_rating():
    assert parse_rating("Good. Rating: [[7]]") == 7.0
    assert parse_rating("Rating: [[ 8.5 ]]") == 8.5
    assert parse_rating("first [[2]] then final [[9]]") == 9.0
    assert (
        parse_rating("Rating: 7/10") is None and parse_rating("[[0]]") is None and parse_rating("[[rating]]") is None
    )


def test_judge_prompt_is_mt_bench_single_v1():
    msgs = judge_messages(_conv("4"))
    assert msgs[0] == {"role": "system", "content": "You are a helpful assistant."}
    assert msgs[1]["content"].startswith("[Instruction]\nPlease act as an impartial judge")
    assert msgs[1]["content"].endswith(
        "[Question]\nWhat is 2 + 2?\n\n[The Start of Assistant's Answer]\n4\n[The End of Assistant's Answer]"
    )
    multi = judge_messages([{"role": "system", "content": "Be brief."}, *_conv("4"), *_conv("6", "And 3 + 3?")])
    assert (
        "### System:\nBe brief.\n\n### User:\nWhat is 2 + 2?\n\n### Assistant:\n4\n\n### User:\nAnd 3 + 3?"
        in (multi[1]["content"])
    )
    assert "[The Start of Assistant's Answer]\n6\n" in multi[1]["content"]


def test_ratings_concurrency_and_api_key(server, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", KEY)
    convs = [_conv(f"rate {1 + i % 10} (item {i})") for i in range(24)]
    scorer = get_scorer(f"judge:judge-model@{server.url}", concurrency=3, api_key_env="MY_JUDGE_KEY")
    got = scorer.score_messages(convs)
    np.testing.assert_array_equal(got, [1 + i % 10 for i in range(24)])
    assert server.max_in_flight == 3  # bounded, and actually concurrent
    assert server.auth == {f"Bearer {KEY}"}
    assert scorer.stats_["unparsable"] == 0 and scorer.stats_["requested"] == 24
    assert KEY not in json.dumps(scorer.stats_) + json.dumps(scorer.identity())
    again = get_scorer(f"judge:judge-model@{server.url}", api_key_env="MY_JUDGE_KEY")
    np.testing.assert_array_equal(again.score_messages(convs), got)
    assert again.stats_["cached"] == 24 and server.calls == 24


def test_retries_on_429_500_and_timeouts(server):
    convs = [_conv("rate 6 fail 429 x2"), _conv("rate 7 fail 500 x1"), _conv("rate 8 slow x1"), _conv("rate 9.5")]
    scorer = _judge(server, timeout=0.5, max_retries=3)
    np.testing.assert_array_equal(scorer.score_messages(convs), [6, 7, 8, 9.5])
    assert server.calls == 3 + 2 + 2 + 1


def test_exhausted_retries_give_a_clear_error(server):
    scorer = _judge(server, max_retries=2)
    with pytest.raises(JudgeError, match=r"after 3 attempts \(HTTP 500\)"):
        scorer.score_messages([_conv("rate 5 fail 500 x9")])
    assert server.calls == 3


def test_client_errors_are_not_retried_and_hide_the_key(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with pytest.raises(JudgeError, match=r"authentication failed \(HTTP 401\).*OPENAI_API_KEY") as info:
        _judge(server).score_messages([_conv("rate 5 fail 401 x9")])
    assert KEY not in str(info.value) and server.calls == 1
    with pytest.raises(JudgeError, match=r"request failed \(HTTP 400\)"):
        _judge(server).score_messages([_conv("rate 5 fail 400 x9")])


def test_unparsable_answers_are_never_silently_scored(server, caplog):
    convs = [_conv("rate 4"), _conv("garble"), _conv("rate 8")]
    with pytest.raises(JudgeError, match=r"1 of 3 answers have no \[\[rating\]\].*\[1\]"):
        _judge(server).score_messages(convs)
    nan = _judge(server, on_unparsable="nan")
    got = nan.score_messages(convs)
    assert got[0] == 4 and np.isnan(got[1]) and got[2] == 8
    assert nan.stats_["requested"] == 1 and nan.stats_["unparsable"] == 1  # parsed ratings were cached
    with caplog.at_level("WARNING", logger="kmq"):
        filled = _judge(server, on_unparsable="min").score_messages(convs)
    np.testing.assert_array_equal(filled, [4, 1, 8])
    assert "Scoring them 1.0" in caplog.text


def test_key_never_reaches_run_artifacts(server, monkeypatch, tmp_path):
    from kmq.config import dump_config
    from kmq.data import Pool
    from kmq.pipeline import build_config, run_select

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    pool = Pool.from_records([{"id": f"r{i}", "messages": _conv(f"rate {i % 9 + 1} #{i}")} for i in range(12)])
    cfg = build_config(None, {
        "budget": 4, "embed.embedder": "hashing", "cluster.clusters": 2, "score.scorer": f"judge:m@{server.url}",
        "score.judge_concurrency": 2, "run_dir": str(tmp_path / "run"), "out": str(tmp_path / "subset.jsonl"),
    })  # fmt: skip
    sel = run_select(cfg, pool=pool, show_progress=False)
    assert len(sel) == 4 and server.auth == {f"Bearer {KEY}"}
    written = "".join(p.read_text(errors="replace") for p in (tmp_path / "run").rglob("*") if p.is_file())
    assert written and KEY not in written and KEY not in dump_config(cfg) + json.dumps(sel.manifest)


# -- endpoints: the SDK's retries, fail-fast on dead servers (issue 9 item 12) ------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sdk_sends(caplog) -> int:
    """HTTP attempts as the openai SDK logs them (one "Sending HTTP Request" per attempt, retries included)."""
    return sum(r.getMessage().startswith("Sending HTTP Request") for r in caplog.records)


def test_retry_after_is_honoured(server):
    scorer = _judge(server)
    np.testing.assert_array_equal(scorer.score_messages([_conv("rate 6 fail 429 x1 after 1")]), [6])
    (first, second), = server.times.values()
    assert second - first >= 0.95 and scorer.stats_["http_attempts"] == 2


def test_dead_endpoint_fails_fast_with_one_line(caplog):
    port = _closed_port()
    url = f"http://user:sk-secret-99@127.0.0.1:{port}/v1"
    scorer = JudgeScorer("judge-model", url, concurrency=8, max_retries=5)
    start = time.perf_counter()
    with caplog.at_level(logging.DEBUG, logger="openai"), pytest.raises(JudgeError) as info:
        scorer.score_messages([_conv(f"rate 5 #{i}") for i in range(64)])
    elapsed = time.perf_counter() - start
    msg = str(info.value)
    assert elapsed < 5.0 and "\n" not in msg, (elapsed, msg)
    assert "connection refused" in msg and f"http://***@127.0.0.1:{port}/v1" in msg and "sk-secret" not in msg
    assert _sdk_sends(caplog) <= 2 and scorer.endpoint.attempts <= 2


def test_server_dying_mid_run_cancels_the_rest(server, caplog):
    server.die_after = 6
    scorer = _judge(server, concurrency=4, max_retries=5)
    start = time.perf_counter()
    with caplog.at_level(logging.DEBUG, logger="openai"), pytest.raises(JudgeError, match="connection refused"):
        scorer.score_messages([_conv(f"rate 5 #{i}") for i in range(64)])
    assert time.perf_counter() - start < 5.0
    assert server.calls == 6 and _sdk_sends(caplog) <= 6 + 4 * 3  # the 4 in flight: a drop, then 2 refused connects


def test_unknown_host_fails_fast():
    scorer = JudgeScorer("judge-model", "http://no-such-host.invalid:8000/v1", max_retries=5)
    start = time.perf_counter()
    with pytest.raises(JudgeError, match=r"8000/v1: cannot connect \(DNS lookup of no-such-host.invalid failed"):
        scorer.score_messages([_conv("rate 5")])
    assert time.perf_counter() - start < 5.0


# -- --judge-unparsable nan through the CLI (item 11), credentials in the URL (item 13) ------------------
def _kmq(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kmq.cli.main", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)  # fmt: skip


def _pool_file(tmp_path, answers) -> os.PathLike:
    path = tmp_path / "pool.jsonl"
    rows = [{"id": f"r{i}", "messages": _conv(a, f"Question {i}?")} for i, a in enumerate(answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_with_unparsable_nan_writes_missing(server, tmp_path):
    pool = _pool_file(tmp_path, ["rate 4", "garble", "rate 8", "garble again"])
    out = tmp_path / "scores.jsonl"
    res = _kmq("score", pool, "--scorer", f"judge:m@{server.url}", "--judge-unparsable", "nan", "--out", out, "-q")
    assert res.returncode == 0, res.stderr
    assert "2 unparsable, written as missing" in res.stdout and "min 4  mean 6  max 8" in res.stdout
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert rows == [{"id": "r0", "score": 4.0}, {"id": "r1", "score": None}, {"id": "r2", "score": 8.0},
                    {"id": "r3", "score": None}]  # fmt: skip


def test_missing_scores_are_null_in_parquet_and_empty_in_csv(tmp_path):
    import pyarrow.parquet as pq

    from kmq.scoring import write_scores

    ids, scores = ["a", "b", "c"], np.array([4.0, np.nan, 8.5])
    table = pq.read_table(write_scores(tmp_path / "s.parquet", ids, scores))
    assert table.column("score").null_count == 1 and table.to_pylist()[1] == {"id": "b", "score": None}
    csv_text = write_scores(tmp_path / "s.csv", ids, scores).read_text()
    assert csv_text.splitlines() == ["id,score", "a,4.0", "b,", "c,8.5"]


def test_select_refuses_unscored_records(server, tmp_path):
    pool = _pool_file(tmp_path, [f"rate {i % 9 + 1}" for i in range(11)] + ["garble"])
    args = ["select", pool, "--budget", "4", "--method", "top-quality", "--scorer", f"judge:m@{server.url}",
            "--judge-unparsable", "nan", "--out", tmp_path / "subset.jsonl", "-q"]  # fmt: skip
    res = _kmq(*args)
    error = res.stderr.strip().splitlines()[-1]  # after the judge's warning about the unparsable answer
    assert res.returncode == 2 and error.startswith("kmq select: error: Scorer judge:m@"), res.stderr
    assert "--judge-unparsable min" in error and "record 'r11'" in error
    assert not (tmp_path / "subset.jsonl").exists()


def test_url_credentials_never_reach_files_or_output(server, tmp_path):
    secret = "sk-secret-url-77"
    url = server.url.replace("http://", f"http://user:{secret}@")
    pool = _pool_file(tmp_path, [f"rate {i % 9 + 1} #{i}" for i in range(12)])
    cache = tmp_path / "cache"
    res = _kmq("select", pool, "--budget", "4", "--embedder", "hashing", "--clusters", "2", "--scorer",
               f"judge:m@{url}", "--out", tmp_path / "subset.jsonl", "--run-dir", tmp_path / "run", "-v",
               env={"KMQ_CACHE_DIR": cache})  # fmt: skip
    assert res.returncode == 0, res.stderr
    res2 = _kmq("score", pool, "--scorer", f"judge:m@{url}", "--out", tmp_path / "scores.jsonl", "-v",
                env={"KMQ_CACHE_DIR": cache})  # fmt: skip
    assert res2.returncode == 0, res2.stderr
    assert server.calls == 12  # the second command read the ratings from the cache
    assert server.auth == {"Basic " + base64.b64encode(f"user:{secret}".encode()).decode()}  # as httpx sends them
    leaks = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert secret not in res.stdout + res.stderr + res2.stdout + res2.stderr
    assert "***@127.0.0.1" in res2.stdout
    assert not leaks and (tmp_path / "run" / "manifest.json").is_file() and (tmp_path / "scores.jsonl").is_file()
