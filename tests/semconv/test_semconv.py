"""The semantic conventions are consistent: valid names, no namespace clashes, ids never on metrics."""

from __future__ import annotations

import re

import pytest

from otel_ml.semconv import ATTRIBUTES, METRICS, label_name, prom_name
from otel_ml.semconv.attributes import ML_PREDICTION_ID, PREFIX_ATTRIBUTES
from otel_ml.semconv.metrics import MetricSpec, _metric
from otel_ml.semconv.prometheus import all_series_names

_OTEL_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def test_metric_names_are_valid_otel_instrument_names() -> None:
    for name in METRICS:
        assert _OTEL_NAME.match(name), name
        assert len(name) <= 255
        assert not name.endswith("_total"), "Prometheus adds _total"


def test_no_metric_name_is_the_namespace_of_another() -> None:
    names = set(METRICS)
    for name in names:
        assert not any(other.startswith(name + ".") for other in names), name


def test_metric_attributes_are_registered_and_allowed_on_metrics() -> None:
    for spec in METRICS.values():
        for key in spec.attributes:
            assert ATTRIBUTES[key].on_metrics, (spec.name, key)
        assert ML_PREDICTION_ID not in spec.attributes


def test_unbounded_attributes_never_on_metrics() -> None:
    for spec in [*ATTRIBUTES.values(), *PREFIX_ATTRIBUTES.values()]:
        if spec.cardinality == "unbounded":
            assert not spec.on_metrics, spec.key
    with pytest.raises(ValueError, match="may not appear on metrics"):
        _metric("ml.bad", "counter", "1", (ML_PREDICTION_ID,), "processor", "bad")


def test_every_spec_is_documented() -> None:
    for spec in METRICS.values():
        assert isinstance(spec, MetricSpec) and len(spec.doc) > 20, spec.name
        if spec.instrument == "histogram":
            assert list(spec.buckets) == sorted(spec.buckets) and spec.buckets, spec.name
    for attr in ATTRIBUTES.values():
        assert len(attr.doc) > 20, attr.key


@pytest.mark.parametrize(("name", "expected"), [
    ("ml.predictions", "ml_predictions_total"),
    ("ml.client.inference.duration", "ml_client_inference_duration_seconds"),
    ("ml.classification.roc_auc", "ml_classification_roc_auc_ratio"),
    ("ml.regression.signed_error", "ml_regression_signed_error"),
    ("ml.processor.store.oldest_pending_age", "ml_processor_store_oldest_pending_age_seconds"),
    ("ml.ranking.reciprocal_rank", "ml_ranking_reciprocal_rank_total"),
])
def test_prometheus_names_follow_the_collector_translation(name: str, expected: str) -> None:
    assert prom_name(name) == expected


def test_prometheus_names_are_unique() -> None:
    names = [prom_name(s) for s in METRICS.values()]
    assert len(names) == len(set(names))
    assert "ml_label_delay_seconds_bucket" in all_series_names()
    assert label_name("ml.model.name") == "ml_model_name"
