"""Settings -> the export queue with its sink and transport (``noop``, ``otlp`` or ``sdk`` mode)."""

from __future__ import annotations

from typing import Any

from otel_ml.instrumentation.config import Settings
from otel_ml.instrumentation.export_queue import ExportQueue, NoopExportQueue


def make_export_queue(settings: Settings) -> ExportQueue | NoopExportQueue:
    """The export queue for ``settings``: the no-op, or a worker feeding the OTLP sink or the app's SDK providers."""
    if settings.mode == "noop":
        return NoopExportQueue()
    if settings.mode == "sdk":
        from otel_ml.instrumentation.sinks import SdkSink

        def sdk_sink(q: ExportQueue) -> Any:
            return SdkSink(settings, q.queue_len)

        return ExportQueue(settings, sdk_sink)

    from otel_ml.instrumentation.sinks import OtlpSink

    def otlp_sink(q: ExportQueue) -> Any:
        return OtlpSink(settings, make_transport(settings))

    return ExportQueue(settings, otlp_sink)


def make_transport(settings: Settings) -> Any:
    """The transport for ``settings`` (a configured transport object is reused only in the original process)."""
    from otel_ml.instrumentation import transport as t

    if settings.transport is not None:
        return settings.transport
    urls = {t.LOGS: settings.logs_endpoint, t.METRICS: settings.metrics_endpoint}
    if settings.protocol == "console":
        return t.ConsoleTransport()
    if settings.protocol == "grpc":
        return t.GrpcTransport(urls, settings.headers, settings.compression, settings.certificate_file)
    return t.HttpTransport(urls, settings.headers, settings.compression, settings.certificate_file)
