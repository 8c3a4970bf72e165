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
from typing import Any, Final

from otel_ml import promql as q
from otel_ml.alerting import stats
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
    # --- significance (see otel_ml.alerting.stats) ---------------------------------------------------------------
    Threshold("false_alarms_per_month", 1.0,
              "Budget of false alarms of the model's statistical alerts together, per month, when nothing changed: "
              "sets the z of every significance test (split evenly across alert families and windows).",
              minimum=0.001, maximum=1000.0),
    Threshold("z", 0.0,
              "Override of every significance test's z (standard errors); 0 = derived from false_alarms_per_month.",
              maximum=20.0),
    # --- minimum effects: a significant change smaller than these does not alert --------------------------------
    Threshold("quality_min_effect", 0.02,
              "Smallest drop of realized accuracy, exact match, macro F1 or MRR below the baseline that alerts "
              "(absolute: 0.02 = 2 points).", maximum=1.0),
    Threshold("error_min_effect", 0.1,
              "Smallest relative rise of realized MAE or RMSE above the baseline that alerts (0.1 = 10% worse)."),
    Threshold("estimated_quality_min_effect", 0.02,
              "Smallest drop of the label-free estimate below the baseline that alerts (absolute).", maximum=1.0),
    Threshold("min_labeled_predictions", 30,
              "Labeled predictions a window needs before realized quality may alert."),
    Threshold("min_predictions", 100,
              "Predictions a window needs before estimated quality, predictions per sample and drift may alert."),
    Threshold("predictions_per_sample_min_effect", 0.05,
              "Smallest relative shift of the average predictions per sample from the reference that alerts "
              "(0.05 = 5%).", maximum=10.0),
    Threshold("drift_min_psi", 0.1,
              "Smallest population stability index (features, prediction mix, set sizes) that alerts "
              "(rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 large)."),
    Threshold("unseen_class_min_share", 0.005,
              "Smallest share of predictions of one class unseen in the evaluation set that alerts (0.005 = 0.5%).",
              maximum=1.0),
    Threshold("unknown_correctness_share", 0.05,
              "Share of predictions of unknown correctness in the hour (a class the evaluation set never had, or "
              "inputs farther from it than any of its rows) above which the estimate is flagged (0.05 = 5%).",
              maximum=1.0),
    Threshold("feature_missing_share", 0.05,
              "Share of predictions in the hour without a value for a feature of the reference (0.05 = 5%).",
              maximum=1.0),
    Threshold("weak_segment_min_increase", 0.05,
              "Smallest rise of a weak slice's share of traffic above its share of the evaluation set that alerts "
              "(absolute: 0.05 = 5 points).", maximum=1.0),
    Threshold("label_coverage_min_drop", 0.05,
              "Smallest drop of label coverage (last day vs the week before) that alerts (absolute).", maximum=1.0),
    Threshold("label_coverage", 0.0,
              "Optional floor: coverage (labeled / (labeled + expired), last day) below it alerts (0 = off).",
              maximum=1.0),
    Threshold("labels_stopped_expected", 10,
              "Labels the last week's rate predicts in 6h before 6h without any label alerts (P(0) = e^-10).",
              minimum=1.0),
    # --- serving and pipeline ------------------------------------------------------------------------------------
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

SAFETY = 2.0
"""Simulated sliding windows of Poisson traffic cross a z level up to twice as often as the continuous-time
approximation of :func:`otel_ml.alerting.stats.scan_false_alarms` predicts (discreteness, skew of small counts):
each test gets half its share of the budget."""


@dataclass(frozen=True, slots=True)
class Family:
    """One statistical alert family: its windows and how many tails its test has.

    Attributes:
        name: Part of the z recording rule name (``model:ml_<name>_z<window>:threshold``).
        windows: Sliding windows the family tests (a short one reacts fast at high volume, a long one is
            sensitive at low volume); the alert fires when any window's test does.
        tails: 2 when a change in either direction alerts.
    """

    name: str
    windows: tuple[str, ...]
    tails: int = 1

    def z_record(self, window: str) -> str:
        """Name of the recording rule holding each model's z for ``window``."""
        return f"model:ml_{self.name}_z{window}:threshold"


