"""The FastAPI example: a scikit-learn model server and a separate feedback service, through the real wire.

* ``test_events_on_the_wire``: both apps (FastAPI TestClient) export to an in-process OTLP receiver; the prediction
  ids the API returns are the ids on the ``ml.prediction`` events, and the feedback service's ``ml.label`` events
  carry the same ids.
* ``test_processor_joins_feedback_labels``: both apps export to a real otel-ml processor; its Prometheus endpoint
  ends with exactly the labeled and correct counts computed here from the responses.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_iris

import otel_ml
from examples.serving import feedback_service, model_server
from otel_ml.semconv import attributes as a
from otel_ml.semconv import events, metrics
from otel_ml.semconv.prometheus import label_name, prom_name
from tests.support.otlp_sink import OtlpSink
from tests.support.procs import ManagedProcess, free_port, http_ok, processor_command, tcp_open

FEATURES = model_server.FEATURES


def _requests(n: int, seed: int = 0) -> tuple[list[dict[str, object]], list[str]]:
    """``n`` iris flowers as request bodies (with a channel) and their true species."""
    iris = load_iris()
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(iris.data), size=n)
    bodies = [dict(zip(FEATURES, map(float, iris.data[r]), strict=True)) | {"channel": ["web", "app"][i % 2]}
              for i, r in enumerate(rows)]
    truth = [str(iris.target_names[iris.target[r]]) for r in rows]
    return bodies, truth


def _serve(n: int) -> tuple[list[str], list[str], list[str]]:
    """Predict ``n`` flowers (half one by one, half as a batch); returns ids, predicted and true species."""
    bodies, truth = _requests(n)
    half = n // 2
    with TestClient(model_server.create_app()) as api:
        answers = [api.post("/predict", json=b).json() for b in bodies[:half]]
        resp = api.post("/predict/batch", json=bodies[half:])
        assert resp.status_code == 200, resp.text
        answers += resp.json()["predictions"]
    return [x["prediction_id"] for x in answers], [x["species"] for x in answers], truth


def test_events_on_the_wire() -> None:
    with OtlpSink() as sink:
        otel_ml.configure(endpoint=sink.grpc_endpoint, protocol="grpc", schedule_delay=0.05)
        ids, predicted, truth = _serve(10)
        assert len(set(ids)) == 10 and all(ids)
        with TestClient(feedback_service.create_app()) as fb:
            assert fb.post("/feedback", json={"prediction_id": ids[0], "species": truth[0]}).status_code == 202
            batch = {"items": [{"prediction_id": i, "species": t} for i, t in zip(ids[1:4], truth[1:4], strict=True)]}
            assert fb.post("/feedback/batch", json=batch).json() == {"accepted": 3}
        assert otel_ml.force_flush(10.0)
        records = sink.wait_for_log_records(14)
    preds = {r.attributes[a.ML_PREDICTION_ID]: r for r in records if r.record.event_name == events.ML_PREDICTION_EVENT}
    labels = {r.attributes[a.ML_PREDICTION_ID]: r for r in records if r.record.event_name == events.ML_LABEL_EVENT}
    assert set(preds) == set(ids)
    for pid, species in zip(ids, predicted, strict=True):
        attrs = preds[pid].attributes
        assert attrs[a.ML_MODEL_NAME] == model_server.MODEL_NAME
        assert attrs[a.ML_TASK] == "multiclass"
        assert attrs[a.ML_PREDICTION_VALUE] == species
        assert len(attrs[a.ML_PREDICTION_SCORES]) == 3
        assert {f"{a.ML_FEATURE_PREFIX}{f}" for f in FEATURES} <= set(attrs)
        assert attrs[f"{a.ML_SEGMENT_PREFIX}channel"] in {"web", "app"}
    assert set(labels) == set(ids[:4])
    for pid, species in zip(ids[:4], truth[:4], strict=True):
        assert labels[pid].attributes[a.ML_LABEL_VALUE] == species
        assert labels[pid].attributes[a.ML_MODEL_NAME] == model_server.MODEL_NAME


def _scrape(url: str) -> dict[str, float]:
    """Samples of the iris model by series name (summed over other labels)."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get(label_name(a.ML_MODEL_NAME)) == model_server.MODEL_NAME:
                out[s.name] = out.get(s.name, 0.0) + s.value
    return out


@pytest.mark.integration
def test_processor_joins_feedback_labels(tmp_path: Path) -> None:
    grpc_port, prom_port = free_port(), free_port()
    config = {"receiver": {"grpc": {"endpoint": f"127.0.0.1:{grpc_port}"}, "http": None},
              "store": {"backend": "sqlite", "path": str(tmp_path / "store.db")},
              "metrics": {"otlp": None, "prometheus": {"endpoint": f"127.0.0.1:{prom_port}"}}}
    (tmp_path / "processor.yaml").write_text(yaml.safe_dump(config))
    metrics_url = f"http://127.0.0.1:{prom_port}/metrics"
    proc = ManagedProcess("processor", processor_command(tmp_path / "processor.yaml"), tmp_path).start()
    try:
        proc.wait_ready(lambda: tcp_open(grpc_port) and http_ok(metrics_url))
        otel_ml.configure(endpoint=f"http://127.0.0.1:{grpc_port}", protocol="grpc", schedule_delay=0.05)
        ids, predicted, truth = _serve(60)
        # A partial, out-of-order subset; 4 labels are sent twice (idempotent: counted once).
        sent = list(range(0, 60, 3)) + list(range(1, 60, 5))
        labeled = set(sent)
        assert len(sent) - len(labeled) == 4
        with TestClient(feedback_service.create_app()) as fb:
            for i in sent:
                assert fb.post("/feedback", json={"prediction_id": ids[i], "species": truth[i]}).status_code == 202
        assert otel_ml.force_flush(10.0)
        expected_correct = sum(predicted[i] == truth[i] for i in labeled)
        labeled_name = prom_name(metrics.LABELED_PREDICTIONS)
        correct_name = prom_name(metrics.CORRECT_PREDICTIONS)

        def joined() -> bool:
            return _scrape(metrics_url).get(labeled_name) == len(labeled)

        proc.wait_ready(joined, timeout=30)
        samples = _scrape(metrics_url)
        assert samples[prom_name(metrics.PREDICTIONS)] == 60
        assert samples.get(correct_name, 0.0) == expected_correct
    finally:
        proc.stop()
