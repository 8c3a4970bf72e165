"""A window's estimate and its interval: :class:`Estimate` and the constants that widen the band.

``lower``/``upper`` = ``value -/+ (z * sampling_sd + z * calibration_sd + error_margin + shift_allowance +
drift_allowance)``, widened further to the pessimistic and optimistic bounds when part of the window has unknown
correctness (see :mod:`otel_ml.estimation`, "Intervals"). The processor exports the additive parts so that PromQL
rebuilds the same band (:mod:`otel_ml.processor.stages.estimation`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from otel_ml.estimation import metrics as m

Z: float = 1.645
"""Standard deviations of sampling noise in an interval (a two-sided 90 % band before the error margin)."""

SHIFT_ALLOWANCE: float = 0.5
"""Share of the estimated change from the reference metric added to the interval's half-width.

Label-free estimators capture only part of a real quality change (on NannyML's multiclass set both CBPE and a
learned correctness model see about two thirds of the drop); the part they miss grows with the change, so a window
whose estimate moves away from the reference gets a proportionally wider band. Zero for a window estimated at the
reference level."""

DRIFT_ALLOWANCE: float = 0.25
"""Interval widening per unit of feature drift: the window's mean Jensen-Shannon distance (0 = same, 1 = disjoint)
between each feature's binned distribution and the reference's, times this factor, is added to the half-width.
Where production leaves the ground the evaluation set covered, no estimator has evidence; a band that stays narrow
there would be false confidence (on the California set every estimator is off by more than 0.09 in such chunks)."""


@dataclass(frozen=True, slots=True)
class Estimate:
    """A window's estimated metric with its interval.

    ``lower``/``upper`` = ``value -/+ (z * sampling_sd + z * calibration_sd + error_margin + shift_allowance +
    drift_allowance)``, then widened to ``pessimistic`` and ``optimistic`` when they lie outside, clipped to the
    metric's range.

    Attributes:
        metric: Metric name (a :class:`~otel_ml.semconv.attributes.QualityMetric` value).
        value: Point estimate (NaN when undefined, e.g. an empty window).
        lower: Lower bound of the interval.
        upper: Upper bound of the interval.
        n: Rows in the window.
        estimator: Key of the estimator that produced it (``cbpe``, ``atc``, ``learned``, ``blend``, ``dle``,
            ``multilabel``).
        sampling_sd: Standard deviation of the realized metric around its expectation (labels drawn from the
            estimated per-row distribution).
        error_margin: Cross-validated estimation error on the reference beyond sampling noise.
        shift_allowance: :data:`SHIFT_ALLOWANCE` times the distance of ``value`` from the reference metric.
        drift_allowance: :data:`DRIFT_ALLOWANCE` times the window's mean feature drift (Jensen-Shannon).
        calibration_sd: Mean posterior standard deviation of the rows' calibrated correctness beyond the reference
            rows' average: how much less the reference knew about predictions like these than about its own
            (large for a near-perfect reference's rare low-confidence predictions; 0 on typical traffic). Counted
            as perfectly correlated across rows (a calibration error is systematic).
        unknown: Rows of unknown correctness: a predicted class the reference never had, or inputs farther from
            the reference than any of its own rows (:mod:`otel_ml.estimation.novelty`).
        novel_share: Estimated share of the window that comes from outside the reference's distribution
            (unseen classes included); 0 when nothing is novel or novelty is not measured.
        pessimistic: Accuracy if every novel prediction is wrong, less sampling noise, calibration and margin: a
            lower bound for alerts (None where not defined: regression, multilabel; F1 and ROC AUC only when part of
            the window is novel).
        optimistic: Accuracy if every novel prediction is right, plus the same noise (None likewise).
    """

    metric: str
    value: float
    lower: float
    upper: float
    n: int
    estimator: str
    sampling_sd: float
    error_margin: float
    shift_allowance: float = 0.0
    drift_allowance: float = 0.0
    calibration_sd: float = 0.0
    unknown: int = 0
    novel_share: float = 0.0
    pessimistic: float | None = None
    optimistic: float | None = None

    def contains(self, realized: float) -> bool:
        """Whether a realized value falls inside the interval."""
        return bool(self.lower <= realized <= self.upper)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Novelty:
    """What a window's novelty does to its interval.

    Attributes:
        unknown: Rows of unknown correctness (unseen class or out of support).
        share: Estimated share of the window from outside the reference's distribution (unseen classes included).
        pessimistic: The metric if every novel row is wrong (before noise), or None when not defined.
        optimistic: The metric if every novel row is right (before noise), or None.
    """

    unknown: int = 0
    share: float = 0.0
    pessimistic: float | None = None
    optimistic: float | None = None


def interval(metric: str, value: float, sd: float, margin: float, n: int, key: str, z: float,
             reference: float | None, drift: float, calibration: float = 0.0,
             novelty: Novelty | None = None) -> Estimate:
    """The :class:`Estimate` of ``value`` with its band, clipped to the metric's range.

    Args:
        metric: Metric name (regression metrics are errors: clipped at 0 only, drift scaled by ``reference``).
        value: Point estimate.
        sd: Sampling standard deviation (NaN counts as 0).
        margin: Cross-validated error margin.
        n: Rows in the window.
        key: Estimator key reported.
        z: Standard deviations of sampling noise.
        reference: The metric on the reference (``None``: no shift allowance).
        drift: :data:`DRIFT_ALLOWANCE` times the window's feature drift.
        calibration: Mean calibration standard deviation of the window's rows (adds ``z`` times it).
        novelty: Unknown-correctness rows and the bounds they imply (the band is widened to reach them).
    """
    shift = SHIFT_ALLOWANCE * abs(value - reference) if reference is not None and math.isfinite(value) else 0.0
    if metric in m.REGRESSION_METRICS and reference is not None:
        drift *= reference  # errors have the target's scale: widen relative to the reference error
    noise = z * (0.0 if not math.isfinite(sd) else sd) + z * calibration + margin
    half = noise + shift + drift
    lo, hi = value - half, value + half
    novelty = novelty or Novelty()
    pessimistic: float | None = None
    optimistic: float | None = None
    if novelty.pessimistic is not None and math.isfinite(novelty.pessimistic):
        pessimistic = max(novelty.pessimistic - noise, 0.0)
        lo = min(lo, pessimistic)
    if novelty.optimistic is not None and math.isfinite(novelty.optimistic):
        optimistic = min(novelty.optimistic + noise, 1.0)
        hi = max(hi, optimistic)
    if metric not in m.REGRESSION_METRICS:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    else:
        lo = max(lo, 0.0)
    return Estimate(metric, value, lo, hi, n, key, sd, margin, shift, drift, calibration, novelty.unknown,
                    novelty.share, pessimistic, optimistic)
