"""The estimation/drift stage's hooks: each batch through the counters, each tick through the gauges.

See :mod:`otel_ml.processor.stages.estimation` for what it exports; the jobs live in the sibling modules.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from otel_ml.drift.relabel import RelabelSink
from otel_ml.errors import ConfigurationError
from otel_ml.processor.config import DEFAULT_AUC_WINDOW
from otel_ml.processor.stage import BaseStage, MetricSink, PredictionBatch, StageContext
from otel_ml.processor.stages.estimation.artifacts import ArtifactDirectory
from otel_ml.processor.stages.estimation.correctness import estimation_counters
from otel_ml.processor.stages.estimation.novelty import drift_gauges, feature_counters, novelty_counters
from otel_ml.processor.stages.estimation.reference_gauges import reference_gauges
from otel_ml.processor.stages.estimation.relabel_samples import write_relabel_samples
from otel_ml.processor.stages.estimation.weak_segments import weak_segment_counters
from otel_ml.reference.fit import AT_K
from otel_ml.semconv import attributes as a
from otel_ml.semconv import metrics as m

_logger = logging.getLogger(__name__)

MAX_WARNINGS = 1000
"""Distinct (model, message) warnings remembered (each is logged once)."""


class EstimationStage(BaseStage):
    """The built-in estimation/drift stage (see :mod:`otel_ml.processor.stages.estimation`)."""

    name = "estimation"

    def __init__(self, directory: str | Path, *, reload_interval: float, relabel_path: str | Path | None,
                 relabel_max_samples: int, clock: Callable[[], float], auc_window: int = DEFAULT_AUC_WINDOW) -> None:
        self.artifacts = ArtifactDirectory(directory, clock, auc_window)
        self.reload_interval = reload_interval
        self.clock = clock
        self.relabel = RelabelSink(relabel_path, relabel_max_samples) if relabel_path else None
        self._warned: set[tuple[str, str]] = set()
        self.artifacts.scan()

    def on_predictions(self, batch: PredictionBatch, sink: MetricSink) -> None:
        """Estimated correctness, drift counts, weak-segment counts and relabel samples of one batch."""
        rt = self.artifacts.runtime_for(batch.model, batch.version)
        if rt is None or len(batch) == 0:
            return
        art = rt.artifact
        if art.task != batch.task:
            self._warn_once(batch.model, batch.version, f"reference is for task {art.task}, traffic is {batch.task}")
            return
        model_attrs = {a.ML_MODEL_NAME: batch.model, a.ML_MODEL_VERSION: batch.version}
        p, abs_e = estimation_counters(batch, rt, model_attrs, sink)
        unseen_rows = novelty_counters(batch, rt, model_attrs, sink)
        outside = feature_counters(batch, rt, model_attrs, sink)
        weak_segment_counters(batch, art, model_attrs, sink)
        if self.relabel is not None:
            write_relabel_samples(self.relabel, batch, art, p, abs_e, unseen_rows, outside, sink)

    def on_tick(self, now: float, sink: MetricSink) -> None:
        """Reloads artifacts when due; refreshes the baseline, margin and drift gauges."""
        if now - self.artifacts.last_scan >= self.reload_interval:
            self.artifacts.scan()
        for model, values in self.artifacts.take_reference_values().items():  # loaded or removed since the last tick
            sink.reference_values(model, values)  # always admitted by the cardinality caps
        for (model, version), rt in self.artifacts.runtimes.items():
            art = rt.artifact
            attrs = {a.ML_MODEL_NAME: model, a.ML_MODEL_VERSION: version}
            for metric, value in art.metrics.items():
                if metric != "rows" and isinstance(value, int | float):
                    name, _, k = metric.partition(AT_K)  # ranking: precision_at_k@5 -> (precision_at_k, k=5)
                    point = {**attrs, a.ML_METRIC: name, **({a.ML_RANKING_K: k} if k else {})}
                    sink.set_gauge(m.REFERENCE_METRIC, float(value), point)
            if art.estimator is not None:
                for metric, margin in art.estimator.error_margin_.items():
                    sink.set_gauge(m.ESTIMATOR_ERROR_MARGIN, float(margin), {**attrs, a.ML_METRIC: metric})
            if rt.scores is not None and rt.scores.due(now):
                sink.set_gauge(m.ESTIMATED_CLASSIFICATION_ROC_AUC, rt.scores.roc_auc(now), attrs)
            reference_gauges(art, attrs, sink)
            drift_gauges(rt, attrs, sink)

    def _warn_once(self, model: str, version: str, message: str) -> None:
        # Keyed by (model, message): a stream of junk versions must not grow this set; the first version is logged.
        if (model, message) not in self._warned and len(self._warned) < MAX_WARNINGS:
            self._warned.add((model, message))
            _logger.warning("model %s version %r: %s", model, version, message)


def create_stage(context: StageContext) -> EstimationStage:
    """Factory loaded by the processor when the config has a ``reference:`` section."""
    ref = context.config.reference
    if ref is None:
        raise ConfigurationError("the estimation stage needs a `reference:` section (reference.directory)")
    relabel = context.config.relabel
    return EstimationStage(ref.directory, reload_interval=ref.reload_interval, relabel_path=relabel.path,
                           relabel_max_samples=relabel.max_samples, clock=context.clock,
                           auc_window=context.config.metrics.auc_window)
