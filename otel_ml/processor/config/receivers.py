"""The ``receiver:`` section: OTLP/gRPC and OTLP/HTTP endpoints, request bounds, and the server TLS and
client auth settings (``tls:``, ``auth:``) every listening endpoint uses (the scrape endpoint too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from otel_ml.processor.config.validation import ConfigError, _file, _host_port, _int, _mapping, _section, parse_duration

DEFAULT_GRPC_ENDPOINT: Final = "localhost:4317"
DEFAULT_HTTP_ENDPOINT: Final = "localhost:4318"
DEFAULT_MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
DEFAULT_MAX_INFLIGHT_REQUESTS: Final = 8
DEFAULT_RETRY_AFTER_S: Final = 1
DEFAULT_MAX_CONNECTIONS: Final = 256
DEFAULT_READ_HEADER_TIMEOUT_S: Final = 10.0
DEFAULT_READ_TIMEOUT_S: Final = 60.0
DEFAULT_IDLE_TIMEOUT_S: Final = 60.0
DEFAULT_TLS_MIN_VERSION: Final = "1.2"
TLS_VERSIONS: Final = ("1.2", "1.3")


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """Server TLS of an endpoint (``tls:``), keys as in the collector's ``configtls`` server settings."""

    cert_file: str
    key_file: str
    client_ca_file: str | None = None
    """When set, clients must present a certificate signed by one of these CAs (mTLS)."""
    min_version: str = DEFAULT_TLS_MIN_VERSION
    reload_interval: float | None = None
    """Re-read the certificate files (when changed) at most this often; None: read once at start."""


@dataclass(frozen=True, slots=True)
class BasicAuthConfig:
    """HTTP basic auth of the Prometheus scrape endpoint (``auth.basic``)."""

    username: str
    password: str | None = None
    password_file: str | None = None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """Client authentication of an endpoint (``auth:``): bearer tokens like the collector's ``bearertokenauth``.

    ``bearer_token_file`` holds one or more tokens, one per line (to rotate: add the new token, move the senders,
    remove the old one); it is re-read when it changes. ``basic`` is accepted on the scrape endpoint only.
    """

    bearer_token: str | None = None
    bearer_token_file: str | None = None
    basic: BasicAuthConfig | None = None


@dataclass(frozen=True, slots=True)
class GrpcReceiverConfig:
    """OTLP/gRPC receiver (``receiver.grpc``)."""

    endpoint: str = DEFAULT_GRPC_ENDPOINT
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS


@dataclass(frozen=True, slots=True)
class HttpReceiverConfig:
    """OTLP/HTTP receiver (``receiver.http``); the timeouts and connection cap also bound the scrape endpoint."""

    endpoint: str = DEFAULT_HTTP_ENDPOINT
    tls: TlsConfig | None = None
    auth: AuthConfig | None = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    read_header_timeout: float = DEFAULT_READ_HEADER_TIMEOUT_S
    read_timeout: float = DEFAULT_READ_TIMEOUT_S
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class ReceiverConfig:
    """OTLP receivers (``receiver:``)."""

    grpc: GrpcReceiverConfig | None = field(default_factory=GrpcReceiverConfig)
    http: HttpReceiverConfig | None = field(default_factory=HttpReceiverConfig)
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_inflight_requests: int = DEFAULT_MAX_INFLIGHT_REQUESTS
    retry_after: int = DEFAULT_RETRY_AFTER_S

    @property
    def grpc_endpoint(self) -> str | None:
        """``receiver.grpc.endpoint``, None when the gRPC receiver is disabled."""
        return self.grpc.endpoint if self.grpc is not None else None

    @property
    def http_endpoint(self) -> str | None:
        """``receiver.http.endpoint``, None when the HTTP receiver is disabled."""
        return self.http.endpoint if self.http is not None else None


def _tls(value: Any, key: str, *, grpc: bool = False) -> TlsConfig | None:
    ex = (f"{key}: {{cert_file: /etc/otel-ml/tls/tls.crt, key_file: /etc/otel-ml/tls/tls.key, "
          f"client_ca_file: /etc/otel-ml/tls/ca.crt, min_version: \"1.2\", reload_interval: 1h}}")
    if value is None:
        return None
    t = _mapping(value, key, {"cert_file", "key_file", "client_ca_file", "min_version", "reload_interval"}, ex)
    for required in ("cert_file", "key_file"):
        if required not in t:
            raise ConfigError(f"{key}.{required}", "required when tls is set", ex)
    version = str(t.get("min_version", DEFAULT_TLS_MIN_VERSION))
    if version not in TLS_VERSIONS:
        raise ConfigError(f"{key}.min_version", f"expected one of {', '.join(TLS_VERSIONS)}, got {version!r}", ex)
    if grpc and version != "1.2":
        # grpcio's Python API has no TLS version setting; grpc core negotiates 1.2 or 1.3 and refuses older ones
        raise ConfigError(f"{key}.min_version", "the gRPC receiver cannot require 1.3 (grpcio has no TLS version "
                          "setting; it always refuses TLS < 1.2)", ex)
    reload = t.get("reload_interval")
    return TlsConfig(
        cert_file=_file(t["cert_file"], f"{key}.cert_file", ex), key_file=_file(t["key_file"], f"{key}.key_file", ex),
        client_ca_file=(_file(t["client_ca_file"], f"{key}.client_ca_file", ex)
                        if t.get("client_ca_file") is not None else None),
        min_version=version,
        reload_interval=parse_duration(reload, f"{key}.reload_interval", ex) if reload is not None else None)


