"""One way to reach an OpenAI-compatible HTTP endpoint (the ``judge:`` scorer and the ``openai:`` generator).

:class:`Endpoint` builds the ``openai`` client once: the API key comes only from the environment variable
``api_key_env`` (unset sends the placeholder ``EMPTY``, fine for local servers), and the SDK's own retries
do the backoff: it retries 408, 409, 429, 5xx answers, timeouts and connection errors ``max_retries`` times,
waiting 0.5 s doubling to at most 8 s (minus up to 25 % jitter), or what the server's ``Retry-After`` /
``retry-after-ms`` asks for up to 2 minutes (read in the installed openai's ``_base_client.py``).

A dead endpoint fails fast instead: before the first request one TCP connect checks that something
listens at the URL's host and port (skipped when a proxy applies to it), and a refused connection or a
failed DNS lookup is tried once more after :data:`RETRY_PAUSE` seconds, then reported in one line. Requests
to a server that dies mid-run do the same: the HTTP client raises their refused connects as an
``OpenAIError``, which the SDK passes on without retrying. During a batch (:meth:`Endpoint.map`) the first
failure stops the rest: requests not started are cancelled, and requests in flight give up at their next
attempt instead of retrying.

Every error of the SDK becomes one ``error`` (a :class:`~kmq.errors.KmqError` the caller names) whose
message names the endpoint and never shows the key or a URL's ``user:password@``.
"""

from __future__ import annotations

import base64
import importlib
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

from kmq._deps import require
from kmq.errors import InvalidParameterError, KmqError
from kmq.redact import redact_url

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

#: seconds before the one retry of a refused connection or a failed DNS lookup
RETRY_PAUSE = 0.25


