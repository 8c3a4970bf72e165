"""Fixtures: a fresh otel-ml configuration per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from otel_ml.instrumentation.api import reset


@pytest.fixture(autouse=True)
def _fresh_otel_ml(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "OTEL_SDK_DISABLED", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SERVICE_NAME"):
        monkeypatch.delenv(name, raising=False)
    reset()
    yield
    reset()
