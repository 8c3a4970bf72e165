"""Configuration of the export queue: explicit arguments, then the standard ``OTEL_*`` environment variables.

Environment variables read (OpenTelemetry specification names):

| variable | meaning | default |
|---|---|---|
| ``OTEL_SDK_DISABLED`` | ``true`` turns otel-ml into a no-op | ``false`` |
| ``OTEL_EXPORTER_OTLP_ENDPOINT`` | base URL; HTTP appends ``/v1/logs`` and ``/v1/metrics`` | none (no-op) |
| ``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` / ``..._METRICS_ENDPOINT`` | full URL per signal | derived from the above |
| ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``..._LOGS_PROTOCOL`` wins) | ``grpc`` or ``http/protobuf`` | ``http/protobuf`` |
| ``OTEL_EXPORTER_OTLP_HEADERS`` (``..._LOGS_HEADERS`` wins) | ``k=v,k2=v2`` (URL-encoded values) | none |
| ``OTEL_EXPORTER_OTLP_COMPRESSION`` (``..._LOGS_COMPRESSION`` wins) | ``gzip`` or ``none`` | ``none`` |
| ``OTEL_EXPORTER_OTLP_TIMEOUT`` | export timeout in ms | ``10000`` |
| ``OTEL_EXPORTER_OTLP_CERTIFICATE`` (``..._LOGS_CERTIFICATE`` wins) | CA bundle for ``https`` endpoints | system CAs |
| ``OTEL_METRIC_EXPORT_INTERVAL`` | metric export interval in ms | ``60000`` |
| ``OTEL_METRICS_EXPORTER`` | ``none`` turns the ``ml.client.*`` metrics off (events still flow) | on |
| ``OTEL_BLRP_SCHEDULE_DELAY`` | longest wait before queued events are exported, ms | ``1000`` |
| ``OTEL_BLRP_MAX_QUEUE_SIZE`` | bound of the event queue | ``8192`` |
| ``OTEL_BLRP_MAX_EXPORT_BATCH_SIZE`` | most events per export request | ``512`` |
| ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` | resource (when the app configured none) | SDK defaults |

A value that does not parse is logged as a warning and the default is used (as the OpenTelemetry SDK does); explicit
arguments to :func:`otel_ml.configure` that are invalid raise :class:`~otel_ml.ConfigurationError`.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypedDict, Unpack

from otel_ml.instrumentation.errors import ConfigurationError

_logger = logging.getLogger(__name__)

PROTOCOLS: Final = ("grpc", "http/protobuf", "console")
MODES: Final = ("otlp", "sdk", "noop")
COMPRESSIONS: Final = ("gzip", "none")
DEFAULT_GRPC_ENDPOINT: Final = "http://localhost:4317"
DEFAULT_HTTP_ENDPOINT: Final = "http://localhost:4318"
DEFAULT_QUEUE_SIZE: Final = 8192
DEFAULT_BATCH_SIZE: Final = 512
DEFAULT_SCHEDULE_DELAY_S: Final = 1.0
DEFAULT_METRIC_INTERVAL_S: Final = 60.0
DEFAULT_TIMEOUT_S: Final = 10.0
DEFAULT_SHUTDOWN_TIMEOUT_S: Final = 5.0
DEFAULT_MAX_RETRY_S: Final = 30.0


@dataclass(slots=True)
class Settings:
    """Resolved export settings (see the module docstring for defaults).

    Attributes:
        mode: ``otlp`` (the fast path: own encoder and exporter), ``sdk`` (events through the app's
            LoggerProvider, metrics through its MeterProvider) or ``noop``.
        protocol: ``grpc``, ``http/protobuf`` or ``console`` (prints decoded events to stdout).
        logs_endpoint: Full URL of the logs export (HTTP: ``.../v1/logs``; gRPC: ``http(s)://host:port``).
        metrics_endpoint: Full URL of the metrics export.
        headers: Extra request headers / gRPC metadata.
        certificate_file: PEM file of the CA(s) trusted for ``https`` endpoints (default: the system's).
        compression: ``gzip`` or ``none``.
        timeout_s: Deadline of one export attempt.
        max_retry_s: Longest time one batch is retried before it is dropped (``export_failed``).
        queue_size: Bound of the event queue; beyond it new events are dropped (``queue_full``).
        batch_size: Most events per export request.
        schedule_delay_s: Longest time an event waits in the queue before export.
        metric_interval_s: Interval of the in-process metrics export (cumulative temporality).
        client_metrics: Export the ``ml.client.*`` metrics (``otlp`` mode; ``sdk`` mode records them on the app's
            MeterProvider, whose readers decide).
        shutdown_timeout_s: Longest time :func:`otel_ml.shutdown` (and the ``atexit`` hook) waits.
        resource: Resource attributes of every export.
        transport: A transport object replacing the OTLP exporter (tests, examples).
        logger_provider: LoggerProvider of ``sdk`` mode (default: the global one).
        meter_provider: MeterProvider of ``sdk`` mode (default: the global one).
        generated_instance_id: ``service.instance.id`` was not set explicitly (renewed in a forked child).
    """

    mode: str = "noop"
    protocol: str = "http/protobuf"
    logs_endpoint: str = ""
    metrics_endpoint: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    certificate_file: str | None = None
    compression: str = "none"
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retry_s: float = DEFAULT_MAX_RETRY_S
    queue_size: int = DEFAULT_QUEUE_SIZE
    batch_size: int = DEFAULT_BATCH_SIZE
    schedule_delay_s: float = DEFAULT_SCHEDULE_DELAY_S
    metric_interval_s: float = DEFAULT_METRIC_INTERVAL_S
    client_metrics: bool = True
    shutdown_timeout_s: float = DEFAULT_SHUTDOWN_TIMEOUT_S
    resource: dict[str, Any] = field(default_factory=dict)
    transport: Any = None
    logger_provider: Any = None
    meter_provider: Any = None
    generated_instance_id: bool = False


def _env(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value and value.strip() else None


def _signal_env(signal: str, suffix: str) -> str | None:
    return _env(f"OTEL_EXPORTER_OTLP_{signal}_{suffix}") or _env(f"OTEL_EXPORTER_OTLP_{suffix}")


def _env_choice(name: str, value: str | None, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if value.lower() in choices:
        return value.lower()
    _logger.warning("otel-ml: invalid %s=%r (expected one of %s); using %r", name, value, choices, default)
    return default


def _env_number(name: str, default: float, scale: float = 1.0, minimum: float = 0.0) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw) * scale
        if value < minimum or value != value:
            raise ValueError(raw)
        return value
    except ValueError:
        _logger.warning("otel-ml: invalid %s=%r (expected a number >= %s); using %s", name, raw, minimum, default)
        return default


def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED`` is true."""
    return (_env("OTEL_SDK_DISABLED") or "").lower() == "true"


def parse_headers(raw: str | None, name: str = "OTEL_EXPORTER_OTLP_HEADERS") -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (W3C baggage-like, URL-encoded values); malformed items are warned about and skipped."""
    out: dict[str, str] = {}
    if not raw:
        return out
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _logger.warning("otel-ml: ignoring malformed header %r in %s", item, name)
            continue
        out[urllib.parse.unquote(key.strip()).lower()] = urllib.parse.unquote(value.strip())
    return out


def _join_http(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


def _check_url(name: str, url: str) -> str | None:
    parsed = urllib.parse.urlsplit(url if "://" in url else "http://" + url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        _logger.warning("otel-ml: invalid %s=%r (expected http(s)://host:port); ignoring it", name, url)
        return None
    return url if "://" in url else "http://" + url


def endpoint_from_env() -> bool:
    """Whether any OTLP endpoint is configured in the environment."""
    return any(_env(n) for n in (
        "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))


def resolve_endpoints(settings: Settings, endpoint: str | None) -> None:
    """Fill ``logs_endpoint`` / ``metrics_endpoint`` from ``endpoint`` (a base URL) or the environment."""
    http = settings.protocol == "http/protobuf"
    default = DEFAULT_HTTP_ENDPOINT if http else DEFAULT_GRPC_ENDPOINT
    for signal, path in (("LOGS", "v1/logs"), ("METRICS", "v1/metrics")):
        url: str | None = None
        if endpoint is not None:
            url = _join_http(endpoint, path) if http else endpoint
        else:
            specific = _env(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
            generic = _env("OTEL_EXPORTER_OTLP_ENDPOINT")
            if specific:
                url = _check_url(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", specific)
            if url is None and generic:
                base = _check_url("OTEL_EXPORTER_OTLP_ENDPOINT", generic)
                if base:
                    url = _join_http(base, path) if http else base
        if url is None:
            url = _join_http(default, path) if http else default
        if signal == "LOGS":
            settings.logs_endpoint = url
        else:
            settings.metrics_endpoint = url


def global_resource() -> dict[str, Any] | None:
    """Attributes of the resource the application configured on its global SDK logger or tracer provider, if any.

    Read through the providers' public ``resource`` property (the SDK's ``LoggerProvider`` and ``TracerProvider``
    have one; its ``MeterProvider`` has none: an app that configured only metrics passes ``resource=`` or the
    ``OTEL_*`` variables).
    """
    from opentelemetry import trace

    from otel_ml.compat import logs_api

    logs = logs_api()
    getters = [trace.get_tracer_provider]
    if logs is not None:
        getters.insert(0, logs.get_logger_provider)
    for getter in getters:
        try:
            res = getattr(getter(), "resource", None)
            attrs = getattr(res, "attributes", None)
        except Exception:  # a broken provider must not break configuration
            continue
        if attrs:
            return dict(attrs)
    return None


def parse_resource_attributes(raw: str | None) -> dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES`` (``k=v,k2=v2``, percent-encoded values); malformed items warned about, skipped."""
    out: dict[str, str] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _logger.warning("otel-ml: ignoring malformed item %r in OTEL_RESOURCE_ATTRIBUTES", item)
            continue
        out[key.strip()] = urllib.parse.unquote(value.strip())
    return out


def default_resource() -> dict[str, Any]:
    """The resource from the environment, as the OpenTelemetry SDK builds it: ``OTEL_RESOURCE_ATTRIBUTES``, then
    ``OTEL_SERVICE_NAME`` (which wins for ``service.name``), default ``service.name=unknown_service``."""
    attrs: dict[str, Any] = {"telemetry.sdk.language": "python", "service.name": "unknown_service"}
    attrs.update(parse_resource_attributes(_env("OTEL_RESOURCE_ATTRIBUTES")))
    service = _env("OTEL_SERVICE_NAME")
    if service:
        attrs["service.name"] = service
    return attrs


def normalize_resource(resource: Any) -> dict[str, Any]:
    """Resource attributes from an SDK ``Resource`` or a mapping."""
    if resource is None:
        return {}
    attrs = getattr(resource, "attributes", resource)
    if not isinstance(attrs, Mapping):
        raise ConfigurationError(
            f"resource must be a mapping or an SDK Resource, got {type(resource).__name__}; "
            "example: otel_ml.configure(resource={'service.name': 'fraud-api'})")
    return dict(attrs)


def with_instance_id(attrs: dict[str, Any]) -> dict[str, Any]:
    """Add a per-process ``service.instance.id`` when absent, so that cumulative series of processes never collide."""
    if "service.instance.id" not in attrs:
        attrs = {**attrs, "service.instance.id": str(uuid.uuid4())}
    return attrs


class Options(TypedDict, total=False):
    """Keyword arguments of :func:`otel_ml.configure` (documented there); omitted or ``None``: environment/default."""

    endpoint: str | None
    protocol: str | None
    headers: Mapping[str, str] | None
    compression: str | None
    timeout: float | None
    resource: Any
    mode: str | None
    queue_size: int | None
    batch_size: int | None
    schedule_delay: float | None
    metric_interval: float | None
    shutdown_timeout: float | None
    max_retry: float | None
    transport: Any
    logger_provider: Any
    meter_provider: Any
    certificate_file: str | None
    client_metrics: bool | None


OPTION_NAMES: Final = frozenset(Options.__optional_keys__)


def build_settings(*, explicit: bool = True, **options: Unpack[Options]) -> Settings:
    """Resolve settings from explicit arguments (validated, raising) over the environment (warning, defaulting).

    Raises:
        TypeError: An unknown option name (as for any keyword argument).
        ConfigurationError: An invalid option value.
    """
    unknown = options.keys() - OPTION_NAMES
    if unknown:
        raise TypeError(f"otel_ml.configure() got unexpected keyword arguments {sorted(unknown)}; "
                        f"valid ones: {sorted(OPTION_NAMES)}")
    o = options
    endpoint, protocol, compression, mode = o.get("endpoint"), o.get("protocol"), o.get("compression"), o.get("mode")
    queue_size, batch_size, timeout = o.get("queue_size"), o.get("batch_size"), o.get("timeout")
    schedule_delay, max_retry, metric_interval = o.get("schedule_delay"), o.get("max_retry"), o.get("metric_interval")
    shutdown_timeout, headers, certificate_file = o.get("shutdown_timeout"), o.get("headers"), o.get("certificate_file")
    transport, logger_provider = o.get("transport"), o.get("logger_provider")
    s = Settings()
    if protocol is not None and protocol not in PROTOCOLS:
        raise ConfigurationError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}; "
                                 "example: otel_ml.configure(endpoint='http://127.0.0.1:4317', protocol='grpc')")
    if mode is not None and mode not in MODES:
        raise ConfigurationError(f"mode must be one of {MODES}, got {mode!r}; example: otel_ml.configure(mode='sdk')")
    if compression is not None and compression not in COMPRESSIONS:
        raise ConfigurationError(f"compression must be one of {COMPRESSIONS}, got {compression!r}; "
                                 "example: otel_ml.configure(compression='gzip')")
    for name, count in (("queue_size", queue_size), ("batch_size", batch_size)):
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
            raise ConfigurationError(f"{name} must be a positive int, got {count!r}; "
                                     f"example: otel_ml.configure({name}=1024)")
    for name, value in (("timeout", timeout), ("schedule_delay", schedule_delay), ("max_retry", max_retry),
                        ("metric_interval", metric_interval), ("shutdown_timeout", shutdown_timeout)):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise ConfigurationError(f"{name} must be a non-negative number of seconds, got {value!r}; "
                                     f"example: otel_ml.configure({name}=5.0)")
    if endpoint is not None and _check_url("endpoint", endpoint) is None:
        raise ConfigurationError(f"endpoint must be an http(s)://host:port URL, got {endpoint!r}; "
                                 "example: otel_ml.configure(endpoint='http://127.0.0.1:4318')")

    s.protocol = protocol or _env_choice(
        "OTEL_EXPORTER_OTLP_PROTOCOL", _signal_env("LOGS", "PROTOCOL"), ("grpc", "http/protobuf"), "http/protobuf")
    s.compression = compression or _env_choice(
        "OTEL_EXPORTER_OTLP_COMPRESSION", _signal_env("LOGS", "COMPRESSION"), COMPRESSIONS, "none")
    s.headers = parse_headers(_signal_env("LOGS", "HEADERS"))
    if headers is not None:
        s.headers = {str(k).lower(): str(v) for k, v in headers.items()}
    s.certificate_file = certificate_file or _signal_env("LOGS", "CERTIFICATE")
    if s.certificate_file is not None and not os.path.isfile(s.certificate_file):
        if certificate_file is not None:
            raise ConfigurationError(f"certificate_file {certificate_file!r} does not exist; "
                                     "example: otel_ml.configure(certificate_file='/etc/ssl/certs/ca.pem')")
        _logger.warning("otel-ml: OTEL_EXPORTER_OTLP_CERTIFICATE=%r does not exist; using the system CAs",
                        s.certificate_file)
        s.certificate_file = None
    s.timeout_s = timeout if timeout is not None else _env_number(
        "OTEL_EXPORTER_OTLP_TIMEOUT", DEFAULT_TIMEOUT_S * 1000, 1.0) / 1000.0
    s.queue_size = queue_size or int(_env_number("OTEL_BLRP_MAX_QUEUE_SIZE", DEFAULT_QUEUE_SIZE, minimum=1))
    s.batch_size = batch_size or int(_env_number("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", DEFAULT_BATCH_SIZE, minimum=1))
    s.schedule_delay_s = schedule_delay if schedule_delay is not None else _env_number(
        "OTEL_BLRP_SCHEDULE_DELAY", DEFAULT_SCHEDULE_DELAY_S * 1000) / 1000.0
    s.metric_interval_s = metric_interval if metric_interval is not None else _env_number(
        "OTEL_METRIC_EXPORT_INTERVAL", DEFAULT_METRIC_INTERVAL_S * 1000, minimum=1) / 1000.0
    s.shutdown_timeout_s = DEFAULT_SHUTDOWN_TIMEOUT_S if shutdown_timeout is None else float(shutdown_timeout)
    s.max_retry_s = DEFAULT_MAX_RETRY_S if max_retry is None else float(max_retry)
    client_metrics = o.get("client_metrics")
    if client_metrics is not None and not isinstance(client_metrics, bool):
        raise ConfigurationError(f"client_metrics must be True or False, got {client_metrics!r}; "
                                 "example: otel_ml.configure(client_metrics=False)")
    s.client_metrics = client_metrics if client_metrics is not None else (
        (_env("OTEL_METRICS_EXPORTER") or "").lower() != "none")
    s.transport = transport
    s.logger_provider = logger_provider
    s.meter_provider = o.get("meter_provider")
    resolve_endpoints(s, endpoint)

    if mode is not None:
        s.mode = mode
    elif logger_provider is not None:
        s.mode = "sdk"
    elif explicit or transport is not None or endpoint_from_env():
        s.mode = "otlp"
    else:
        s.mode = "noop"
    if sdk_disabled():
        s.mode = "noop"

    explicit_resource = normalize_resource(o.get("resource"))
    base = explicit_resource or global_resource() or default_resource()
    # An id nobody chose explicitly (ours, or the SDK's per-process default) is renewed in a forked child, so that
    # the cumulative series of pre-forked workers never collide.
    s.generated_instance_id = ("service.instance.id" not in explicit_resource
                               and "service.instance.id" not in (_env("OTEL_RESOURCE_ATTRIBUTES") or ""))
    s.resource = with_instance_id(base)
    return s
