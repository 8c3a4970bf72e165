"""otel_ml.compat: the private fast path and its public fallback give the same results."""

from __future__ import annotations

import pytest
from opentelemetry import context, trace
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk.trace import TracerProvider

import otel_ml
from otel_ml.compat import context_getter
from otel_ml.instrumentation import decorator, monitor
from otel_ml.instrumentation.transport import InMemoryTransport


def test_fast_context_getter_returns_the_public_current_context() -> None:
    get = context_getter()
    assert get is not context.get_current  # this API version has the default contextvars runtime context
    assert get() is context.get_current()
    with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
        assert get() is context.get_current()
        assert trace.get_current_span(get()) is span
    assert get() is context.get_current()


def test_public_fallback_when_the_runtime_context_is_not_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    class OtherRuntimeContext:  # e.g. a runtime context chosen with OTEL_PYTHON_CONTEXT
        _current_context = None

    monkeypatch.setattr(context, "_RUNTIME_CONTEXT", OtherRuntimeContext())
    assert context_getter() is context.get_current
    monkeypatch.delattr(context, "_RUNTIME_CONTEXT")
    assert context_getter() is context.get_current


@pytest.mark.parametrize("fallback", [False, True])
def test_events_link_the_active_span_on_both_paths(monkeypatch: pytest.MonkeyPatch, fallback: bool) -> None:
    if fallback:
        monkeypatch.setattr(monitor, "current_context", context.get_current)
        monkeypatch.setattr(decorator, "current_context", context.get_current)
    transport = InMemoryTransport()
    otel_ml.configure(transport=transport, schedule_delay=0.01)
    mon = otel_ml.ModelMonitor("m", task="binary", classes=["n", "y"])
    predict = mon.instrument(lambda x: ("y", 0.9))
    mon.log_prediction("n", scores=0.2)  # outside any span: no link
    with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
        mon.log_prediction("y", scores=0.8)
        predict(1.0)
    assert otel_ml.force_flush(10)
    records: list[LogRecord] = [r for req in transport.logs() for rl in req.resource_logs for sl in rl.scope_logs
                                for r in sl.log_records]
    assert len(records) == 3
    want = span.get_span_context()
    assert (records[0].trace_id, records[0].span_id) == (b"", b"")
    for rec in records[1:]:
        assert rec.trace_id == want.trace_id.to_bytes(16, "big")
        assert rec.span_id == want.span_id.to_bytes(8, "big")
        assert rec.flags == int(want.trace_flags)
