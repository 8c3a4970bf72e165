"""What changed, when, and how it moved quality: findings read off the metric time series alone.

Each injected change has a *signal* (a series an on-call engineer would look at) and is detected by the test of the
alert that would page for it, with the shipped defaults (:mod:`otel_ml.demo.detection`): the first day the change is
significant and larger than the alert's minimum effect. The schedule is used only to put the detected day next to
the injected one and to name the change; the detection itself looks at metrics only.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from otel_ml.demo import detection, scenario
from otel_ml.demo.models import ROUTER, TAGGER
from otel_ml.demo.scenario import Schedule
from otel_ml.demo.timeline import Series, Timeline

SEGMENT_DIMENSION = "region"
"""The segment dimension whose weak slices the weak-segment signal follows."""
QUALITY_MIN_EFFECT = detection.DEFAULTS.value("quality_min_effect")
"""The shipped alerts' smallest quality drop that pages (the significance threshold can be larger)."""


@dataclass(frozen=True, slots=True)
class Signal:
    """How one change shows in the metrics, and the alert that detects it."""

    key: str
    name: str
    alert: str
    unit: str = ""


SIGNALS: dict[str, Signal] = {
    "feature_drift": Signal("feature_drift", f"PSI of `{scenario.DRIFTING_FEATURE}` over the day "
                            "(ml.feature.bin.observations)", "MLModelFeatureDrift"),
    "weak_segment": Signal("weak_segment", "share of traffic in weak region slices of the evaluation set "
                           "(ml.weak_segment.predictions)", "MLModelWeakSegmentTrafficRising", "%"),
    "unseen_class": Signal("unseen_class", "share of predictions of unseen classes (ml.unseen_class_predictions)",
                           "MLModelUnseenClass", "%"),
    "set_size": Signal("set_size", "PSI of the tags-per-ticket distribution over the day "
                       "(ml.multilabel.set_size.bin.observations)", "MLModelPredictionsPerSampleShift"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    """One change, as detected from the metrics.

    Attributes:
        key: Change key.
        what: The change, in words.
        injected_day: Day the change started.
        detected_day: First day its signal left the baseline band, or ``None``.
        signal: What was looked at.
        before: Baseline mean of the signal.
        after: Signal on the last day.
        quality: The quality metric the change hurts (router accuracy, or the tagger's precision).
        estimated: Its mean label-free estimate in the days before and after the change started (``None`` when the
            metric has no estimate).
        realized: Same for the realized value (labels arrive late, so this lags).
        unit: ``%`` when the signal is a share.
        context: One more line for people (e.g. how many tags per ticket), or ``""``.
    """

    key: str
    what: str
    injected_day: int
    detected_day: int | None
    signal: str
    before: float | None
    after: float | None
    quality: str
    estimated: tuple[float | None, float | None]
    realized: tuple[float | None, float | None]
    unit: str = ""
    context: str = ""


@dataclass(frozen=True, slots=True)
class QualityMove:
    """How a quality series moved over the period."""

    name: str
    baseline: float | None
    start: float | None
    end: float | None
    first_below_day: int | None


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything the summary and the report say."""

    findings: tuple[Finding, ...]
    quality: tuple[QualityMove, ...]
    unseen_classes: tuple[str, ...]
    weak_segments: tuple[str, ...]
    estimator: str | None


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _last(values: Series) -> float | None:
    return next((v for v in reversed(values) if v is not None), None)


def signal_series(timeline: Timeline, key: str) -> Series:
    """The series of the signal of change ``key``."""
    if key == "feature_drift":
        return detection.feature_drift(timeline, ROUTER, scenario.DRIFTING_FEATURE).effect
    if key == "weak_segment":
        return timeline.weak_share(dimension=SEGMENT_DIMENSION)
    if key == "unseen_class":
        return timeline.unseen_share()
    if key == "set_size":
        return detection.set_size_drift(timeline, TAGGER).effect
    raise KeyError(key)


def detected_day(timeline: Timeline, key: str) -> int | None:
    """First day the alert of change ``key`` would fire (its test, shipped defaults, day window)."""
    if key == "feature_drift":
        return detection.feature_drift(timeline, ROUTER, scenario.DRIFTING_FEATURE).first_day()
    if key == "weak_segment":
        return detection.weak_segment(timeline, ROUTER, f"{SEGMENT_DIMENSION}=").first_day()
    if key == "unseen_class":
        return detection.unseen_class(timeline, ROUTER).first_day()
    if key == "set_size":
        days = [d for d in (detection.predictions_per_sample(timeline, TAGGER).first_day(),
                            detection.set_size_drift(timeline, TAGGER).first_day()) if d is not None]
        return min(days, default=None)
    raise KeyError(key)


def analyze(timeline: Timeline, schedule: Schedule) -> Analysis:
    """Findings for every change and the movement of realized and estimated quality."""
    days = len(timeline.points)
    starts = sorted(c.start_day(timeline.days) for c in schedule.changes)
    baseline_days = starts[0]
    estimated, _ = timeline.estimated_accuracy(ROUTER)
    realized = timeline.realized_accuracy(ROUTER)
    tagger_precision = timeline.micro_precision(TAGGER)
    tagger_exact = timeline.exact_match(TAGGER)
    findings = []
    for change in schedule.changes:
        sig = SIGNALS[change.key]
        values = signal_series(timeline, change.key)
        detected = detected_day(timeline, change.key)
        before = _mean(values[1:baseline_days])
        start = change.start_day(timeline.days)
        later = [s for s in starts if s > start]
        end = later[0] if later else days
        earlier = [s for s in starts if s < start]
        prev = earlier[-1] if earlier else 0
        est: Series = estimated
        real: Series = realized
        hurt = f"{ROUTER} accuracy"
        context = ""
        if change.key == "set_size":
            # Multilabel: correct = exact match, estimated from the tagger's reference (P(exact match)).
            hurt, (est, _), real = f"{TAGGER} exact-match accuracy", timeline.estimated_accuracy(TAGGER), tagger_exact
            tags = timeline.tags_per_sample(TAGGER)
            context = (f"tags predicted per ticket (ml.multilabel.predicted_labels): "
                       f"{_fmt(_mean(tags[1:start]))} -> {_fmt(_last(tags))}; micro precision "
                       f"{_fmt(_mean(tagger_precision[prev:start]))} -> {_fmt(_mean(tagger_precision[start:end]))}")
        findings.append(Finding(
            key=change.key, what=change.what, injected_day=start, detected_day=detected, signal=sig.name,
            before=before, after=_last(values), quality=hurt,
            estimated=(_mean(est[prev:start]), _mean(est[start:end])),
            realized=(_mean(real[prev:start]), _mean(real[start:end])), unit=sig.unit, context=context,
        ))
    baseline = timeline.baseline(ROUTER)
    quality = (
        QualityMove("estimated accuracy", baseline, _mean(estimated[1:baseline_days]), _last(estimated),
                    detection.estimated_quality(timeline, ROUTER).first_day()),
        QualityMove("realized accuracy", baseline, _mean(realized[1:baseline_days]), _last(realized),
                    detection.realized_quality(timeline, ROUTER).first_day()),
    )
    return Analysis(tuple(findings), quality, tuple(timeline.unseen_classes()), tuple(timeline.weak_segments()),
                    timeline.estimator())


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if unit == "%" else f"{value:.3f}"


def summary(result: Analysis, days: int) -> str:
    """The closing summary printed by ``otel-ml demo``."""
    lines = ["", "What changed (days counted from 1; everything read back from otel-ml's metrics):"]
    for f in result.findings:
        if f.before is None and f.after is None:
            when = "no data (is the processor's `reference:` section set and the reference loaded?)"
        elif f.detected_day is None:
            when = f"NOT detected ({SIGNALS[f.key].alert} would not fire)"
        else:
            when = f"detected on day {f.detected_day + 1} ({SIGNALS[f.key].alert} would fire)"
        lines.append(f"  day {f.injected_day + 1:>2}: {f.what}")
        lines.append(f"          {when}: {f.signal} {_fmt(f.before, f.unit)} -> {_fmt(f.after, f.unit)}")
        if f.context:
            lines.append(f"          {f.context}")
        moved = f"realized {_fmt(f.realized[0])} -> {_fmt(f.realized[1])}"
        if f.estimated != (None, None):
            moved = f"estimated {_fmt(f.estimated[0])} -> {_fmt(f.estimated[1])}, " + moved
        lines.append(f"          {f.quality}, days before vs after: {moved}")
    if result.unseen_classes:
        lines.append(f"  unseen classes predicted: {', '.join(result.unseen_classes)}")
    if result.weak_segments:
        segments = [w for w in result.weak_segments if w.startswith(f"{SEGMENT_DIMENSION}=")]
        others = len(result.weak_segments) - len(segments)
        more = f" (and {others} weak slices of binned features)" if others else ""
        reached = ", ".join(segments) or "none"
        lines.append(f"  weak segments of the evaluation set that traffic reached: {reached}{more}")
    lines.append("")
    lines.append(f"How quality moved over {days} days (router, evaluation baseline "
                 f"{_fmt(result.quality[0].baseline)}; the quality alerts fire on a significant drop of at least "
                 f"{QUALITY_MIN_EFFECT:.2f}):")
    for q in result.quality:
        below = f"first significant drop on day {q.first_below_day + 1}" if q.first_below_day is not None \
            else "no significant drop"
        lines.append(f"  {q.name:<19} {_fmt(q.start)} -> {_fmt(q.end)}; {below}")
    est, real = result.quality
    if est.start is not None and est.end is not None and real.start is not None and real.end is not None:
        real_drop, est_drop = real.start - real.end, est.start - est.end
        if real_drop > QUALITY_MIN_EFFECT:
            lines.append(f"  without a single label, the estimate ({result.estimator}) saw {est_drop:.3f} of the "
                         f"{real_drop:.3f} drop the late labels measured ({est_drop / real_drop:.0%}); "
                         "only labels show the rest")
    if est.first_below_day is not None and (real.first_below_day is None or est.first_below_day < real.first_below_day):
        lead = "" if real.first_below_day is None else f" {real.first_below_day - est.first_below_day} day(s)"
        lines.append(f"  the label-free estimate ({result.estimator}) saw the decline{lead} before the late, partial "
                     "labels did")
    return "\n".join(lines)
