"""Fixtures: a fresh otel-ml configuration per test and an in-process OTLP receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_ml.instrumentation.api import reset
from tests.support.otlp_sink import OtlpSink


@pytest.fixture(autouse=True)
def _fresh_otel_ml(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SDK_DISABLED",
                 "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_RESOURCE_ATTRIBUTES",
                 "OTEL_SERVICE_NAME", "OTEL_BLRP_MAX_QUEUE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    reset()
    yield
    reset()


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as s:
        yield s
