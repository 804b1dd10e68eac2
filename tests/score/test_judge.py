"""The LLM judge against a local OpenAI-compatible server speaking /v1/chat/completions, with the real client."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

pytest.importorskip("openai")

from kmq.score import JudgeScorer, get_scorer  # noqa: E402
from kmq.score.judge import JudgeError, judge_messages, parse_rating  # noqa: E402

KEY = "sk-test-secret-1234"


class FakeJudge(ThreadingHTTPServer):
    """Answers chat completions; the judged answer text scripts the behaviour.

    ``rate N``: reply "... [[N]]"; ``garble``: reply without a rating; ``fail CODE xK``: answer HTTP CODE to the
    first K attempts of that request; ``slow xK``: sleep past the client timeout on the first K attempts.
    """

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = self.calls = 0
        self.attempts: dict[str, int] = {}
        self.auth: set[str] = set()
        self.delay = 0.05

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
            srv.calls += 1
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
            srv.auth.add(self.headers.get("Authorization", ""))
            attempt = srv.attempts[prompt] = srv.attempts.get(prompt, 0) + 1
        try:
            time.sleep(srv.delay)
            fail = re.search(r"fail (\d+) x(\d+)", answer)
            if fail and attempt <= int(fail[2]):
                return self._send(int(fail[1]), {"error": {"message": "scripted failure", "type": "server_error"}})
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

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code == 429:
                self.send_header("Retry-After", "0")
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
    kw = {"retry_base_delay": 0.01, "timeout": 5.0, **kw}
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
