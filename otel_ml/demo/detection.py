"""The shipped alerts' tests, applied to the demo's daily snapshots: the demo detects what would page.

Each function computes, for every simulated day, the same **effect** and **threshold** as the alert rule of the
same family (``alerts/otel-ml.rules.yaml``, built-in defaults: :mod:`otel_ml.alerting.thresholds`), over the
rule's day window: a day of the demo is a day of the story, and its counters are differenced like ``increase()``.
A change is detected on the first day its effect exceeds the threshold: significant and larger than the minimum
effect (:mod:`otel_ml.alerting.stats`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from otel_ml.alerting import stats
from otel_ml.alerting.thresholds import FAMILIES, ThresholdConfig, family_z, load_thresholds
from otel_ml.demo.metrics import series
from otel_ml.demo.timeline import CLASS, FEATURE, METRIC, MODEL, Series, Timeline
from otel_ml.drift.methods import SMOOTHING
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import QualityMetric
from otel_ml.semconv.metrics import MetricSpec
from otel_ml.semconv.prometheus import label_name

DEFAULTS: ThresholdConfig = load_thresholds(None)
"""The thresholds every model gets without an override in ``alerts/config.yaml``."""
WEAK = label_name(a.ML_WEAK_SEGMENT)
BIN = label_name(a.ML_BIN)


@dataclass(frozen=True, slots=True)
class Test:
    """Per day: the effect, the threshold it must exceed, and what the window held."""

    effect: Series
    threshold: Series
    count: Series

    def first_day(self, start: int = 0) -> int | None:
        """First day from ``start`` whose effect exceeds its threshold."""
        for day in range(start, len(self.effect)):
            e, t = self.effect[day], self.threshold[day]
            if e is not None and t is not None and e > t:
                return day
        return None


def _z(family: str, window: str = "1d") -> float:
    return family_z(DEFAULTS, FAMILIES[family], window)


def _value(name: str) -> float:
    return DEFAULTS.value(name)


def _rows(timeline: Timeline, model: str) -> float | None:
    return timeline.gauge(series(m.REFERENCE_ROWS), **{MODEL: model})


def psi_test(timeline: Timeline, model: str, counter: MetricSpec, reference: MetricSpec, family: str,
             tests: int = 1, **match: str) -> Test:
    """PSI of a day's per-bin counts against the reference bin shares, and its chi-square threshold (z corrected
    for ``tests`` variables of the model tested alike)."""
    shares = timeline.gauges_by(series(reference), BIN, **{MODEL: model}, **match)
    rows = _rows(timeline, model)
    effect: Series = []
    threshold: Series = []
    count: Series = []
    z, min_psi = stats.corrected_z(_z(family), tests), _value("drift_min_psi")
    for day in range(len(timeline.points)):
        counts = {b: timeline.delta(day, 1, series(counter), **{MODEL: model, BIN: b}, **match) for b in shares}
        n = sum(counts.values())
        count.append(n)
        if not shares or n <= 0 or n < _value("min_predictions"):
            effect.append(None)
            threshold.append(None)
            continue
        total = n + SMOOTHING * len(shares)
        effect.append(sum(((counts[b] + SMOOTHING) / total - p) * math.log((counts[b] + SMOOTHING) / total / p)
                          for b, p in shares.items()))
        threshold.append(stats.psi_threshold(min_psi, z, len(shares), n, rows))
    return Test(effect, threshold, count)


def feature_drift(timeline: Timeline, model: str, feature: str) -> Test:
    """MLModelFeatureDrift for ``feature``."""
    features = timeline.gauges_by(series(m.REFERENCE_FEATURE_BIN_SHARE), FEATURE, **{MODEL: model})
    return psi_test(timeline, model, m.FEATURE_BIN_OBSERVATIONS, m.REFERENCE_FEATURE_BIN_SHARE, "feature_drift",
                    tests=len(features), **{FEATURE: feature})


def weak_segment(timeline: Timeline, model: str, prefix: str) -> Test:
    """MLModelWeakSegmentTrafficRising over the weak slices whose name starts with ``prefix``: the largest rise of a
    slice's share of the day's traffic above its evaluation-set share, against that slice's threshold (the effect
    is the rise minus the threshold plus the smallest threshold, so ``effect > threshold`` when any slice fires)."""
    every = timeline.gauges_by(series(m.REFERENCE_WEAK_SEGMENT_SHARE), WEAK, **{MODEL: model})
    refs = {k: v for k, v in every.items() if k.startswith(prefix)}
    rows = _rows(timeline, model)
    z, minimum = stats.corrected_z(_z("weak_segment"), len(every)), _value("weak_segment_min_increase")
    effect: Series = []
    threshold: Series = []
    count: Series = []
    for day in range(len(timeline.points)):
        n = timeline.delta(day, 1, series(m.PREDICTIONS), **{MODEL: model})
        count.append(n)
        if not refs or n < _value("min_predictions"):
            effect.append(None)
            threshold.append(None)
            continue
        margins = []
        for name, share0 in refs.items():
            share = timeline.delta(day, 1, series(m.WEAK_SEGMENT_PREDICTIONS), **{MODEL: model, WEAK: name}) / n
            se = stats.standard_error(math.sqrt(share0 * (1 - share0)), n, rows)
            margins.append((share - share0, stats.threshold(minimum, z, se)))
        rise, limit = max(margins, key=lambda t: t[0] - t[1])
        effect.append(rise)
        threshold.append(limit)
    return Test(effect, threshold, count)


def unseen_class(timeline: Timeline, model: str) -> Test:
    """MLModelUnseenClass: the largest share of the day's predictions of one unseen class, and its threshold."""
    rows = _rows(timeline, model)
    rate0 = stats.unseen_rate_bound(rows) if rows else 0.0
    z, minimum = _z("unseen_class"), _value("unseen_class_min_share")
    classes = timeline.unseen_classes(model)
    effect: Series = []
    threshold: Series = []
    count: Series = []
    for day in range(len(timeline.points)):
        n = timeline.delta(day, 1, series(m.PREDICTIONS), **{MODEL: model})
        count.append(n)
        if n < _value("min_predictions"):
            effect.append(None)
            threshold.append(None)
            continue
        shares = [timeline.delta(day, 1, series(m.UNSEEN_CLASS_PREDICTIONS), **{MODEL: model, CLASS: c}) / n
                  for c in classes]
        effect.append(max(shares, default=0.0))
        threshold.append(max(minimum, rate0 + z * math.sqrt(rate0 / n)))
    return Test(effect, threshold, count)


