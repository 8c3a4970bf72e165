"""Change detection and windowed ratios of the demo, on hand-made snapshots (no processes)."""

from __future__ import annotations

import pytest

from otel_ml.demo.analysis import detect
from otel_ml.demo.metrics import Snapshot, series
from otel_ml.demo.models import ROUTER
from otel_ml.demo.timeline import MODEL, Timeline
from otel_ml.semconv import metrics as m


def test_detect_finds_the_first_day_outside_the_baseline_band() -> None:
    values = [None, 0.10, 0.12, 0.11, 0.10, 0.13, 0.30, 0.40]
    day, base = detect(values, baseline_days=5, min_effect=0.1)
    assert day == 6
    assert base == pytest.approx(0.1075)  # days 1-4 (day 0: windows still filling)


def test_detect_ignores_changes_below_the_minimum_effect_and_noise() -> None:
    assert detect([0.1, 0.1, 0.12, 0.1, 0.15, 0.18], baseline_days=4, min_effect=0.1)[0] is None
    noisy = [0.0, 0.0, 0.3, 0.0, 0.3, 0.0, 0.45]
    assert detect(noisy, baseline_days=6, min_effect=0.05)[0] is None  # within 4 sd of a noisy baseline


def test_detect_without_data() -> None:
    assert detect([None, None, None], baseline_days=2, min_effect=0.1) == (None, None)


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
