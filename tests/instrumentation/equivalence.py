"""Helpers of the byte-equivalence tests (fast encoders vs the per-record path) on one in-memory export queue."""

from __future__ import annotations

from typing import Any

import otel_ml
from otel_ml.instrumentation.export_queue import ExportQueue
from otel_ml.instrumentation.state import STATE
from otel_ml.instrumentation.transport import InMemoryTransport


def export_queue() -> ExportQueue:
    """An export queue on an in-memory transport whose worker stays idle (the tests drive it directly)."""
    otel_ml.configure(endpoint="http://127.0.0.1:9", transport=InMemoryTransport(), schedule_delay=3600,
                      metric_interval=3600)
    p = STATE.queue
    assert isinstance(p, ExportQueue)
    return p


def counts(p: ExportQueue) -> tuple[Any, ...]:
    """Truncations, drops, predictions by class, score and duration histograms, metric truncations."""
    m = p.metrics
    m.fold_scores()
    score = {k: (h.counts, h.count, round(h.sum, 9), h.min, h.max) for k, h in m.score.items()}
    duration = {k: (h.counts, h.count, round(h.sum, 12), h.min, h.max) for k, h in m.duration.items()}
    truncated = dict(p.converter.normalizer.truncated)
    return truncated, dict(m.dropped), dict(m.predictions), score, duration, dict(m.truncated)


def reset_counts(p: ExportQueue) -> None:
    """Forget everything :func:`counts` reports."""
    m = p.metrics
    m.fold_scores()
    p.converter.normalizer.truncated.clear()
    for d in (m.dropped, m.predictions, m.classes, m.score, m.duration, m.truncated):
        d.clear()
