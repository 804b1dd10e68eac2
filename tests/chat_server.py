"""A minimal OpenAI-compatible chat server on 127.0.0.1 for tests that run kmq in a subprocess.

``POST /v1/chat/completions`` answers ``reply(messages)`` (a deterministic function of the request), so a
killed and resumed run gets the same answers as an uninterrupted one. :attr:`ChatServer.calls` counts the
answered requests (a resumed run must send only the ones it has not cached).

    with ChatServer(reply) as server:
        run(["--generator", f"openai:m@{server.url}", ...])
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def echo_words(messages: list[dict]) -> str:
    """A generator's answer: the first 1-7 words of the last user turn (how many depends on its text)."""
    words = messages[-1]["content"].split()
    return " ".join(words[: 1 + _hash(messages[-1]["content"]) % 7])


def rate_by_hash(messages: list[dict]) -> str:
    """A judge's answer: an MT-Bench style ``[[N]]`` rating, N in 1-10, from a digest of the request."""
    return f"Fine. Rating: [[{1 + _hash(messages[-1]['content']) % 10}]]"


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "little")


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 (a free port) that serves on a thread as a context manager; ``url`` ends in /v1."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
        self.server_close()


class ChatServer(LoopbackServer):
    """Answers chat completions with ``reply(messages)``; a context manager that serves on a thread."""

    def __init__(self, reply: Callable[[list[dict]], str]) -> None:
        super().__init__(_Handler)
        self.reply = reply
        self.calls = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        srv: ChatServer = self.server  # type: ignore[assignment]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = srv.reply(body["messages"])
        with srv.lock:
            srv.calls += 1
        data = json.dumps({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
