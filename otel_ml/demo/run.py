"""The demo's production period: instrumented models serve simulated days of traffic through the real pipeline.

Per simulated day: draw the day's tickets, run both models, log every prediction through
:class:`otel_ml.ModelMonitor` (batch API, one event per row on the wire), log the labels that are due (late, for a
share of the traffic), flush, wait until the processor has counted what was sent, read a metric snapshot, print
a progress line. Nothing is precomputed: the summary and the report are derived from the snapshots only.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import otel_ml
from otel_ml.demo import scenario
from otel_ml.demo.metrics import Snapshot, series
from otel_ml.demo.models import ROUTER, ROUTER_VERSION, TAGGER, Models, tag_lists
from otel_ml.demo.scenario import Schedule
from otel_ml.demo.stack import Stack
from otel_ml.demo.timeline import MODEL, Timeline
from otel_ml.semconv import metrics as m
from otel_ml.semconv.attributes import Task


@dataclass(slots=True)
class Settings:
    """How long and how big the production period is."""

    days: int = 28
    day_seconds: float = 2.0
    per_day: int = 1000
    seed: int = 7
    schedule: Schedule = field(default_factory=Schedule)


@dataclass(slots=True)
class _PendingLabels:
    """Labels due on a future day."""

    monitor: otel_ml.ModelMonitor
    ids: list[str]
    labels: list[Any]


@dataclass(slots=True)
class Monitors:
    """The instrumented models' monitors (one per tagger version)."""

    router: otel_ml.ModelMonitor
    taggers: dict[str, otel_ml.ModelMonitor]

    @staticmethod
    def create(router_classes: list[str]) -> Monitors:
        """Monitors for the router and both tagger versions, as serving code would declare them."""
        # The router also captures `region` as a feature: its reference's correctness estimator learns from it.
        router = otel_ml.ModelMonitor(ROUTER, version=ROUTER_VERSION, task=Task.MULTICLASS, classes=router_classes,
                                      features=[*scenario.FEATURES, "region"], segments=["region"])
        taggers = {v: otel_ml.ModelMonitor(TAGGER, version=v, task=Task.MULTILABEL, classes=list(scenario.TAGS),
                                           features=list(scenario.FEATURES), segments=["region"])
                   for v in ("1", "2")}
        return Monitors(router, taggers)


def _features(tickets: scenario.Tickets) -> dict[str, np.ndarray]:
    return {name: tickets.features[:, i] for i, name in enumerate(scenario.FEATURES)}


def _sent_counts(snapshot: Snapshot) -> tuple[float, float]:
    """Predictions and labels the processor has accepted so far (both models)."""
    models = (ROUTER, TAGGER)
    preds = sum(snapshot.total(series(m.PREDICTIONS), **{MODEL: name}) for name in models)
    labels = sum(snapshot.total(series(m.LABELS), **{MODEL: name}) for name in models)
    return preds, labels


class ProductionRun:
    """Runs the simulated days and collects the timeline."""

    def __init__(self, settings: Settings, models: Models, stack: Stack, monitors: Monitors,
                 progress: Callable[[int, Timeline, str], None]) -> None:
        self.settings = settings
        self.models = models
        self.stack = stack
        self.monitors = monitors
        self.progress = progress
        self.rng = np.random.default_rng(settings.seed + 1)
        self.pending: dict[int, list[_PendingLabels]] = defaultdict(list)
        self.sent_predictions = 0
        self.sent_labels = 0
        self._counted_before = (0.0, 0.0)  # a long-running stack may have counted earlier runs

    def _schedule_labels(self, day: int, monitor: otel_ml.ModelMonitor, ids: list[str], labels: list[Any]) -> None:
        s = self.settings.schedule
        n = len(ids)
        chosen = np.flatnonzero(self.rng.random(n) < s.label_share)
        delays = self.rng.integers(s.label_delay_days[0], s.label_delay_days[1] + 1, size=chosen.size)
        for delay in np.unique(delays):
            rows = chosen[delays == delay]
            self.pending[day + int(delay)].append(
                _PendingLabels(monitor, [ids[i] for i in rows], [labels[i] for i in rows]))

    def _serve_day(self, day: int) -> str:
        s = self.settings
        tickets = scenario.production_day(self.rng, s.schedule, day, s.days, s.per_day)
        x = tickets.features
        feats = _features(tickets)
        segments = {"region": tickets.region}
        team, proba = self.models.route(x)
        ids = list(self.monitors.router.log_predictions(team, scores=proba, features={**feats, **segments},
                                                        segments=segments))
        self._schedule_labels(day, self.monitors.router, ids, list(tickets.team))
        version, threshold = scenario.tagger_threshold(s.schedule, day, s.days)
        tags, tag_proba = self.models.tag(x, threshold)
        tagger = self.monitors.taggers[version]
        tag_ids = list(tagger.log_predictions(tag_lists(tags), scores=tag_proba, features=feats, segments=segments))
        self._schedule_labels(day, tagger, tag_ids, tag_lists(tickets.tags))
        self.sent_predictions += len(ids) + len(tag_ids)
        for due in self.pending.pop(day, []):
            due.monitor.log_labels(due.ids, due.labels)
            self.sent_labels += len(due.ids)
        events = [c.key for c in s.schedule.changes if c.start_day(s.days) == day]
        return ", ".join(events)

    def _wait_for_processor(self, deadline: float) -> Snapshot:
        """Snapshots until the processor has accepted everything sent (or the day is over)."""
        while True:
            snap = self.stack.source.snapshot()
            preds, labels = _sent_counts(snap)
            preds, labels = preds - self._counted_before[0], labels - self._counted_before[1]
            if (preds >= self.sent_predictions and labels >= self.sent_labels) or time.monotonic() >= deadline:
                return snap
            if self.stack.processor is not None and self.stack.processor.poll() is not None:
                raise RuntimeError(f"the processor exited:\n{self.stack.log_tail()}")
            time.sleep(0.05)

    def run(self) -> Timeline:
        """Serve every day and return the snapshots."""
        s = self.settings
        timeline = Timeline(s.days, self.stack.source.snapshot())
        self._counted_before = _sent_counts(timeline.start)
        for day in range(s.days):
            started = time.monotonic()
            note = self._serve_day(day)
            otel_ml.force_flush()
            snap = self._wait_for_processor(started + max(s.day_seconds, 1.0) * 5)
            rest = s.day_seconds - (time.monotonic() - started)
            if rest > 0:
                time.sleep(rest)
                snap = self.stack.source.snapshot()
            timeline.points.append(snap)
            self.progress(day, timeline, note)
        return timeline


def write_evaluation_set(path: Path, models: Models, rng: np.random.Generator) -> Path:
    """Score the evaluation set with both models and write it as Parquet (one row per ticket).

    Columns: the features, ``region``, the router's ``team`` (truth), ``team_pred`` and ``p_<class>`` scores, and
    the tagger's ``tags`` (truth) and ``tags_pred`` as ``a|b`` strings (threshold 0.5).
    """
    import pandas as pd

    ev = scenario.evaluation_set(rng)
    team, proba = models.route(ev.features)
    tags, _ = models.tag(ev.features, scenario.TAGGER_THRESHOLD)
    frame = pd.DataFrame(_features(ev))
    frame["region"] = ev.region
    frame["team"] = ev.team
    frame["team_pred"] = team
    for i, cls in enumerate(models.router.classes_):
        frame[f"p_{cls}"] = proba[:, i]
    frame["tags"] = ["|".join(t) for t in tag_lists(ev.tags)]
    frame["tags_pred"] = ["|".join(t) for t in tag_lists(tags)]
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path