def predictions_per_sample(timeline: Timeline, model: str) -> Test:
    """MLModelPredictionsPerSampleShift: |relative shift| of the day's labels per sample from the reference (the
    set-size PSI branch of the alert is :func:`set_size_drift`)."""
    mean0 = timeline.gauge(series(m.REFERENCE_METRIC), **{MODEL: model, METRIC: QualityMetric.LABELS_PER_SAMPLE})
    sd0 = timeline.gauge(series(m.REFERENCE_METRIC_SD), **{MODEL: model, METRIC: QualityMetric.LABELS_PER_SAMPLE})
    rows = _rows(timeline, model)
    z, minimum = _z("predictions_per_sample"), _value("predictions_per_sample_min_effect")
    per_sample = timeline.tags_per_sample(model)
    effect: Series = []
    threshold: Series = []
    count: Series = []
    h = m.MULTILABEL_PREDICTED_LABELS
    for day in range(len(timeline.points)):
        n = timeline.delta(day, 1, series(h, "count"), **{MODEL: model})
        count.append(n)
        value = per_sample[day]
        if value is None or mean0 is None or sd0 is None or mean0 <= 0 or n < _value("min_predictions"):
            effect.append(None)
            threshold.append(None)
            continue
        effect.append(abs(value / mean0 - 1))
        threshold.append(stats.threshold(minimum, z, stats.standard_error(sd0 / mean0, n, rows)))
    return Test(effect, threshold, count)


def set_size_drift(timeline: Timeline, model: str) -> Test:
    """The set-size PSI branch of MLModelPredictionsPerSampleShift."""
    return psi_test(timeline, model, m.SET_SIZE_BIN_OBSERVATIONS, m.REFERENCE_SET_SIZE_BIN_SHARE, "set_size_drift")


def estimated_quality(timeline: Timeline, model: str, metric: str = QualityMetric.ACCURACY) -> Test:
    """MLModelEstimatedQualityDrop (day window): baseline - estimate, standard error from the day's own counters."""
    baseline = timeline.baseline(model, metric)
    rows = _rows(timeline, model)
    z, minimum = _z("estimated_quality"), _value("estimated_quality_min_effect")
    effect: Series = []
    threshold: Series = []
    count: Series = []
    for day in range(len(timeline.points)):
        n, p_sum, variance = timeline.estimated_sums(model, day, 1)
        count.append(n)
        if baseline is None or n < _value("min_predictions"):
            effect.append(None)
            threshold.append(None)
            continue
        estimate = p_sum / n
        spread = max((p_sum - variance) / n - estimate**2, 0.0)
        se = math.sqrt(spread / n + (baseline * (1 - baseline) / rows if rows else 0.0))
        effect.append(baseline - estimate)
        threshold.append(stats.threshold(minimum, z, se))
    return Test(effect, threshold, count)


def realized_quality(timeline: Timeline, model: str, metric: str = QualityMetric.ACCURACY) -> Test:
    """MLModelQualityBelowBaseline over the day and the week windows: the larger excess of the two."""
    baseline = timeline.baseline(model, metric)
    sd = timeline.gauge(series(m.REFERENCE_METRIC_SD), **{MODEL: model, METRIC: metric})
    rows = _rows(timeline, model)
    minimum = _value("quality_min_effect")
    effect: Series = []
    threshold: Series = []
    count: Series = []
    for day in range(len(timeline.points)):
        best: tuple[float, float, float] | None = None
        for window, days in (("1d", 1), ("7d", 7)):
            n = timeline.delta(day, days, series(m.LABELED_PREDICTIONS), **{MODEL: model})
            if baseline is None or sd is None or n < _value("min_labeled_predictions"):
                continue
            correct = timeline.delta(day, days, series(m.CORRECT_PREDICTIONS), **{MODEL: model})
            limit = stats.threshold(minimum, _z("quality", window), stats.standard_error(sd, n, rows))
            shortfall = baseline - correct / n
            if best is None or shortfall - limit > best[0] - best[1]:
                best = (shortfall, limit, n)
        effect.append(None if best is None else best[0])
        threshold.append(None if best is None else best[1])
        count.append(None if best is None else best[2])
    return Test(effect, threshold, count)
