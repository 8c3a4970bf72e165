"""An ASGI app served by uvicorn's HTTP/1.1 protocol (h11) on its own thread and event loop, with guards.

Used by the OTLP/HTTP receiver and the Prometheus scrape endpoint. uvicorn (with h11) does the HTTP framing:
``Content-Length`` (validated: digits only, duplicates must agree), chunked bodies, pipelining, HTTP/1.0,
``Expect: 100-continue`` (sent only when the app starts reading the body, so a request refused before that never
sends it), keep-alive, flow control (at most ~64 kB of an unread body is buffered per connection) and a bound on the
request line + header block (h11's 16 kB, then 400). What uvicorn lacks is added here:

* a connection cap (``max_connections``): a connection beyond it is answered ``503`` + ``Retry-After`` and closed,
  counted ``ml.processor.requests.refused{ml.reason=too_many_connections}``;
* a header timeout (``read_header_timeout``): from the connection (after the TLS handshake, which has the same
  timeout) or from the first byte of a kept-alive connection's next request until the headers are complete, else the
  connection is closed, counted ``failed{header_timeout}``; uvicorn has none, so one slow client could hold a
  connection forever (slowloris);
* keep-alive connections idle for ``idle_timeout`` are closed (uvicorn's own ``timeout_keep_alive``);
* 400 answers of the parser are counted ``failed{bad_request}``; TLS handshake failures through the context's
  counting SSL objects (:func:`otel_ml.processor.security.ssl_context`).

The body read timeout and size limits are the app's (it reads the body). :meth:`HttpEndpoint.stop` is graceful:
stop listening, close idle connections, let requests in flight finish until the deadline, then cancel them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from otel_ml.processor.ingest import SelfCounters
from otel_ml.semconv.attributes import FailReason, RefuseReason

_logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_HEADER_BYTES = 16 * 1024
"""Request line + headers; beyond: 400 (h11's bound applies to a header block arriving over several reads; one
arriving in a single read is checked by :func:`headers_too_large`)."""


def headers_too_large(scope: Scope) -> bool:
    """True when the request's header block is larger than :data:`MAX_HEADER_BYTES`."""
    return sum(len(k) + len(v) + 4 for k, v in scope["headers"]) + len(scope.get("raw_path", b"")) > MAX_HEADER_BYTES


