"""Change detection (the shipped alerts' tests) and windowed ratios of the demo, on hand-made snapshots."""

from __future__ import annotations

import pytest

from otel_ml.demo import detection
from otel_ml.demo.metrics import Snapshot, series
from otel_ml.demo.models import ROUTER
from otel_ml.demo.timeline import FEATURE, MODEL, Timeline
from otel_ml.semconv import metrics as m


def _drift_timeline(shift_day: int) -> Timeline:
    """Router traffic of 1000 predictions a day over two bins of feature `x` (reference 50/50, 2000 rows), 60/40
    (PSI 0.04, significant but below the minimum effect) before ``shift_day``, 85/15 from it (PSI 0.5)."""
    def snap(day: int, totals: tuple[float, float]) -> Snapshot:
        s = Snapshot(float(day))
        for b, share in (("<0", 0.5), (">=0", 0.5)):
            s.add(series(m.REFERENCE_FEATURE_BIN_SHARE), {MODEL: ROUTER, FEATURE: "x", "ml_bin": b}, share)
        s.add(series(m.REFERENCE_ROWS), {MODEL: ROUTER}, 2000.0)
        s.add(series(m.FEATURE_BIN_OBSERVATIONS), {MODEL: ROUTER, FEATURE: "x", "ml_bin": "<0"}, totals[0])
        s.add(series(m.FEATURE_BIN_OBSERVATIONS), {MODEL: ROUTER, FEATURE: "x", "ml_bin": ">=0"}, totals[1])
        s.add(series(m.PREDICTIONS), {MODEL: ROUTER}, totals[0] + totals[1])
        return s

    tl = Timeline(days=8, start=snap(-1, (0.0, 0.0)))
    low = high = 0.0
    for day in range(8):
        a, b = (850.0, 150.0) if day >= shift_day else (600.0, 400.0)
        low, high = low + a, high + b
        tl.points.append(snap(day, (low, high)))
    return tl


def test_feature_drift_is_detected_the_day_it_is_significant_and_larger_than_the_minimum_effect() -> None:
    test = detection.feature_drift(_drift_timeline(5), ROUTER, "x")
    assert test.effect[0] == pytest.approx(0.0405, abs=1e-3)  # significant at 1000 a day, but below 0.1
    assert test.threshold[0] == pytest.approx(0.1)
    assert test.first_day() == 5
    assert detection.feature_drift(_drift_timeline(99), ROUTER, "x").first_day() is None


def test_no_reference_no_detection() -> None:
    tl = Timeline(days=2, start=Snapshot(0.0))
    tl.points += [Snapshot(1.0), Snapshot(2.0)]
    assert detection.feature_drift(tl, ROUTER, "x").first_day() is None
    assert detection.unseen_class(tl, ROUTER).first_day() is None


def _snap(t: float, predictions: float, labeled: float, correct: float) -> Snapshot:
    s = Snapshot(t)
    for name, value in ((m.PREDICTIONS, predictions), (m.LABELED_PREDICTIONS, labeled),
                        (m.CORRECT_PREDICTIONS, correct)):
        # two segments and a second processor replica: summed like PromQL's sum()
        s.add(series(name), {MODEL: ROUTER, "ml_segment": "region=eu", "instance": "a"}, value / 2)
        s.add(series(name), {MODEL: ROUTER, "ml_segment": "region=eu", "instance": "b"}, value / 4)
        s.add(series(name), {MODEL: ROUTER, "ml_segment": "region=us", "instance": "a"}, value / 4)
        s.add(series(name), {MODEL: "other", "ml_segment": "", "instance": "a"}, 1000.0)
    return s


def test_windowed_ratios_are_differences_of_cumulative_counters() -> None:
    tl = Timeline(days=3, start=_snap(0, 0, 0, 0))
    tl.points += [_snap(1, 100, 10, 9), _snap(2, 200, 40, 30), _snap(3, 300, 80, 50)]
    assert tl.traffic(ROUTER) == [100, 100, 100]
    assert tl.realized_accuracy(ROUTER, window=1) == pytest.approx([0.9, 21 / 30, 20 / 40])
    assert tl.realized_accuracy(ROUTER, window=2) == pytest.approx([0.9, 30 / 40, 41 / 70])
    assert tl.label_coverage(ROUTER, window=3) == pytest.approx([0.1, 0.2, 80 / 300])
