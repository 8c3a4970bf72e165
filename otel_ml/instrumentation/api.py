"""Process-wide setup: :func:`configure`, :func:`force_flush`, :func:`shutdown`.

Usage::

    import otel_ml
    otel_ml.configure(endpoint="http://collector:4318")              # OTLP/HTTP protobuf, the fast path
    otel_ml.configure(endpoint="http://collector:4317", protocol="grpc", compression="gzip")
    otel_ml.configure(mode="sdk")                                     # through the app's own Logger/MeterProvider
    otel_ml.configure(protocol="console")                             # print events (examples, debugging)

Without any ``configure`` call, otel-ml configures itself at the first event from the standard ``OTEL_*``
environment variables (see :mod:`otel_ml.instrumentation.config`); with no OTLP endpoint in the environment it is a
silent no-op (about the cost of generating the prediction id), even when the application installed SDK providers:
to emit through them, call ``configure(mode="sdk")``. In ``otlp`` mode the resource of the application's global SDK
provider (logger, tracer or meter) is reused when there is one.
"""

from __future__ import annotations

from typing import Unpack

from otel_ml.instrumentation.config import Options, build_settings
from otel_ml.instrumentation.export_queue import NoopExportQueue
from otel_ml.instrumentation.factory import make_export_queue
from otel_ml.instrumentation.state import STATE


def configure(**options: Unpack[Options]) -> None:
    """Configure where otel-ml sends events and metrics (replaces any earlier configuration).

    Every option omitted or ``None`` comes from the ``OTEL_*`` environment or the default. The options are typed by
    :class:`~otel_ml.instrumentation.config.Options` (checked by mypy/pyright at call sites).

    Args:
        endpoint: OTLP base URL (``http://host:4318`` for HTTP, ``http://host:4317`` for gRPC).
        protocol: ``http/protobuf`` (default), ``grpc`` or ``console``.
        headers: Request headers / gRPC metadata (e.g. an API key).
        compression: ``gzip`` or ``none``.
        timeout: Seconds per export attempt.
        resource: Resource attributes (mapping or SDK ``Resource``); default: the app's global SDK resource,
            else ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``.
        mode: ``otlp`` (fast path, default), ``sdk`` (through the app's providers) or ``noop``.
        queue_size: Bound of the event queue (overflow: newest dropped and counted).
        batch_size: Most events per export request.
        schedule_delay: Longest seconds an event waits before export.
        metric_interval: Seconds between client-metric exports.
        shutdown_timeout: Seconds :func:`shutdown` waits for the queue to drain.
        max_retry: Longest seconds one batch is retried before it is dropped.
        transport: A transport object replacing the exporter (``InMemoryTransport`` in tests).
        logger_provider: ``sdk`` mode: the LoggerProvider (implies ``mode="sdk"``); default the global one.
        meter_provider: ``sdk`` mode: the MeterProvider; default the global one.
        certificate_file: PEM CA bundle trusted for ``https`` endpoints (default: the system CAs).
        client_metrics: ``False`` stops exporting the ``ml.client.*`` metrics (default: on unless
            ``OTEL_METRICS_EXPORTER=none``); events are not affected.

    Raises:
        TypeError: An unknown option name.
        ConfigurationError: An argument is invalid (the message shows a valid example).
    """
    settings = build_settings(explicit=True, **options)
    STATE.install(make_export_queue(settings))


def force_flush(timeout: float | None = None) -> bool:
    """Export everything recorded so far (events and metrics); ``False`` if ``timeout`` seconds passed first."""
    p = STATE.queue
    return True if p is None else p.force_flush(timeout)


def shutdown(timeout: float | None = None) -> bool:
    """Flush within ``timeout`` seconds and stop; later events are dropped until :func:`configure` is called again."""
    p = STATE.queue
    if p is None:
        STATE.install(NoopExportQueue())
        return True
    done = p.shutdown(timeout)
    STATE.install(NoopExportQueue())
    return done


def reset() -> None:
    """Shut down and forget the configuration: the next event configures from the environment again (tests)."""
    p = STATE.queue
    if p is not None:
        p.shutdown(0.0)
    STATE.queue = None
