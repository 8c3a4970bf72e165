"""End to end through the real collector: app -> collector (gateway.yaml) -> otel-ml processor -> collector ->
Prometheus. PromQL must equal the truth computed with scikit-learn on the same data; other logs must go, untouched,
to the default pipeline (a log backend) and never to the processor; host metrics must arrive.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

import otel_ml
from otel_ml.semconv import ML_EVENT_NAMES, label_name, prom_name
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from tests.integration.collector_stack import ADD_OTEL_ML, EXISTING, ML_EXPORTER, Stack, wait_for
from tests.integration.collector_workload import (
    CLASSES,
    Workload,
    assert_matches_truth,
    make_workload,
    model_sum,
    other_logs,
)

pytestmark = pytest.mark.integration

MODEL = label_name(a.ML_MODEL_NAME)


@pytest.fixture
def sdk() -> Iterator[None]:
    """The instrumentation SDK is process-global: shut it down after the test."""
    yield
    otel_ml.shutdown(timeout=5)


def send_with_sdk(stack: Stack, w: Workload) -> None:
    """The instrumented application: ModelMonitor over OTLP/HTTP to the collector, then labels."""
    otel_ml.configure(endpoint=f"http://127.0.0.1:{stack.collector.http_port}", protocol="http/protobuf",
                      metric_interval=1.0, schedule_delay=0.2, resource={"service.name": "fraud-api"})
    monitor = otel_ml.ModelMonitor(w.model, version="v1", task="binary", classes=list(CLASSES))
    monitor.log_predictions([CLASSES[int(p)] for p in w.y_pred], scores=w.score, prediction_ids=w.ids)
    monitor.log_labels(w.ids, [CLASSES[int(y)] for y in w.y_true])
    assert otel_ml.force_flush(timeout=30)


@pytest.mark.parametrize("metrics_path", ["scrape", "remote_write"])
def test_end_to_end_matches_sklearn_and_routes_only_ml_events(tmp_path: Path, sdk: None, metrics_path: str) -> None:
    w = make_workload(400)
    w2 = make_workload(120, model="churn", seed=3)
    others = other_logs(25)
    with Stack(tmp_path, remote_write=metrics_path == "remote_write") as stack:
        send_with_sdk(stack, w)
        # A second application speaks raw OTLP/gRPC: otel-ml events and ordinary logs in the same requests.
        preds = w2.predictions()
        mixed = [r for i, p in enumerate(preds) for r in ((p, others[i // 5]) if i % 5 == 0 and i // 5 < len(others)
                                                           else (p,))]
        mixed += others[len({i // 5 for i in range(0, len(preds), 5)}):]
        stack.send(mixed, batch=40)
        stack.send(w2.labels(), batch=40)

        for workload in (w, w2):
            truth = workload.truth()
            assert_matches_truth(stack, workload, truth)
            roc_auc = stack.value(f'{prom_name(m.CLASSIFICATION_ROC_AUC)}{{{MODEL}="{workload.model}"}}')
            assert math.isclose(roc_auc, truth.roc_auc, rel_tol=1e-9)

        # Only the otel-ml events reached the processor...
        n_events = 2 * len(w.ids) + 2 * len(w2.ids)
        assert stack.collector.exporter_sent(ML_EXPORTER) == n_events
        stack.wait_value(f"sum({prom_name(m.PROCESSOR_RECORDS_RECEIVED)})", n_events)
        assert stack.value(f"sum({prom_name(m.PROCESSOR_RECORDS_IGNORED)})") == 0
        # ...and every other record reached the log backend, untouched.
        wait_for(lambda: len(stack.sink.snapshot()) >= len(others), what="other logs at the log backend")
        received = stack.sink.snapshot()
        assert len(received) == len(others)
        assert not {r.event_name for r in received} & set(ML_EVENT_NAMES)
        assert sorted(r.SerializeToString() for r in received) == sorted(r.SerializeToString() for r in others)

        # The application's own metrics and the host metrics went the same way as the processor's metrics.
        stack.wait_value(model_sum(m.CLIENT_PREDICTIONS, w.model), len(w.ids))
        assert stack.value("count(system_cpu_time_seconds_total)") > 0
        assert stack.value("count(system_memory_usage_bytes)") > 0


def test_add_otel_ml_snippet_on_an_existing_collector(tmp_path: Path) -> None:
    """add-otel-ml.yaml merged onto a config it did not write: ML events to the processor, other logs unchanged."""
    w = make_workload(200, seed=5)
    others = other_logs(10)
    with Stack(tmp_path, configs=(EXISTING, ADD_OTEL_ML)) as stack:
        stack.send([*w.predictions(range(0, 100)), *others, *w.predictions(range(100, 200))], batch=70)
        stack.send(w.labels(), batch=70)
        assert_matches_truth(stack, w, w.truth())
        assert stack.collector.exporter_sent(ML_EXPORTER) == 2 * len(w.ids)
        wait_for(lambda: len(stack.sink.snapshot()) >= len(others), what="other logs at the log backend")
        assert sorted(r.SerializeToString() for r in stack.sink.snapshot()) == sorted(
            r.SerializeToString() for r in others)
