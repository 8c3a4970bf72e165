"""Alert thresholds: built-in defaults, overridable globally and per model from ``alerts/config.yaml``.

A threshold becomes a recording rule ``model:ml_<name>:threshold`` with one series per model (label
``ml_model_name``), so alert expressions compare against it with ``on (ml_model_name) group_left``:

* one rule per overridden model (``vector(<value>)`` labelled with the model), and
* one default rule for every other model seen by the processor or the instrumentation
  (``<default> + 0 * group by (ml_model_name) (...{ml_model_name!~"<overridden>"})``).

Global (processor-level) thresholds have no model and are inlined as constants.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from otel_ml import promql as q
from otel_ml.errors import ConfigurationError
from otel_ml.semconv import metrics as m
from otel_ml.semconv.metrics import DURATION_BUCKETS_S


@dataclass(frozen=True, slots=True)
class Threshold:
    """One tunable threshold.

    Attributes:
        name: Key in ``alerts/config.yaml`` and part of the recording rule name.
        default: Built-in default.
        doc: What it means (the unit is in the text).
        per_model: Whether it can be overridden per model (processor-level thresholds cannot).
        minimum: Smallest valid value.
        maximum: Largest valid value.
    """

    name: str
    default: float
    doc: str
    per_model: bool = True
    minimum: float = 0.0
    maximum: float = float("inf")

    @property
    def record(self) -> str:
        """Name of the recording rule holding the per-model value."""
        return f"model:ml_{self.name}:threshold"


THRESHOLDS: dict[str, Threshold] = {t.name: t for t in (
    Threshold("quality_tolerance", 0.05,
              "Absolute drop below the evaluation baseline tolerated for accuracy, macro F1 and MRR (0.05 = 5 points).",
              maximum=1.0),
    Threshold("error_tolerance", 0.25,
              "Relative rise above the evaluation baseline tolerated for MAE and RMSE (0.25 = 25% worse).",),
    Threshold("estimated_quality_tolerance", 0.05,
              "Absolute drop of the label-free estimate below the evaluation baseline tolerated.", maximum=1.0),
    Threshold("min_labeled_predictions", 50,
              "Labeled predictions needed in the hour before realized quality may alert (too few are noise)."),
    Threshold("min_estimated_predictions", 100,
              "Estimated predictions needed in the hour before estimated quality may alert."),
    Threshold("unseen_class_predictions", 0,
              "Predictions of classes the evaluation set never had, tolerated per hour and class."),
    Threshold("predictions_per_sample_shift", 0.25,
              "Relative shift of the average predictions per sample from the reference (0.25 = 25%)."),
    Threshold("feature_drift_psi", 0.25, "Population stability index above which a feature has drifted."),
    Threshold("feature_drift_jensen_shannon", 0.1, "Jensen-Shannon distance above which a feature has drifted.",
              maximum=1.0),
    Threshold("feature_drift_ks", 0.2, "Kolmogorov-Smirnov statistic above which a feature has drifted.",
              maximum=1.0),
    Threshold("unknown_correctness_share", 0.05,
              "Share of predictions of unknown correctness in the hour (a class the evaluation set never had, or "
              "inputs farther from it than any of its rows) above which the estimate is flagged (0.05 = 5%).",
              maximum=1.0),
    Threshold("feature_missing_share", 0.05,
              "Share of predictions in the hour without a value for a feature of the reference (0.05 = 5%).",
              maximum=1.0),
    Threshold("weak_segment_share_increase", 0.1,
              "Rise of the share of traffic in known weak segments, last hour vs last day (0.1 = 10 points).",
              maximum=1.0),
    Threshold("label_coverage", 0.5,
              "Minimum share of predictions that get a label (labeled / (labeled + expired), last day).",
              maximum=1.0),
    Threshold("latency_slo_seconds", 0.5,
              "Latency SLO: an inference slower than this is a bad event. Must be a histogram bucket bound "
              f"({', '.join(f'{b:g}' for b in DURATION_BUCKETS_S)})."),
    Threshold("latency_slo_objective", 0.99, "Share of inferences that must be faster than latency_slo_seconds.",
              maximum=0.99999),
    Threshold("error_slo_objective", 0.999, "Share of inferences that must not raise.", maximum=0.99999),
    Threshold("dropped_events_ratio", 0.01,
              "Share of prediction/label events the instrumentation may drop (queue full, export failed...).",
              maximum=1.0),
    Threshold("processor_reject_ratio", 0.01,
              "Share of received records the processor may reject as malformed (processor-wide).",
              per_model=False, maximum=1.0),
    Threshold("processor_auth_failures", 10,
              "Authentication failures (missing/wrong token, failed TLS handshakes) tolerated per 15 minutes, "
              "endpoint and reason (processor-wide): a few are scanners, a steady stream a misconfigured sender.",
              per_model=False),
)}
"""Every threshold, by name."""

LATENCY_SLO_SECONDS = THRESHOLDS["latency_slo_seconds"]
"""Special: selects a histogram bucket, so it shapes the SLO recording rules instead of being a series."""

_MODEL_SOURCES = (m.PREDICTIONS, m.CLIENT_EVENTS_EXPORTED)
"""Metrics whose ``ml_model_name`` values define "every model" for default thresholds."""


@dataclass(frozen=True, slots=True)
class ThresholdConfig:
    """Resolved thresholds: global values plus per-model overrides."""

    defaults: Mapping[str, float]
    models: Mapping[str, Mapping[str, float]]

    def value(self, name: str, model: str | None = None) -> float:
        """Value of threshold ``name`` for ``model`` (the default when the model has no override)."""
        if model is not None and name in self.models.get(model, {}):
            return self.models[model][name]
        return self.defaults[name]

    def overridden(self, name: str) -> dict[str, float]:
        """Models with an override of ``name``, sorted by model."""
        return {model: values[name] for model, values in sorted(self.models.items()) if name in values}


def _check(name: str, value: Any, where: str) -> float:
    spec = THRESHOLDS.get(name)
    if spec is None:
        raise ConfigurationError(f"{where}: unknown threshold {name!r}; known: {', '.join(sorted(THRESHOLDS))}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{where}: {name} must be a number, e.g. {name}: {spec.default}")
    if not spec.minimum <= value <= spec.maximum:
        raise ConfigurationError(f"{where}: {name}={value} outside [{spec.minimum}, {spec.maximum}]")
    if spec is LATENCY_SLO_SECONDS and float(value) not in DURATION_BUCKETS_S:
        raise ConfigurationError(f"{where}: latency_slo_seconds={value} is not a bucket bound: {spec.doc}")
    return float(value)


def load_thresholds(raw: Mapping[str, Any] | None) -> ThresholdConfig:
    """Validate the ``thresholds`` section of ``alerts/config.yaml`` (``defaults:`` and ``models:``).

    Example::

        thresholds:
          defaults: {quality_tolerance: 0.03}
          models:
            fraud: {quality_tolerance: 0.02, latency_slo_seconds: 0.1}
    """
    raw = raw or {}
    unknown = set(raw) - {"defaults", "models"}
    if unknown:
        raise ConfigurationError(f"thresholds: unknown keys {sorted(unknown)}; expected defaults, models")
    defaults = {name: spec.default for name, spec in THRESHOLDS.items()}
    for name, value in (raw.get("defaults") or {}).items():
        defaults[name] = _check(name, value, "thresholds.defaults")
    models: dict[str, dict[str, float]] = {}
    for model, values in (raw.get("models") or {}).items():
        if not isinstance(values, Mapping):
            raise ConfigurationError(f"thresholds.models.{model}: expected a mapping of threshold: value")
        for name, value in values.items():
            if name in THRESHOLDS and not THRESHOLDS[name].per_model:
                raise ConfigurationError(f"thresholds.models.{model}: {name} is processor-wide, set it in defaults")
            models.setdefault(str(model), {})[name] = _check(name, value, f"thresholds.models.{model}")
    return ThresholdConfig(defaults, models)


def format_number(value: float) -> str:
    """Shortest exact decimal form, as Prometheus prints bucket bounds (``1.0`` -> ``1``, ``0.25`` -> ``0.25``)."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def promql_regex_escape(value: str) -> str:
    """``re.escape`` for a regex inside a PromQL double-quoted string (backslashes doubled)."""
    return re.escape(value).replace("\\", "\\\\")


def all_models_except(models: list[str]) -> str:
    """``group by (ml_model_name) (...)`` over every model known from traffic, minus ``models``."""
    matcher = f'{{{q.MODEL}!~"{"|".join(promql_regex_escape(x) for x in models)}"}}' if models else ""
    return " or ".join(f"group by ({q.MODEL}) ({q.sel(metric)}{matcher})" for metric in _MODEL_SOURCES)


def threshold_rules(config: ThresholdConfig) -> list[dict[str, Any]]:
    """Recording rules holding every per-model threshold (overrides first, then the default for other models)."""
    rules: list[dict[str, Any]] = []
    for name, spec in THRESHOLDS.items():
        if not spec.per_model or spec is LATENCY_SLO_SECONDS:
            continue
        overrides = config.overridden(name)
        for model, value in overrides.items():
            rules.append({"record": spec.record, "expr": f"vector({format_number(value)})",
                          "labels": {q.MODEL: model}})
        rules.append({"record": spec.record,
                      "expr": f"{format_number(config.defaults[name])} + 0 * ({all_models_except(list(overrides))})"})
    return rules