def _auth(value: Any, key: str, *, basic: bool = False) -> AuthConfig | None:
    ex = f"{key}: {{bearer_token_file: /etc/otel-ml/token}}"
    if value is None:
        return None
    allowed = {"bearer_token", "bearer_token_file"} | ({"basic"} if basic else set())
    t = _mapping(value, key, allowed, ex)
    given = [k for k in sorted(allowed) if t.get(k) is not None]
    if len(given) != 1:
        raise ConfigError(key, f"set exactly one of {', '.join(sorted(allowed))} (got {given or 'none'})", ex)
    if "bearer_token" in given:
        token = t["bearer_token"]
        if not isinstance(token, str) or not token.strip() or token != token.strip():
            raise ConfigError(f"{key}.bearer_token", "expected a non-empty token without surrounding spaces", ex)
        return AuthConfig(bearer_token=token)
    if "bearer_token_file" in given:
        return AuthConfig(bearer_token_file=_file(t["bearer_token_file"], f"{key}.bearer_token_file", ex))
    bex = f"{key}: {{basic: {{username: prometheus, password_file: /etc/otel-ml/scrape-password}}}}"
    b = _mapping(t["basic"], f"{key}.basic", {"username", "password", "password_file"}, bex)
    user = b.get("username")
    if not isinstance(user, str) or not user or ":" in user:
        raise ConfigError(f"{key}.basic.username", f"expected a user name without ':', got {user!r}", bex)
    if (b.get("password") is None) == (b.get("password_file") is None):
        raise ConfigError(f"{key}.basic", "set exactly one of password, password_file", bex)
    if b.get("password") is not None:
        if not isinstance(b["password"], str) or not b["password"]:
            raise ConfigError(f"{key}.basic.password", "expected a non-empty string", bex)
        return AuthConfig(basic=BasicAuthConfig(user, password=b["password"]))
    return AuthConfig(basic=BasicAuthConfig(user, password_file=_file(b["password_file"],
                                                                      f"{key}.basic.password_file", bex)))


def _grpc_receiver(section: Mapping[str, Any], example: str) -> GrpcReceiverConfig | None:
    if "grpc" not in section:
        return GrpcReceiverConfig()
    if section["grpc"] is None:
        return None
    g = _mapping(section["grpc"], "receiver.grpc", {"endpoint", "tls", "auth", "max_connections"}, example)
    return GrpcReceiverConfig(
        endpoint=_host_port(g.get("endpoint", DEFAULT_GRPC_ENDPOINT), "receiver.grpc.endpoint", example),
        tls=_tls(g.get("tls"), "receiver.grpc.tls", grpc=True), auth=_auth(g.get("auth"), "receiver.grpc.auth"),
        max_connections=_int(g.get("max_connections", DEFAULT_MAX_CONNECTIONS), "receiver.grpc.max_connections",
                             "receiver: {grpc: {max_connections: 256}}"))


def _http_receiver(section: Mapping[str, Any], example: str) -> HttpReceiverConfig | None:
    if "http" not in section:
        return HttpReceiverConfig()
    if section["http"] is None:
        return None
    h = _mapping(section["http"], "receiver.http", {"endpoint", "tls", "auth", "max_connections",
                                                    "read_header_timeout", "read_timeout", "idle_timeout"}, example)
    return HttpReceiverConfig(
        endpoint=_host_port(h.get("endpoint", DEFAULT_HTTP_ENDPOINT), "receiver.http.endpoint", example),
        tls=_tls(h.get("tls"), "receiver.http.tls"), auth=_auth(h.get("auth"), "receiver.http.auth"),
        max_connections=_int(h.get("max_connections", DEFAULT_MAX_CONNECTIONS), "receiver.http.max_connections",
                             "receiver: {http: {max_connections: 256}}"),
        read_header_timeout=parse_duration(h.get("read_header_timeout", DEFAULT_READ_HEADER_TIMEOUT_S),
                                           "receiver.http.read_header_timeout",
                                           "receiver: {http: {read_header_timeout: 10s}}"),
        read_timeout=parse_duration(h.get("read_timeout", DEFAULT_READ_TIMEOUT_S), "receiver.http.read_timeout",
                                    "receiver: {http: {read_timeout: 60s}}"),
        idle_timeout=parse_duration(h.get("idle_timeout", DEFAULT_IDLE_TIMEOUT_S), "receiver.http.idle_timeout",
                                    "receiver: {http: {idle_timeout: 60s}}"),
    )


def _receiver(raw: Mapping[str, Any]) -> ReceiverConfig:
    ex = "receiver: {grpc: {endpoint: 0.0.0.0:4317}, http: null, max_request_bytes: 16777216}"
    s = _section(raw, "receiver", {"grpc", "http", "max_request_bytes", "max_inflight_requests", "retry_after"}, ex)
    return ReceiverConfig(
        grpc=_grpc_receiver(s, ex),
        http=_http_receiver(s, ex),
        max_request_bytes=_int(s.get("max_request_bytes", DEFAULT_MAX_REQUEST_BYTES), "receiver.max_request_bytes",
                               ex, 1024),
        max_inflight_requests=_int(s.get("max_inflight_requests", DEFAULT_MAX_INFLIGHT_REQUESTS),
                                   "receiver.max_inflight_requests", "receiver: {max_inflight_requests: 8}"),
        retry_after=_int(s.get("retry_after", DEFAULT_RETRY_AFTER_S), "receiver.retry_after",
                         "receiver: {retry_after: 1}"),
    )
