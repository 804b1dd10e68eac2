"""kmq.endpoints.Endpoint against a loopback server speaking /v1/chat/completions, with the real openai client."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytest.importorskip("openai")

from kmq.endpoints import Endpoint, connect_reason  # noqa: E402
from kmq.errors import JudgeError  # noqa: E402

KEY = "sk-endpoint-secret-31"


class Server(ThreadingHTTPServer):
    """Answers ``say X`` with ``X``; ``status N`` with HTTP N (and a 10 ms ``retry-after-ms``); ``sleep S`` sleeps."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), Handler)
        self.lock = threading.Lock()
        self.calls: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802
        srv: Server = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][-1]["content"]
        with srv.lock:
            srv.calls.append(text)
        verb, _, arg = text.partition(" ")
        if verb == "sleep":
            time.sleep(float(arg))
        if verb == "status":
            payload = {"error": {"message": f"scripted; you sent {self.headers.get('Authorization')}\nline two"}}
            return self._send(int(arg), payload, {"retry-after-ms": "10"})
        self._send(200, {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": arg}}],
        })  # fmt: skip

    def _send(self, code, payload, headers=None):
        data = json.dumps(payload).encode()
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server():
    srv = Server()
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _endpoint(url, **kw) -> Endpoint:
    return Endpoint(url, label=f"test endpoint {url}", error=JudgeError, **{"max_retries": 2, "timeout": 5.0, **kw})


def _ask(ep: Endpoint, text: str) -> str:
    return ep.chat(model="m", messages=[{"role": "user", "content": text}])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_answers_in_order_and_counts_attempts(server):
    ep = _endpoint(server.url)
    answers = ep.map(lambda t: _ask(ep, t), [f"say a{i}" for i in range(10)], concurrency=4)
    assert answers == [f"a{i}" for i in range(10)]
    assert ep.attempts == 10 and ep.map(lambda t: t, [], concurrency=4) == []


def test_the_sdk_retries_5xx_then_one_clean_error(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    ep = _endpoint(server.url.replace("http://", "http://me:pw-in-url@"), max_retries=3)
    with pytest.raises(JudgeError, match=r"after 4 attempts \(HTTP 503\)") as info:
        _ask(ep, "status 503")
    msg = str(info.value)
    assert len(server.calls) == 4 and ep.attempts == 4
    assert KEY not in msg and "pw-in-url" not in msg and "\n" not in msg and "http://***@127.0.0.1" in msg
    assert "you sent Basic ***" in msg  # the server echoed the Basic auth header: scrubbed too


def test_client_errors_fail_at_once_and_auth_names_the_variable(server):
    ep = _endpoint(server.url, api_key_env="MY_TEST_KEY")
    with pytest.raises(JudgeError, match=r"request failed \(HTTP 400\)"):
        _ask(ep, "status 400")
    with pytest.raises(JudgeError, match=r"authentication failed \(HTTP 401\)\. Put the key in \$MY_TEST_KEY"):
        _ask(ep, "status 401")
    assert len(server.calls) == 2


def test_timeouts_are_retried_and_reported(server):
    ep = _endpoint(server.url, timeout=0.3, max_retries=1)
    with pytest.raises(JudgeError, match=r"after 2 attempts \(timed out after 0.3 s\)"):
        _ask(ep, "sleep 1")


def test_first_failure_cancels_the_requests_not_started(server):
    ep = _endpoint(server.url)
    items = ["say ok", "say ok", "status 400", *["sleep 0.05"] * 40]
    with pytest.raises(JudgeError, match=r"HTTP 400"):
        ep.map(lambda t: _ask(ep, t), items, concurrency=2)
    assert len(server.calls) <= 6  # the 400, at most its neighbour in flight, and nothing queued behind


def test_closed_port_fails_before_any_request():
    port = _closed_port()
    ep = _endpoint(f"http://127.0.0.1:{port}/v1", max_retries=5)
    start = time.perf_counter()
    with pytest.raises(JudgeError, match=r"cannot connect \(connection refused; tried 2 times\)"):
        ep.map(lambda t: _ask(ep, t), ["say x"] * 20, concurrency=8)
    assert time.perf_counter() - start < 2.0 and ep.attempts == 0


def test_refused_connects_are_not_retried_by_the_sdk(monkeypatch):
    """Through a dead proxy (no preflight then): each request connects twice and the first failure stops the rest."""
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    proxy_port = _closed_port()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
    ep = _endpoint("http://judge.example:8000/v1", max_retries=5)
    start = time.perf_counter()
    with pytest.raises(JudgeError, match=rf"through the proxy http://127.0.0.1:{proxy_port} \(connection refused"):
        ep.map(lambda t: _ask(ep, t), ["say x"] * 20, concurrency=1)
    assert time.perf_counter() - start < 2.0 and ep.attempts == 2


def test_scrub_and_connect_reasons():
    ep = _endpoint("http://u:p@h/v1")
    ep._key = KEY
    assert ep.scrub(f"key {KEY} at http://u:p@h/v1\n next") == "key *** at http://***@h/v1 next"
    assert len(ep.scrub("x" * 1000)) == 300
    assert connect_reason(ConnectionRefusedError(111, "Connection refused")) == "connection refused"
    assert connect_reason(socket.gaierror(-2, "Name or service not known"), "h") == (
        "DNS lookup of h failed: Name or service not known"
    )


def test_bad_settings_are_parameter_errors():
    from kmq.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="'max_retries' parameter of test endpoint"):
        _endpoint("http://127.0.0.1:1/v1", max_retries=-1).client  # noqa: B018
    with pytest.raises(InvalidParameterError, match="must look like http"):
        _endpoint("http:///v1").client  # noqa: B018
