"""The estimation stage in a real processor process: CLI-fitted reference, SDK traffic, scraped counters.

A reference is fitted with ``otel-ml reference fit`` (the CLI entry point) into a temporary directory, a real
``python -m otel_ml.processor`` is started with ``reference.directory`` pointing there and a Prometheus scrape
endpoint, predictions are sent through ``otel_ml.ModelMonitor`` over OTLP/HTTP, and the scraped estimated counters
must equal the offline estimates of the same artifact on the same rows. The artifact is then replaced by one fitted
with another estimator; after the processor reloads it, new traffic is counted with the new artifact only.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import otel_ml
from otel_ml.instrumentation.api import reset
from otel_ml.reference import load
from otel_ml.reference.cli import main as reference_cli
from otel_ml.semconv import metrics as m
from otel_ml.semconv.prometheus import prom_name
from tests.estimation.data import CLASSES, LABEL_SCORES, LABELS, SCORES, multiclass_frame, multilabel_frame
from tests.processor.procs_helpers import ProcessorProcess
from tests.support.procs import wait_until

pytestmark = pytest.mark.integration

MODEL = "router"


def fit_cli(data: pd.DataFrame, tmp: Path, out: Path, method: str) -> None:
    path = tmp / f"eval-{method}.csv"
    data.to_csv(path, index=False)
    code = reference_cli(["fit", "--model", MODEL, "--data", str(path), "--task", "multiclass", "--target", "label",
                          "--prediction", "pred", "--scores", *SCORES, "--classes", *CLASSES,
                          "--features", "x", "region", "--method", method, "--out", str(out)])
    assert code == 0


def send(monitor: otel_ml.ModelMonitor, frame: pd.DataFrame) -> None:
    for row in frame.itertuples(index=False):
        monitor.log_prediction(row.pred, scores=[getattr(row, c) for c in SCORES],
                               features={"x": row.x, "region": row.region})
    assert otel_ml.force_flush(30)


def series(proc: ProcessorProcess, spec: m.MetricSpec, **labels: str) -> float:
    """Sum of the scraped series of ``spec`` whose labels include ``labels``."""
    family = prom_name(spec)
    total = 0.0
    for key, value in proc.scrape().items():
        if key == family or key.startswith(family + "{"):
            found = dict(re.findall(r'(\w+)="([^"]*)"', key))
            if all(found.get(k) == v for k, v in labels.items()):
                total += value
    return total


def test_processor_counters_equal_offline_estimates_and_reload(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    art_dir = refs / MODEL / "default"
    fit_cli(multiclass_frame(800, seed=0), tmp_path, art_dir, "cbpe")
    proc = ProcessorProcess(tmp_path, reference={"directory": str(refs), "reload_interval": "1s"},
                            relabel={"path": str(tmp_path / "relabel.jsonl")}).start()
    try:
        otel_ml.configure(endpoint=f"http://127.0.0.1:{proc.http_port}", protocol="http/protobuf",
                          compression="gzip", resource={"service.name": "estimation-test"})
        monitor = otel_ml.ModelMonitor(MODEL, version="v1", task="multiclass", classes=CLASSES)
        first = multiclass_frame(300, seed=31, shift=0.6)
        send(monitor, first)
        wait_until(lambda: series(proc, m.ESTIMATED_PREDICTIONS) == len(first), timeout=60,
                   what="estimated predictions scraped")
        est = load(art_dir).estimator
        assert est is not None and est.estimator_key == "cbpe"
        p = est.predict_correctness(first)
        assert series(proc, m.ESTIMATED_CORRECT_PREDICTIONS, ml_estimator="cbpe") == pytest.approx(p.sum(), rel=1e-9)
        assert series(proc, m.ESTIMATED_CORRECT_VARIANCE) == pytest.approx(np.sum(p * (1 - p)), rel=1e-9)
        assert series(proc, m.ESTIMATED_CORRECT_PREDICTIONS) / len(first) == pytest.approx(est.estimate(first).value)
        wait_until(lambda: series(proc, m.REFERENCE_METRIC, ml_metric="accuracy") > 0, timeout=30,
                   what="reference baseline gauge")
        assert series(proc, m.REFERENCE_METRIC, ml_metric="accuracy") == pytest.approx(
            load(art_dir).metrics["accuracy"])
        # The estimated ROC AUC gauge (multiclass: one-vs-rest, macro) of the window equals the offline estimate.
        auc = est.estimate_metrics(first, ["roc_auc"])["roc_auc"].value
        wait_until(lambda: series(proc, m.ESTIMATED_CLASSIFICATION_ROC_AUC) > 0, timeout=30,
                   what="estimated ROC AUC gauge")
        assert series(proc, m.ESTIMATED_CLASSIFICATION_ROC_AUC) == pytest.approx(auc, rel=1e-9)

        # Replace the artifact (another estimator); the processor reloads it within reload_interval.
        fit_cli(multiclass_frame(800, seed=1), tmp_path, art_dir, "atc")
        wait_until(lambda: proc.process.log(tail=100_000).count("loaded reference") >= 2, timeout=30,
                   what="reference reloaded")
        second = multiclass_frame(200, seed=32)
        send(monitor, second)
        wait_until(lambda: series(proc, m.ESTIMATED_PREDICTIONS) == len(first) + len(second), timeout=60,
                   what="second batch scraped")
        new = load(art_dir).estimator
        assert new is not None and new.estimator_key == "atc"
        assert series(proc, m.ESTIMATED_PREDICTIONS, ml_estimator="atc") == len(second)
        assert series(proc, m.ESTIMATED_PREDICTIONS, ml_estimator="cbpe") == len(first)  # cumulative, unchanged
        assert series(proc, m.ESTIMATED_CORRECT_PREDICTIONS, ml_estimator="atc") == pytest.approx(
            new.predict_correctness(second).sum(), rel=1e-9)
        assert "refusing reference" not in proc.process.log(tail=100_000)
    finally:
        reset()
        proc.process.stop()


def test_multilabel_through_the_sdk(tmp_path: Path) -> None:
    refs = tmp_path / "refs"
    art_dir = refs / "tagger" / "default"
    data = multilabel_frame(1000)
    data.to_csv(tmp_path / "tags.csv", index=False)
    assert reference_cli(["fit", "--model", "tagger", "--data", str(tmp_path / "tags.csv"), "--task", "multilabel",
                          "--target", "tags", "--prediction", "predicted", "--scores", *LABEL_SCORES,
                          "--classes", *LABELS, "--features", "x", "--out", str(art_dir)]) == 0
    proc = ProcessorProcess(tmp_path, reference={"directory": str(refs), "reload_interval": "1s"},
                            relabel={"path": str(tmp_path / "relabel.jsonl")}).start()
    try:
        otel_ml.configure(endpoint=f"http://127.0.0.1:{proc.http_port}", protocol="http/protobuf",
                          compression="gzip", resource={"service.name": "estimation-test"})
        monitor = otel_ml.ModelMonitor("tagger", task="multilabel", classes=LABELS)
        frame = multilabel_frame(250, seed=41, shift=-0.8)
        for row in frame.itertuples(index=False):
            monitor.log_prediction([t for t in row.predicted.split("|") if t],
                                   scores=[getattr(row, c) for c in LABEL_SCORES], features={"x": row.x})
        assert otel_ml.force_flush(30)
        wait_until(lambda: series(proc, m.ESTIMATED_PREDICTIONS) == len(frame), timeout=60,
                   what="estimated multilabel predictions scraped")
        est = load(art_dir).estimator
        assert est is not None
        p, q, d = est.predict_details(frame)
        assert series(proc, m.ESTIMATED_CORRECT_PREDICTIONS, ml_estimator="multilabel") == pytest.approx(
            p.sum(), rel=1e-9)
        for j, label in enumerate(LABELS):
            assert series(proc, m.ESTIMATED_CLASSIFICATION_OUTCOMES, ml_class=label, ml_outcome="tp") == pytest.approx(
                float((d[:, j] * q[:, j]).sum()), rel=1e-9)
    finally:
        reset()
        proc.process.stop()
