"""The Prometheus scrape endpoint (``metrics.prometheus``): ``GET /metrics`` with optional TLS and bearer or basic
auth, served by :class:`otel_ml.processor.httpserver.HttpEndpoint` (same HTTP layer, limits and counters as the
OTLP/HTTP receiver: ``ml.receiver=prometheus``). Prometheus scrapes it with ``authorization: {credentials_file}`` or
``basic_auth`` and ``tls_config: {ca_file}``.
"""

from __future__ import annotations

from typing import Any

from otel_ml.processor.aggregates import Aggregates
from otel_ml.processor.config import HttpReceiverConfig, ProcessorConfig
from otel_ml.processor.httpserver import HttpEndpoint, Limits, Receive, Scope, Send, headers_too_large
from otel_ml.processor.ingest import SelfCounters
from otel_ml.processor.security import Authenticator, ssl_context
from otel_ml.semconv.attributes import FailReason, Receiver

METRICS_PATH = "/metrics"
_RECEIVER = Receiver.PROMETHEUS


class ScrapeApp:
    """ASGI app: ``/metrics`` from ``registry`` (prometheus_client), after authentication."""

    def __init__(self, registry: Any, counters: SelfCounters, auth: Authenticator | None = None) -> None:
        from prometheus_client import make_asgi_app

        self._metrics = make_asgi_app(registry)
        self._counters = counters
        self._auth = auth

    async def _plain(self, send: Send, status: int, text: bytes,
                     extra: list[tuple[bytes, bytes]] | None = None) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(text)).encode()), *(extra or [])]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if headers_too_large(scope):
            self._counters.failed(_RECEIVER, FailReason.BAD_REQUEST)
            await self._plain(send, 431, b"request header fields too large", [(b"connection", b"close")])
            return
        if scope["path"] != METRICS_PATH:
            self._counters.failed(_RECEIVER, FailReason.NOT_FOUND)
            await self._plain(send, 404, b"not found: GET /metrics")
            return
        if scope["method"] not in ("GET", "HEAD"):
            self._counters.failed(_RECEIVER, FailReason.METHOD_NOT_ALLOWED)
            await self._plain(send, 405, b"method not allowed: GET /metrics", [(b"allow", b"GET, HEAD")])
            return
        if self._auth is not None:
            value = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            reason = self._auth.check(value)
            if reason is not None:
                self._counters.auth_failure(_RECEIVER, reason)
                challenge = b'Basic realm="otel-ml"' if self._auth.scheme == "Basic" else b'Bearer realm="otel-ml"'
                await self._plain(send, 401, reason.encode(), [(b"www-authenticate", challenge),
                                                               (b"connection", b"close")])
                return
        await self._metrics(scope, receive, send)


def scrape_endpoint(config: ProcessorConfig, aggregates: Aggregates, registry: Any = None) -> HttpEndpoint:
    """The (not yet started) endpoint of ``metrics.prometheus``, with the HTTP receiver's connection limits.

    Raises:
        OSError: A TLS file cannot be read.
    """
    from prometheus_client import REGISTRY

    prom = config.metrics.prometheus
    assert prom is not None
    counters = SelfCounters(aggregates)
    http = config.receiver.http or HttpReceiverConfig()
    limits = Limits(max_connections=http.max_connections, read_header_timeout=http.read_header_timeout,
                    idle_timeout=http.idle_timeout, retry_after=config.receiver.retry_after)
    tls = ssl_context(prom.tls, lambda reason: counters.auth_failure(_RECEIVER, reason)) if prom.tls else None
    app = ScrapeApp(registry if registry is not None else REGISTRY, counters,
                    Authenticator(prom.auth) if prom.auth is not None else None)
    return HttpEndpoint(app, prom.endpoint, name="prometheus", receiver=_RECEIVER, limits=limits, counters=counters,
                        ssl_context=tls)