class _CountedOnly(logging.Filter):
    """Drops uvicorn's per-request warnings for malformed requests: they are counted (``failed{bad_request}``), and
    logging each would let any client flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


_protocol_logger = logging.getLogger("otel_ml.processor.httpserver.h11")
_protocol_logger.addFilter(_CountedOnly())


@dataclass(frozen=True, slots=True)
class Limits:
    """Connection-level limits of an endpoint."""

    max_connections: int
    read_header_timeout: float
    idle_timeout: float
    retry_after: int = 1


def bind(endpoint: str) -> list[socket.socket]:
    """Listening sockets for ``host:port`` (every address ``host`` resolves to; all on the same port).

    Raises:
        OSError: Nothing could be bound.
    """
    host, port_text = endpoint.rsplit(":", 1)
    host = host.strip("[]") or None  # type: ignore[assignment]
    infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    # IPv4 first (a port 0 is then chosen once and reused for the other addresses)
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    socks: list[socket.socket] = []
    port = int(port_text)
    errors = []
    for family, kind, proto, _, addr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr[0], port, *addr[2:]))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            errors.append(exc)
            continue
        port = sock.getsockname()[1]
        socks.append(sock)
    if not socks:
        raise OSError(f"cannot bind {endpoint}: {errors[0] if errors else 'no address'}")
    return socks


def _busy_response(retry_after: int) -> bytes:
    body = b"too many connections"
    return (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: %d\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (retry_after, len(body), body))


def _protocol_class(limits: Limits, counters: SelfCounters, receiver: str) -> type[H11Protocol]:
    busy = _busy_response(limits.retry_after)

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _seen_cycle: object = None
        _got_bytes = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.logger = _protocol_logger

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                counters.refused(receiver, RefuseReason.TOO_MANY_CONNECTIONS)
                transport.write(busy)
                transport.close()
                return
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._got_bytes = False
            self._header_timer = self.loop.call_later(limits.read_header_timeout, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                if self._got_bytes:  # an idle new connection is closed silently, a slow request is counted
                    counters.failed(receiver, FailReason.HEADER_TIMEOUT)
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if idle and self._header_timer is None:
                self._arm()  # the first byte of the next request on a kept-alive connection
            if idle:
                self._got_bytes = True
            super().data_received(data)
            if self.cycle is not None and self.cycle is not self._seen_cycle:
                self._seen_cycle = self.cycle  # the headers are complete: the app reads the body with its timeout
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            counters.failed(receiver, FailReason.BAD_REQUEST)
            self._disarm()
            super().send_400_response(msg)

    return GuardedH11Protocol


class HttpEndpoint:
    """One listening endpoint serving ``app`` (see the module docstring)."""

    def __init__(self, app: ASGIApp, endpoint: str, *, name: str, receiver: str, limits: Limits,
                 counters: SelfCounters, ssl_context: ssl.SSLContext | None = None) -> None:
        self.endpoint = endpoint
        self.name = name
        self.ssl_context = ssl_context
        self.limits = limits
        self._config = Config(app, http=_protocol_class(limits, counters, receiver), lifespan="off",
                              log_config=None, access_log=False, proxy_headers=False, server_header=False,
                              date_header=False, timeout_keep_alive=int(max(limits.idle_timeout, 1)),
                              h11_max_incomplete_event_size=MAX_HEADER_BYTES, interface="asgi3")
        self._config.load()
        self._state = ServerState()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._deadline = 0.0
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.base_events.Server] = []
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = 0
        self.drained = True

    @property
    def tasks_in_flight(self) -> int:
        """Requests being served (tests)."""
        return len(self._state.tasks)

    def start(self) -> HttpEndpoint:
        """Bind (in the caller's thread, so errors surface here) and serve on a daemon thread.

        Raises:
            OSError: The endpoint cannot be bound.
        """
        sockets = bind(self.endpoint)
        self.port = sockets[0].getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sockets,), name=f"otel-ml-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise OSError(f"cannot serve {self.endpoint}: {self._error}") from self._error
        return self

    def _run(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(sockets))
        except BaseException as exc:  # surfaced by start() or logged
            self._error = exc
            self._ready.set()
            _logger.exception("%s server stopped on an error", self.name)
        finally:
            for sock in sockets:
                sock.close()
            loop.close()

    async def _serve(self, sockets: list[socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config, state = self._config, self._state

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(config=config, server_state=state, app_state={},  # type: ignore[call-arg]
                                              _loop=loop)

        for sock in sockets:
            self._servers.append(await loop.create_server(
                protocol, sock=sock, ssl=self.ssl_context, backlog=1024,
                ssl_handshake_timeout=self.limits.read_header_timeout if self.ssl_context else None))
        self._ready.set()
        await self._stop.wait()
        for server in self._servers:
            server.close()
        for connection in list(state.connections):
            connection.shutdown()  # idle: closed now; busy: closed after its response
        while state.tasks and time.monotonic() < self._deadline:
            await asyncio.sleep(0.02)
        self.drained = not state.tasks
        for task in list(state.tasks):
            task.cancel()
        if state.tasks:
            await asyncio.wait(list(state.tasks), timeout=1.0)
        for connection in list(state.connections):
            connection.transport.close()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop listening and drain for up to ``timeout`` seconds; True when no request had to be cancelled."""
        if self._loop is None or self._stop is None or self._thread is None:
            return True
        self._deadline = time.monotonic() + max(timeout, 0.0)
        try:
            self._loop.call_soon_threadsafe(self._stop.set)
        except RuntimeError:  # loop already closed
            return True
        self._thread.join(timeout + 2.0)
        return self.drained and not self._thread.is_alive()