class Endpoint:
    """An OpenAI-compatible base URL with one client, fail-fast connects and one error type.

    Parameters
    ----------
    base_url : str
        E.g. ``http://localhost:8000/v1``. A ``user:password@`` in it is sent as HTTP Basic auth and never
        shown or logged.
    label : str
        What messages call the caller, e.g. ``judge:Qwen/Qwen2.5-7B-Instruct@http://localhost:8000/v1``
        (URL credentials in it are redacted).
    error : type of KmqError
        The exception every failure is raised as (``JudgeError``, ``GenerationError``).
    api_key_env : str, default "OPENAI_API_KEY"
        Environment variable holding the API key; read when the client is first built.
    max_retries : int, default 5
        Retries the SDK makes after a retryable failure (not after refused connections: those get one).
    timeout : float, default 120.0
        Seconds per HTTP attempt.

    Attributes
    ----------
    url : str
        ``base_url`` with its credentials redacted.
    attempts : int
        HTTP attempts made so far (each retry counts; the preflight connect does not).

    Examples
    --------
    >>> ep = Endpoint("http://localhost:8000/v1", label="judge:m", error=KmqError)  # doctest: +SKIP
    >>> ep.map(lambda q: ep.chat(model="m", messages=[{"role": "user", "content": q}]), ["2+2?"], concurrency=4)
    ['4']  # doctest: +SKIP
    """

    def __init__(
        self,
        base_url: str,
        *,
        label: str,
        error: type[KmqError],
        api_key_env: str = "OPENAI_API_KEY",
        max_retries: int = 5,
        timeout: float = 120.0,
    ) -> None:
        self.base_url = base_url
        self.url = redact_url(base_url)
        self.label = redact_url(label)
        self.error = error
        self.api_key_env = api_key_env
        self.max_retries = max_retries
        self.timeout = timeout
        self.attempts = 0
        self._client: Any = None
        self._key = ""
        self._stop = threading.Event()
        self._local = threading.local()
        self._lock = threading.Lock()

    # -- the client -----------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``openai.OpenAI`` client, built (after the reachability check) on first use."""
        if self._client is None:
            openai = require("openai", purpose=self.label)
            self._check_params()
            self._key = os.environ.get(self.api_key_env, "")
            if not self._key:
                logger.info("$%s is not set: sending no API key (fine for local servers)", self.api_key_env)
            self.check_reachable()
            url, auth = _split_credentials(self.base_url)
            http = _fail_fast_client(openai, self, timeout=self.timeout, auth=auth)
            self._client = openai.OpenAI(
                api_key=self._key or "EMPTY", base_url=url, timeout=self.timeout, max_retries=self.max_retries,
                http_client=http,
            )  # fmt: skip
        return self._client

    def _check_params(self) -> None:
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise InvalidParameterError(
                f"The 'max_retries' parameter of {self.label} must be an int >= 0. Got {self.max_retries!r} instead."
            )
        if not isinstance(self.timeout, (int, float)) or isinstance(self.timeout, bool) or not self.timeout > 0:
            raise InvalidParameterError(
                f"The 'timeout' parameter of {self.label} must be a number of seconds > 0. "
                f"Got {self.timeout!r} instead."
            )

    def _address(self) -> tuple[str, int]:
        parts = urlsplit(self.base_url)
        try:
            port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise InvalidParameterError(
                f"{self.label}: the base URL must look like http(s)://HOST[:PORT]/v1. Got {self.url!r} instead."
            )
        return parts.hostname, port

    def check_reachable(self) -> None:
        """Open (and close) one TCP connection to the URL's host and port; refused or unresolvable fails fast.

        Tried twice, :data:`RETRY_PAUSE` seconds apart. A connect that times out only logs a warning (the
        requests' own timeouts are retried). Skipped when an ``*_proxy`` environment variable applies.
        """
        host, port = self._address()
        if self._proxy() is not None:
            logger.debug("%s: a proxy applies to %s, not checking the connection first", self.label, self.url)
            return
        for attempt in (1, 2):
            try:
                socket.create_connection((host, port), timeout=min(10.0, float(self.timeout))).close()
                return
            except TimeoutError:
                logger.warning("%s: no TCP answer from %s:%d within %.0f s; sending requests anyway",
                               self.label, host, port, min(10.0, float(self.timeout)))  # fmt: skip
                return
            except OSError as err:
                if attempt == 2:
                    raise self._unreachable(err, attempts=2) from err
                time.sleep(RETRY_PAUSE)

    def _proxy(self) -> str | None:
        """The ``*_proxy`` environment variable's URL that applies to this endpoint (httpx honours them), or None."""
        host, _ = self._address()
        proxies = urllib.request.getproxies_environment()
        proxy = proxies.get(urlsplit(self.base_url).scheme.lower()) or proxies.get("all")
        return None if proxy is None or urllib.request.proxy_bypass_environment(host) else proxy

    def _unreachable(self, err: BaseException, *, attempts: int) -> KmqError:
        host, _ = self._address()
        where = "" if self.url in self.label else f" to {self.url}"
        proxy = self._proxy()
        if proxy is not None:
            where += f" through the proxy {redact_url(proxy)}"
            host = urlsplit(proxy).hostname or host
        return self.error(
            f"{self.label}: cannot connect{where} ({connect_reason(err, host)}; tried {attempts} times). "
            "Start the server or fix the URL."
        )

    # -- requests -------------------------------------------------------------------------------------
    def chat(self, *, model: str, messages: list[dict[str, str]], **params: Any) -> str:
        """The first choice's message text of one chat completion (``""`` when the server sends none)."""
        client = self.client
        openai = require("openai", purpose=self.label)
        self._local.attempts = 0
        try:
            resp = client.chat.completions.create(model=model, messages=messages, **params)
        except openai.APIError as err:
            if self._stop.is_set():  # another request of the batch failed first; that one is reported
                raise _Cancelled() from err
            raise self._wrap(openai, err) from err
        if not getattr(resp, "choices", None):
            raise self.error(f"{self.label}: the answer has no choices (model {model!r}). Is it a chat endpoint?")
        return resp.choices[0].message.content or ""

    def _wrap(self, openai: Any, err: Exception) -> KmqError:
        tries = getattr(self._local, "attempts", 0)
        after = f" after {tries} attempts" if tries > 1 else ""
        if isinstance(err, openai.APIStatusError):
            status = err.status_code
            if status in (401, 403):
                return self.error(f"{self.label}: authentication failed (HTTP {status}). "
                                  f"Put the key in ${self.api_key_env}.")  # fmt: skip
            return self.error(f"{self.label}: request failed{after} (HTTP {status}): {self.scrub(str(err))}")
        if isinstance(err, openai.APITimeoutError):
            return self.error(f"{self.label}: request failed{after} (timed out after {self.timeout:g} s). "
                              "Raise the timeout or lower the concurrency.")  # fmt: skip
        cause = _connect_cause(err)
        if cause is not None:
            return self._unreachable(cause, attempts=max(tries, 1))
        if isinstance(err, openai.APIConnectionError):
            return self.error(f"{self.label}: request failed{after} (connection error: "
                              f"{self.scrub(str(_root(err)) or str(err))}).")  # fmt: skip
        return self.error(f"{self.label}: request failed{after} ({type(err).__name__}): {self.scrub(str(err))}")

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, concurrency: int) -> list[R]:
        """``[fn(x) for x in items]`` on ``concurrency`` threads; the first failure cancels the rest and is raised."""
        if not items:
            return []
        self.client  # noqa: B018 -- build it (and check the endpoint) once, before the threads start
        self._stop.clear()

        def guarded(x: T) -> R:
            if self._stop.is_set():
                raise _Cancelled()
            try:
                return fn(x)
            except _Cancelled:
                raise
            except BaseException:
                self._stop.set()  # before this worker takes the next item
                raise

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            futures = [pool.submit(guarded, x) for x in items]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
            finally:  # a failure, or Ctrl-C in this thread: nothing queued may start
                if self._stop.is_set() or not all(f.done() for f in futures):
                    self._stop.set()
                    for f in futures:
                        f.cancel()
            if self._stop.is_set():
                wait(futures)  # those in flight give up at their next attempt
                errors = [f.exception() for f in futures if not f.cancelled() and f.exception() is not None]
                raise next(e for e in errors if not isinstance(e, _Cancelled))
        return [f.result() for f in futures]

    def scrub(self, text: str) -> str:
        """``text`` on one line, at most 300 characters, without the API key or URL credentials."""
        _, auth = _split_credentials(self.base_url)
        secrets = [self._key, *(auth or ())]
        if auth:
            secrets.append(base64.b64encode(":".join(auth).encode()).decode())  # a Basic auth header echoed back
        for secret in secrets:
            if len(secret) >= 4:
                text = text.replace(secret, "***")
        text = " ".join(redact_url(text).split())
        return text if len(text) <= 300 else text[:297] + "..."

    def _count(self) -> None:
        with self._lock:
            self.attempts += 1
        self._local.attempts = getattr(self._local, "attempts", 0) + 1


