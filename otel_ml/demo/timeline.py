"""Daily time series of the demo, derived from metric snapshots exactly as the dashboards' PromQL derives them.

One :class:`Snapshot` is read after every simulated day (plus one before the first). Counters become windowed
ratios by differencing (``increase(a[w]) / increase(b[w])``); gauges are read as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from otel_ml.demo import scenario
from otel_ml.demo.metrics import Snapshot, series
from otel_ml.demo.models import ROUTER, TAGGER
from otel_ml.estimation.estimate import SHIFT_ALLOWANCE, Z
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Outcome, QualityMetric
from otel_ml.semconv.prometheus import label_name

MODEL = label_name(a.ML_MODEL_NAME)
CLASS = label_name(a.ML_CLASS)
OUTCOME = label_name(a.ML_OUTCOME)
ESTIMATOR = label_name(a.ML_ESTIMATOR)
FEATURE = label_name(a.ML_FEATURE_NAME)
METHOD = label_name(a.ML_DRIFT_METHOD)
METRIC = label_name(a.ML_METRIC)
QUALITY_WINDOW_DAYS = 3
"""Window of the quality ratios (labels are sparse: a one-day window would be noisy)."""

Series = list[float | None]


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


@dataclass(slots=True)
class Timeline:
    """Snapshots after each day and the series derived from them.

    Attributes:
        days: Length of the period.
        start: Snapshot before the first day.
        points: Snapshot after each completed day, in order.
    """

    days: int
    start: Snapshot
    points: list[Snapshot] = field(default_factory=list)

    def _at(self, day: int) -> Snapshot:
        return self.start if day < 0 else self.points[day]

    def _delta(self, day: int, window: int, name: str, **match: str) -> float:
        return self._at(day).total(name, **match) - self._at(day - window).total(name, **match)

    def delta(self, day: int, window: int, name: str, **match: str) -> float:
        """Increase of counter ``name`` (matching samples summed) over the ``window`` days ending with ``day``."""
        return self._delta(day, window, name, **match)

    def gauge(self, name: str, **match: str) -> float | None:
        """Largest matching gauge value after the last day (reference gauges: the same every day)."""
        return self._at(len(self.points) - 1).maximum(name, **match)

    def gauges_by(self, name: str, label: str, **match: str) -> dict[str, float]:
        """Matching gauge values after the last day, by the value of ``label`` (largest per value)."""
        out: dict[str, float] = {}
        for labels, value in self._at(len(self.points) - 1).select(name, **match):
            key = labels.get(label, "")
            out[key] = max(value, out.get(key, value))
        return out

    def estimated_sums(self, model: str, day: int, window: int) -> tuple[float, float, float]:
        """Estimated predictions, sum of P(correct) and sum of p(1-p) of the dashboards' estimator over the window
        (the pessimistic sum where the processor exports it)."""
        est = self.estimator(model)
        if est is None:
            return 0.0, 0.0, 0.0
        sel = {MODEL: model, ESTIMATOR: est}
        n = self._delta(day, window, series(m.ESTIMATED_PREDICTIONS), **sel)
        correct = series(m.ESTIMATED_PESSIMISTIC_CORRECT_PREDICTIONS)
        if not any(True for _ in self._at(len(self.points) - 1).select(correct, **sel)):
            correct = series(m.ESTIMATED_CORRECT_PREDICTIONS)
        return (n, self._delta(day, window, correct, **sel),
                self._delta(day, window, series(m.ESTIMATED_CORRECT_VARIANCE), **sel))

    def _windowed(self, num: str, den: str, window: int, num_match: dict[str, str] | None = None,
                  den_match: dict[str, str] | None = None) -> Series:
        nm, dm = num_match or {}, den_match or {}
        if not any(True for _ in self._at(len(self.points) - 1).select(num, **nm)):
            return [None] * len(self.points)  # the processor does not export this metric (e.g. no reference)
        return [_ratio(self._delta(d, window, num, **nm), self._delta(d, window, den, **dm))
                for d in range(len(self.points))]

    # --- router (multiclass) ---------------------------------------------------------------------------------------
    def traffic(self, model: str) -> Series:
        """Predictions per day."""
        return [self._delta(d, 1, series(m.PREDICTIONS), **{MODEL: model}) for d in range(len(self.points))]

    def realized_accuracy(self, model: str = ROUTER, window: int = QUALITY_WINDOW_DAYS) -> Series:
        """Correct / labeled predictions joined in the window (labels arrive late: this lags)."""
        sel = {MODEL: model}
        return self._windowed(series(m.CORRECT_PREDICTIONS), series(m.LABELED_PREDICTIONS), window, sel, sel)

    def label_coverage(self, model: str = ROUTER, window: int = QUALITY_WINDOW_DAYS) -> Series:
        """Labeled / all predictions in the window."""
        sel = {MODEL: model}
        return self._windowed(series(m.LABELED_PREDICTIONS), series(m.PREDICTIONS), window, sel, sel)

    def estimator(self, model: str = ROUTER) -> str | None:
        """The estimator whose estimates the dashboards show (the one that estimated the most predictions)."""
        counts = self._at(len(self.points) - 1).by(series(m.ESTIMATED_PREDICTIONS), ESTIMATOR, **{MODEL: model})
        return max(sorted(counts), key=lambda k: counts[k]) if counts else None

    def estimated_accuracy(self, model: str = ROUTER, window: int = QUALITY_WINDOW_DAYS) -> tuple[Series, Series]:
        """Estimated accuracy (sum of correctness probabilities / estimated predictions) and its interval half-width.

        The half-width is the one the estimation stage documents and the dashboards draw:
        ``Z * sqrt(increase(correct_variance)) / increase(estimated) + error_margin
        + SHIFT_ALLOWANCE * |estimate - baseline|``.
        """
        est = self.estimator(model)
        if est is None:
            return [None] * len(self.points), [None] * len(self.points)
        sel = {MODEL: model, ESTIMATOR: est}
        baseline = self.baseline(model)
        values: Series = []
        half: Series = []
        for d in range(len(self.points)):
            n = self._delta(d, window, series(m.ESTIMATED_PREDICTIONS), **sel)
            s = self._delta(d, window, series(m.ESTIMATED_CORRECT_PREDICTIONS), **sel)
            v = self._delta(d, window, series(m.ESTIMATED_CORRECT_VARIANCE), **sel)
            margin = self.points[d].maximum(series(m.ESTIMATOR_ERROR_MARGIN),
                                            **{MODEL: model, METRIC: QualityMetric.ACCURACY}) or 0.0
            value = _ratio(s, n)
            values.append(value)
            if value is None:
                half.append(None)
                continue
            shift = abs(value - baseline) if baseline is not None else 0.0
            half.append(Z * math.sqrt(max(v, 0.0)) / n + margin + SHIFT_ALLOWANCE * shift)
        return values, half

    def baseline(self, model: str = ROUTER, metric: str = QualityMetric.ACCURACY) -> float | None:
        """The evaluation-set value of ``metric`` (``ml.reference.metric`` gauge)."""
        return self._at(len(self.points) - 1).maximum(series(m.REFERENCE_METRIC), **{MODEL: model, METRIC: metric})

    def unseen_share(self, model: str = ROUTER) -> Series:
        """Share of the day's predictions of a class the evaluation set never had."""
        return self._windowed(series(m.UNSEEN_CLASS_PREDICTIONS), series(m.PREDICTIONS), 1, {MODEL: model},
                              {MODEL: model})

    def unseen_classes(self, model: str = ROUTER) -> list[str]:
        """Unseen classes predicted during the period."""
        counts = self._at(len(self.points) - 1).by(series(m.UNSEEN_CLASS_PREDICTIONS), CLASS, **{MODEL: model})
        return sorted(k for k, v in counts.items() if v > 0)

    def weak_share(self, model: str = ROUTER, dimension: str = "region") -> Series:
        """Share of the day's predictions in the weak slices of segment ``dimension`` found on the evaluation set.

        Weak slices of binned features exist too (``ml_weak_segment="message_length=[...)"``); they overlap with the
        segment slices, so their counts are not added up here.
        """
        name, label = series(m.WEAK_SEGMENT_PREDICTIONS), label_name(a.ML_WEAK_SEGMENT)
        slices = [k for k in self._at(len(self.points) - 1).by(name, label, **{MODEL: model})
                  if k.startswith(f"{dimension}=")]
        if not slices:
            return [None] * len(self.points)
        out: Series = []
        for d in range(len(self.points)):
            hits = sum(self._delta(d, 1, name, **{MODEL: model, label: k}) for k in slices)
            out.append(_ratio(hits, self._delta(d, 1, series(m.PREDICTIONS), **{MODEL: model})))
        return out

    def weak_segments(self, model: str = ROUTER) -> list[str]:
        """Weak slices traffic fell into."""
        label = label_name(a.ML_WEAK_SEGMENT)
        counts = self._at(len(self.points) - 1).by(series(m.WEAK_SEGMENT_PREDICTIONS), label, **{MODEL: model})
        return sorted(k for k, v in counts.items() if v > 0)

    def drift(self, feature: str, model: str = ROUTER) -> Series:
        """Drift distance of ``feature`` (largest over the exported methods) after each day."""
        return [p.maximum(series(m.FEATURE_DRIFT), **{MODEL: model, FEATURE: feature}) for p in self.points]

    def drift_methods(self, model: str = ROUTER) -> list[str]:
        """Drift methods the processor exports for the model's features."""
        last = self._at(len(self.points) - 1)
        return sorted(last.by(series(m.FEATURE_DRIFT), METHOD, **{MODEL: model}))

    # --- tagger (multilabel) ---------------------------------------------------------------------------------------
    def set_size_drift(self, model: str = TAGGER) -> Series:
        """Drift of the predicted-labels-per-sample distribution against the reference, at prediction time."""
        return [p.maximum(series(m.SET_SIZE_DRIFT), **{MODEL: model}) for p in self.points]

    def tags_per_sample(self, model: str = TAGGER) -> Series:
        """Average number of predicted labels per sample on each day."""
        h = m.MULTILABEL_PREDICTED_LABELS
        return self._windowed(series(h, "sum"), series(h, "count"), 1, {MODEL: model}, {MODEL: model})

    def exact_match(self, model: str = TAGGER, window: int = QUALITY_WINDOW_DAYS) -> Series:
        """Joined samples whose predicted set equals the true set."""
        return self.realized_accuracy(model, window)

    def micro_precision(self, model: str = TAGGER, window: int = QUALITY_WINDOW_DAYS) -> Series:
        """tp / (tp + fp) over every label, joined in the window."""
        name = series(m.CLASSIFICATION_OUTCOMES)
        out: Series = []
        for d in range(len(self.points)):
            tp = self._delta(d, window, name, **{MODEL: model, OUTCOME: Outcome.TP})
            fp = self._delta(d, window, name, **{MODEL: model, OUTCOME: Outcome.FP})
            out.append(_ratio(tp, tp + fp))
        return out

    def features(self) -> tuple[str, ...]:
        """The router's monitored features."""
        return scenario.FEATURES
