"""``otel-ml demo`` end to end in its short mode: a real processor, real events, metrics read back.

The summary must name every injected change on (or shortly after) the day it was injected, from the metrics
alone, and show the decline of realized and estimated quality; the report must be a self-contained HTML file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_ml.demo import cli, run
from otel_ml.demo.cli import Outcome
from otel_ml.demo.models import ROUTER

pytestmark = pytest.mark.integration

DETECTION_LAG_DAYS = 3
"""Longest accepted delay between a change and its detection (labels arrive 1-3 days late)."""


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    days, seconds, per_day = cli.QUICK
    settings = run.Settings(days=days, day_seconds=seconds, per_day=per_day)
    return cli.execute(settings, tmp_path_factory.mktemp("demo") / "out")


def _finding(outcome: Outcome, key: str) -> object:
    return next(f for f in outcome.analysis.findings if f.key == key)


def test_realized_quality_declines_and_the_summary_says_when(outcome: Outcome) -> None:
    realized = next(q for q in outcome.analysis.quality if q.name == "realized accuracy")
    assert realized.start is not None and realized.end is not None
    assert realized.start > 0.8
    assert realized.end < realized.start - 0.1
    assert "How quality moved" in outcome.summary
    traffic = outcome.timeline.traffic(ROUTER)
    assert traffic == [float(cli.QUICK[2])] * cli.QUICK[0]  # every prediction sent was counted by the processor, once


def test_predictions_per_sample_rise_is_detected(outcome: Outcome) -> None:
    f = _finding(outcome, "set_size")
    assert f.detected_day is not None, outcome.summary
    assert f.injected_day <= f.detected_day <= f.injected_day + DETECTION_LAG_DAYS, outcome.summary
    assert f.after is not None and f.before is not None and f.after > f.before + 0.5
    assert "tags predicted per ticket" in f.context


def test_report_is_self_contained_html(outcome: Outcome) -> None:
    assert outcome.report is not None
    text = Path(outcome.report).read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count('src="data:image/png;base64,') == 4
    assert "http://" not in text.replace("http://127.0.0.1", "") and "https://" not in text  # nothing fetched
    for f in outcome.analysis.findings:
        assert f.what.split("`")[0][:20] in text


@pytest.mark.parametrize("key", ["feature_drift", "weak_segment", "unseen_class"])
def test_reference_based_changes_are_detected(outcome: Outcome, key: str) -> None:
    f = _finding(outcome, key)
    assert f.detected_day is not None, outcome.summary
    assert f.injected_day <= f.detected_day <= f.injected_day + DETECTION_LAG_DAYS, outcome.summary


def test_estimated_quality_declines_without_labels(outcome: Outcome) -> None:
    est, _ = outcome.analysis.quality
    assert est.start is not None and est.end is not None and est.end < est.start - 0.05, outcome.summary
    first_change = min(f.injected_day for f in outcome.analysis.findings)
    assert est.first_below_day is not None and est.first_below_day >= first_change, outcome.summary
    weak = next(f for f in outcome.analysis.findings if f.key == "weak_segment")
    assert weak.estimated[0] is not None and weak.estimated[1] is not None
    assert weak.estimated[1] < weak.estimated[0] - 0.03, outcome.summary  # the estimate sees the segment shift
    assert outcome.analysis.unseen_classes == ("mystery",)
    assert "region=apac" in outcome.analysis.weak_segments
