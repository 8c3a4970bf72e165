"""Calling the stages: each call isolated, its metric writes applied only when it returns normally.

See :mod:`otel_ml.processor.stage` for the contract stages implement; this module is the processor's side of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from otel_ml.processor.aggregates import Step
from otel_ml.processor.decode import Extra
from otel_ml.processor.records import Row
from otel_ml.processor.stage import PredictionBatch, Stage
from otel_ml.processor.stage_batches import to_batches
from otel_ml.semconv.metrics import MetricSpec

_logger = logging.getLogger(__name__)


class BufferedSink:
    """A stage's :class:`~otel_ml.processor.stage.MetricSink`: buffers writes, applied to the step on :meth:`apply`."""

    def __init__(self, step: Step) -> None:
        self._step = step
        self._ops: list[tuple[Callable[[MetricSpec, float, Mapping[str, str]], None], MetricSpec, float,
                              Mapping[str, str]]] = []
        self._pins: list[tuple[str, Mapping[str, tuple[str, ...]]]] = []
        self._after_commit: list[Callable[[], None]] = []

    def add(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Buffer a counter increment."""
        self._ops.append((self._step.add, metric, value, dict(attributes)))

    def set_gauge(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Buffer a gauge value."""
        self._ops.append((self._step.set_gauge, metric, value, dict(attributes)))

    def record(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Buffer a histogram observation."""
        self._ops.append((self._step.record, metric, value, dict(attributes)))

    def reference_values(self, model: str, values: Mapping[str, Iterable[str]]) -> None:
        """Buffer a declaration of reference values (applied to the cardinality caps with the other writes)."""
        frozen = {k: tuple(v) for k, v in values.items()}
        self._pins.append((model, frozen))

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Buffer a callback to run once the step's transaction committed (never if it rolls back)."""
        self._after_commit.append(fn)

    def apply(self) -> None:
        """Write the buffered operations into the step."""
        for model, values in self._pins:
            self._step.capper.pin(model, values)
        for fn, metric, value, attrs in self._ops:
            fn(metric, value, attrs)
        self._step.after_commit.extend(self._after_commit)


def run_after_commit(step: Step) -> None:
    """The stages' after-commit callbacks of a committed step, each isolated (a failure is logged)."""
    for fn in step.after_commit:
        try:
            fn()
        except Exception:
            _logger.exception("a stage's after-commit callback failed")
    step.after_commit.clear()


class StageRunner:
    """The configured stages, called on the writer thread; a stage that raises loses only its own call's writes."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    def step(self, preds: Sequence[Row], extras: Sequence[Extra | None], joined: Sequence[Row], step: Step) -> None:
        """``on_predictions`` with the newly accepted ``preds``, then ``on_joined`` with the rows joined in the step.

        ``extras`` are aligned with ``preds``; a joined row gets the extras of its prediction when that arrived in
        the same step, ``None`` otherwise.
        """
        self._run("on_predictions", to_batches(preds, extras), step)
        if joined:
            pairs_extra = {r[0]: e for r, e in zip(preds, extras, strict=True)}
            joined_extras = [pairs_extra.get(r[0]) for r in joined]
            self._run("on_joined", to_batches(joined, joined_extras), step)

    def tick(self, now: float, step: Step) -> None:
        """``on_tick`` of every stage."""
        for stage in self.stages:
            sink = BufferedSink(step)
            try:
                stage.on_tick(now, sink)
                sink.apply()
            except Exception:
                _logger.exception("stage %s failed in on_tick", getattr(stage, "name", stage))

    def close(self) -> None:
        """``close`` of every stage (a failure is logged, the others still close)."""
        for stage in self.stages:
            try:
                stage.close()
            except Exception:
                _logger.exception("stage %s failed to close", getattr(stage, "name", stage))

    def _run(self, hook: str, batches: list[PredictionBatch], step: Step) -> None:
        for stage in self.stages:
            for batch in batches:
                sink = BufferedSink(step)
                try:
                    getattr(stage, hook)(batch, sink)
                    sink.apply()
                except Exception:
                    _logger.exception("stage %s failed in %s (model %s): its metrics of this batch are dropped",
                                      getattr(stage, "name", stage), hook, batch.model)
