"""Build OTLP ``ExportLogsServiceRequest`` messages of otel-ml events (tests, benchmarks, load generators).

The instrumentation SDK is the real producer; this module writes the same wire format directly with the
opentelemetry-proto classes, so the processor can be exercised without an application.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from otel_ml.otlp_values import any_value
from otel_ml.semconv.events import INSTRUMENTATION_SCOPE


def log_record(event_name: str, attributes: Mapping[str, Any], time_unix_nano: int = 0) -> LogRecord:
    """One event record."""
    return LogRecord(event_name=event_name, time_unix_nano=time_unix_nano,
                     attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()])


def request(records: Iterable[LogRecord], service_name: str = "app") -> ExportLogsServiceRequest:
    """A request with one resource and one scope holding ``records``."""
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=[KeyValue(key="service.name", value=AnyValue(string_value=service_name))]),
        scope_logs=[ScopeLogs(scope=InstrumentationScope(name=INSTRUMENTATION_SCOPE), log_records=list(records))],
    )])