def _split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without ``user:password@`` and those credentials (sent as HTTP Basic auth, as httpx does).

    Keeping them out of the URL the SDK holds keeps them out of its errors and of httpx's request logs.
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit(parts._replace(netloc=host)), auth


class _Cancelled(Exception):
    """A request given up because another one of the same batch failed (never leaves :meth:`Endpoint.map`)."""


def connect_reason(err: BaseException, host: str = "") -> str:
    """A short reason for a failed connect: ``connection refused``, ``DNS lookup of HOST failed (...)``..."""
    root = _root(err)
    if isinstance(root, ConnectionRefusedError):
        return "connection refused"
    if isinstance(root, socket.gaierror):
        return f"DNS lookup of {host or 'the host'} failed: {root.strerror or root}"
    if isinstance(root, OSError) and root.strerror:
        return root.strerror[:1].lower() + root.strerror[1:]
    return " ".join(str(root).split())[:200] or type(root).__name__


def _root(err: BaseException) -> BaseException:
    seen = {id(err)}
    while (nxt := err.__cause__ or err.__context__) is not None and id(nxt) not in seen:
        seen.add(id(nxt))
        err = nxt
    return err


def _connect_cause(err: BaseException) -> BaseException | None:
    """The refused / unresolvable connect at the root of ``err``, or None (a reset, a timeout, a bad answer)."""
    root = _root(err)
    return root if isinstance(root, (ConnectionRefusedError, socket.gaierror)) else None


def _fail_fast_client(openai: Any, endpoint: Endpoint, **kwargs: Any) -> Any:
    """The SDK's own HTTP client class with a ``send`` that counts attempts and fails fast on dead endpoints."""
    base = openai.DefaultHttpxClient
    httpx = importlib.import_module(next(c for c in base.__mro__ if c.__name__ == "Client").__module__.split(".")[0])

    class FailFastClient(base):
        def send(self, request: Any, **kw: Any) -> Any:
            for attempt in (1, 2):
                if endpoint._stop.is_set():
                    raise openai.APIConnectionError(message="cancelled: another request failed", request=request)
                endpoint._count()
                try:
                    return super().send(request, **kw)
                except httpx.ConnectError as err:
                    if _connect_cause(err) is None:
                        raise  # e.g. a TLS failure or an unreachable network: the SDK retries it
                    if attempt == 2:
                        raise openai.APIConnectionError(message=connect_reason(err), request=request) from err
                    time.sleep(RETRY_PAUSE)
            raise AssertionError("unreachable")

        def __del__(self) -> None:
            if not self.is_closed:
                try:
                    self.close()
                except Exception:  # noqa: S110 -- interpreter shutdown
                    pass

    return FailFastClient(**kwargs)
