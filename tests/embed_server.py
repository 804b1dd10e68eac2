"""A loopback OpenAI-compatible embeddings server (``POST /v1/embeddings``) for the ``openai:`` encoder's tests.

It speaks the protocol the openai SDK and vLLM/TEI/OpenAI use: ``{"model", "input": str | [str],
"encoding_format": "float" | "base64", "dimensions"?}`` in, ``{"object": "list", "data": [{"object":
"embedding", "index": i, "embedding": [...] | "<base64 float32>"}], "model", "usage"}`` out. Each text's
vector is :func:`vector_of` (a deterministic, un-normalised function of the text), so tests know the
answer. The server records what it saw: :attr:`EmbedServer.requests` (the inputs of every answered
request), ``max_in_flight``, the ``Authorization`` headers.

Scripted behaviour: a text containing ``fail CODE xK`` makes the first K attempts of its request answer HTTP
CODE (with ``retry-after-ms: 10``); ``mode`` breaks every answer: ``"short"`` drops the last vector,
``"dim"`` cuts one value off the first vector, ``"nan"`` puts a NaN in the first vector, ``"nodata"`` answers
``{"object": "list"}``; ``floats_only`` ignores ``encoding_format`` and always sends JSON floats (as some
servers do), ``reverse`` sends the items in reverse order (their ``index`` still right).

    with EmbedServer(dim=8) as server:
        emb = OpenAIEmbedder("m", server.url)
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler

import numpy as np

from chat_server import LoopbackServer


def vector_of(text: str, dim: int) -> np.ndarray:
    """The server's vector for ``text``: shape (dim,), float32, not unit length (the client normalises)."""
    seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(dim) * (1.0 + len(text) % 5)).astype(np.float32)


class EmbedServer(LoopbackServer):
    """Answers ``/v1/embeddings`` with :func:`vector_of`; a context manager that serves on a thread."""

    def __init__(self, dim: int = 8, *, delay: float = 0.0) -> None:
        super().__init__(_Handler)
        self.dim = dim
        self.delay = delay
        self.mode: str | None = None
        self.floats_only = False
        self.reverse = False
        self.lock = threading.Lock()
        self.requests: list[list[str]] = []  # inputs of each answered (200) request
        self.attempts: dict[str, int] = {}  # per request body: attempts seen
        self.bodies: list[dict] = []  # every request body, answered or not
        self.auth: set[str] = set()
        self.in_flight = self.max_in_flight = 0

    @property
    def calls(self) -> int:
        """HTTP requests received (answered or failed on purpose)."""
        return len(self.bodies)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        srv: EmbedServer = self.server  # type: ignore[assignment]
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.rstrip("/") != "/v1/embeddings":
            return self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
        body = json.loads(raw)
        inputs = [body["input"]] if isinstance(body["input"], str) else list(body["input"])
        with srv.lock:
            srv.bodies.append(body)
            srv.auth.add(self.headers.get("Authorization", ""))
            attempt = srv.attempts[raw.decode()] = srv.attempts.get(raw.decode(), 0) + 1
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            time.sleep(srv.delay)
            fail = next((m for m in map(re.compile(r"fail (\d+) x(\d+)").search, inputs) if m), None)
            if fail and attempt <= int(fail[2]):
                error = {"error": {"message": "scripted failure", "type": "server_error"}}
                return self._send(int(fail[1]), error, {"retry-after-ms": "10"})
            if any(not isinstance(t, str) or not t for t in inputs):
                return self._send(400, {"error": {"message": "input must be non-empty strings", "type": "invalid"}})
            with srv.lock:
                srv.requests.append(inputs)
            self._send(200, self._answer(srv, body, inputs))
        finally:
            with srv.lock:
                srv.in_flight -= 1

    def _answer(self, srv: EmbedServer, body: dict, inputs: list[str]) -> dict:
        dim = int(body.get("dimensions") or srv.dim)
        vecs = [vector_of(t, dim) for t in inputs]
        if srv.mode == "short":
            vecs = vecs[:-1]
        elif srv.mode == "dim":
            vecs[0] = vecs[0][:-1]
        elif srv.mode == "nan":
            vecs[0] = vecs[0].copy()
            vecs[0][0] = np.nan
        if srv.mode == "nodata":
            return {"object": "list"}
        as_b64 = body.get("encoding_format") == "base64" and not srv.floats_only
        data = [
            {"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.tobytes()).decode() if as_b64 else [float(x) for x in v]}
            for i, v in enumerate(vecs)
        ]  # fmt: skip
        if srv.reverse:
            data.reverse()
        tokens = sum(len(t.split()) for t in inputs)
        return {"object": "list", "data": data, "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip

    def _send(self, code: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()  # NaN goes out as the bare token NaN, as Python servers send it
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