PREDICTION_WINDOWS = ("1h", "1d")
"""Windows of the signals available at prediction time (estimated quality, prediction mix, drift, novelty)."""
LABEL_WINDOWS = ("1d", "7d")
"""Windows of realized quality: labels arrive late and for part of the traffic only, so the long window is a week."""

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("quality", LABEL_WINDOWS),
    Family("estimated_quality", PREDICTION_WINDOWS),
    Family("predictions_per_sample", PREDICTION_WINDOWS, tails=2),
    Family("set_size_drift", PREDICTION_WINDOWS),
    Family("feature_drift", PREDICTION_WINDOWS),
    Family("prediction_drift", PREDICTION_WINDOWS),
    Family("unseen_class", PREDICTION_WINDOWS),
    Family("weak_segment", PREDICTION_WINDOWS),
    Family("label_coverage", ("1d",)),
)}
"""The statistical alert families; the false-alarm budget of a model is split evenly across them."""


def window_seconds(window: str) -> float:
    """``1h`` -> 3600.0 (s, m, h, d, w)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    return float(window[:-1]) * units[window[-1]]


def family_z(config: ThresholdConfig, family: Family, window: str, model: str | None = None) -> float:
    """The z of ``family``'s test over ``window`` for ``model`` (the ``z`` override, else from the budget)."""
    override = config.value("z", model)
    if override > 0:
        return override
    budget = config.value("false_alarms_per_month", model) / len(FAMILIES) / len(family.windows) / SAFETY
    return round(stats.z_for_false_alarms(budget, window_seconds(window), tails=family.tails), 3)


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


RETIRED: Final[Mapping[str, str]] = {
    "quality_tolerance": "quality_min_effect",
    "error_tolerance": "error_min_effect",
    "estimated_quality_tolerance": "estimated_quality_min_effect",
    "predictions_per_sample_shift": "predictions_per_sample_min_effect",
    "unseen_class_predictions": "unseen_class_min_share",
    "weak_segment_share_increase": "weak_segment_min_increase",
    "feature_drift_psi": "drift_min_psi",
    "feature_drift_jensen_shannon": "drift_min_psi",
    "feature_drift_ks": "drift_min_psi",
    "min_estimated_predictions": "min_predictions",
}
"""Fixed thresholds of earlier releases and what replaced them: an alert now needs a significant change (``z``, from
``false_alarms_per_month``) that is also at least the minimum effect, so an old value does not carry over as is."""


def _check(name: str, value: Any, where: str) -> float:
    spec = THRESHOLDS.get(name)
    if spec is None and name in RETIRED:
        raise ConfigurationError(
            f"{where}: {name!r} was retired: alerts now fire on a change that is both significant and at least "
            f"{RETIRED[name]!r} (see alerts/README.md); set {RETIRED[name]} instead")
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
          defaults: {quality_min_effect: 0.03}
          models:
            fraud: {quality_min_effect: 0.02, latency_slo_seconds: 0.1}
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


_DERIVES_Z = ("z", "false_alarms_per_month")


def threshold_rules(config: ThresholdConfig) -> list[dict[str, Any]]:
    """Recording rules holding every per-model threshold (overrides first, then the default for other models),
    then each family's z per window (derived from ``false_alarms_per_month`` unless ``z`` is set)."""
    rules: list[dict[str, Any]] = []
    for name, spec in THRESHOLDS.items():
        if not spec.per_model or spec is LATENCY_SLO_SECONDS or name in _DERIVES_Z:
            continue
        overrides = config.overridden(name)
        for model, value in overrides.items():
            rules.append({"record": spec.record, "expr": f"vector({format_number(value)})",
                          "labels": {q.MODEL: model}})
        rules.append({"record": spec.record,
                      "expr": f"{format_number(config.defaults[name])} + 0 * ({all_models_except(list(overrides))})"})
    special = sorted({model for name in _DERIVES_Z for model in config.overridden(name)})
    for family in FAMILIES.values():
        for window in family.windows:
            record = family.z_record(window)
            for model in special:
                z = family_z(config, family, window, model)
                rules.append({"record": record, "expr": f"vector({format_number(z)})", "labels": {q.MODEL: model}})
            rules.append({"record": record, "expr": f"{format_number(family_z(config, family, window))} + 0 * "
                                                    f"({all_models_except(special)})"})
    return rules
