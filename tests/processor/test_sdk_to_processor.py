"""The instrumentation SDK (otel_ml.ModelMonitor) -> a real processor over OTLP/HTTP gzip -> OTLP metrics out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import otel_ml
from otel_ml.instrumentation.api import reset
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from tests.processor.procs_helpers import MetricsReceiver, ProcessorProcess
from tests.support.procs import wait_until

pytestmark = pytest.mark.integration


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sdk_events_become_quality_metrics(tmp_path: Path) -> None:
    sink = MetricsReceiver()
    proc = ProcessorProcess(tmp_path, metrics={"otlp": {"endpoint": sink.endpoint, "interval": "1s"}}).start()
    try:
        data = load_iris(as_frame=True)
        x = data.frame[data.feature_names].rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
        y = np.asarray(data.target_names)[data.target]
        order = np.random.default_rng(5).permutation(len(x))
        train, test = order[:60], order[60:]  # a weak model: some mistakes to count
        model = LogisticRegression(max_iter=30).fit(x.iloc[train], y[train])
        otel_ml.configure(endpoint=f"http://127.0.0.1:{proc.http_port}", protocol="http/protobuf",
                          compression="gzip", resource={"service.name": "iris-test"})
        monitor = otel_ml.ModelMonitor("iris", version="7", task="multiclass")
        predict_proba = monitor.instrument(model.predict_proba)
        proba = predict_proba(x.iloc[test])
        ids = list(otel_ml.current_prediction_ids() or [])
        assert len(ids) == len(test)
        predicted = model.classes_[proba.argmax(axis=1)]
        otel_ml.ModelMonitor("iris").log_labels(ids, y[test])
        assert otel_ml.force_flush(30)

        wait_until(lambda: sink.total(m.LABELED_PREDICTIONS.name) == len(test), timeout=60,
                   what="labeled predictions exported")
        assert sink.total(m.PREDICTIONS.name, **{a.ML_MODEL_VERSION: "7"}) == len(test)
        accuracy = sink.total(m.CORRECT_PREDICTIONS.name) / sink.total(m.LABELED_PREDICTIONS.name)
        assert accuracy == pytest.approx(skm.accuracy_score(y[test], predicted))
        assert accuracy < 1.0
        prec = skm.precision_score(y[test], predicted, labels=model.classes_, average=None, zero_division=0)
        for cls, p in zip(model.classes_, prec, strict=True):
            tp = sink.total(m.CLASSIFICATION_OUTCOMES.name, **{a.ML_CLASS: str(cls), a.ML_OUTCOME: "tp"})
            fp = sink.total(m.CLASSIFICATION_OUTCOMES.name, **{a.ML_CLASS: str(cls), a.ML_OUTCOME: "fp"})
            assert (tp / (tp + fp) if tp + fp else 0.0) == pytest.approx(p)
        assert sink.total(m.PROCESSOR_RECORDS_REJECTED.name) == 0
    finally:
        reset()
        proc.process.stop()
        sink.stop()


def test_sdk_pointed_straight_at_the_processor_warns_once_about_its_metrics(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The processor takes logs only: the client metrics fail with UNIMPLEMENTED, said once at WARNING with the
    fix; the events still arrive."""
    import logging

    proc = ProcessorProcess(tmp_path, metrics={"otlp": None}).start()
    try:
        otel_ml.configure(endpoint=f"http://127.0.0.1:{proc.grpc_port}", protocol="grpc", schedule_delay=0.01)
        with caplog.at_level(logging.WARNING, logger="otel_ml"):
            monitor = otel_ml.ModelMonitor("direct", task="regression")
            for i in range(5):
                monitor.log_prediction(float(i))
            assert otel_ml.force_flush(30)
            monitor.log_prediction(9.0)
            assert otel_ml.force_flush(30)
        wait_until(lambda: proc.total("ml_predictions_total") >= 6, timeout=30, what="the events reached the processor")
        warnings = [r.getMessage() for r in caplog.records if "ml.client.* metrics" in r.getMessage()]
        assert len(warnings) == 1, warnings
        assert "UNIMPLEMENTED" in warnings[0] and "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" in warnings[0]
        assert "client_metrics=False" in warnings[0]
    finally:
        reset()
        proc.process.stop()
