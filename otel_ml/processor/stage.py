"""Extension point of the processor: stages that see every accepted prediction (and every joined pair).

A *stage* turns predictions into extra metrics (estimated quality, drift, novelty, ...) next to the realized
quality the processor computes itself. The estimation/drift stage lives in
``otel_ml/processor/stages/estimation/``; any other stage follows the same contract.

Contract
========

* The processor groups the records of one ingest step into columnar :class:`PredictionBatch` objects, one per
  ``(model, version, task, classes)``, and calls, on its single writer thread and **inside the same database
  transaction** that commits the records, the joins and the cumulative aggregates:

  - :meth:`Stage.on_predictions` with the predictions accepted for the first time (duplicates and re-sent requests
    are filtered out before; a re-sent request never reaches a stage twice);
  - :meth:`Stage.on_joined` with the predictions that met their label in this step (``batch.labels`` is set; pairs,
    i.e. predictions that carry their label, appear in both calls);
  - :meth:`Stage.on_tick` about once per second (``tick_interval``) with the processor clock, also inside a
    transaction: the place for windowed gauges (drift distances) and periodic work (reloading artifacts).

* Metrics go through the :class:`MetricSink` given to each call, keyed by a semconv
  :class:`~otel_ml.semconv.metrics.MetricSpec` and an attribute mapping (keys from ``otel_ml.semconv.attributes``):

  - :meth:`MetricSink.add` for ``counter`` / ``updowncounter`` metrics: the value is added to a cumulative
    aggregate that is **persisted in the same transaction** and restored after a restart, so the series continue;
  - :meth:`MetricSink.set_gauge` for ``gauge`` metrics: the last value is exported; gauges are kept in memory only
    (a restarted processor exports them again after the stage's next call);
  - :meth:`MetricSink.record` for ``histogram`` metrics: an OTel SDK histogram; not persisted (restarts at zero,
    like any process-local histogram).

  Attribute values are capped per model and key by ``metrics.cardinality_limit`` (overflow value ``_other``,
  counted in ``ml.processor.attribute.overflow``); never pass unbounded values (prediction ids, raw feature values).

* Isolation: the sink given to a stage buffers its writes; they are applied only when the call returns normally.
  A stage that raises loses its own writes of that call (logged with the traceback), never the processor's data
  or the transaction.
  Stages must not block (no network I/O in the hooks): they run on the writer thread, and the time they take is
  time every sender waits for its acknowledgement.

* Retries: a step whose commit fails is rolled back and its records are processed again (the writer retries a
  failed group commit), so a hook may see the same predictions twice. Metric writes are safe (they belong to the
  rolled-back step); in-memory state (windows, caches, files) is not: change it in a callback given to
  :meth:`MetricSink.after_commit`, which runs only once the step committed.

* Thread-safety: hooks are called from one thread at a time (the writer thread). ``close`` is called once at
  shutdown.

Registering a stage
===================

A factory ``create_stage(context: StageContext) -> Stage`` is loaded by the processor at start-up:

* the built-in estimation/drift stage (``otel_ml.processor.stages.estimation:create_stage``) is loaded when the
  config has a ``reference:`` section (``reference.directory`` set);
* any other stage is listed in the config key ``stages:`` as ``"package.module:factory"`` strings.

A factory that cannot be imported, or raises, is a configuration error: the processor exits with status 2.
Subclass :class:`BaseStage` to get no-op defaults for the hooks you do not need.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from otel_ml.errors import ConfigurationError
from otel_ml.semconv.metrics import MetricSpec

if TYPE_CHECKING:
    from otel_ml.processor.config import ProcessorConfig

ESTIMATION_STAGE: str = "otel_ml.processor.stages.estimation:create_stage"
"""Factory of the built-in estimation/drift stage, loaded when the config has a ``reference:`` section."""


@dataclass(slots=True)
class PredictionBatch:
    """Columnar view of predictions of one ``(model, version, task, classes)`` group.

    All per-record sequences have the same length ``n`` (``len(batch)``), in arrival order.

    Attributes:
        model: ``ml.model.name``.
        version: ``ml.model.version`` (``""`` when absent).
        task: ``ml.task`` (a value of :class:`otel_ml.semconv.attributes.Task`).
        classes: Class order of ``score_matrix`` (``ml.prediction.classes``), or ``None`` when the records carry no
            classes. Binary: ``(negative, positive)``.
        ids: ``ml.prediction.id`` of each record (for sinks keyed by id, e.g. relabel samples; never a metric
            attribute).
        timestamps: float64 array, prediction time in seconds since the epoch (``time_unix_nano``; the
            ``observed_time_unix_nano`` or the arrival time when unset).
        values: Binary/multiclass: the predicted class strings (``list[str]``). Regression: float64 array of
            predicted values. Multilabel/ranking: ``None`` (see ``value_lists``).
        scores: float64 array of ``ml.prediction.score`` (binary: P(positive); else confidence); NaN when absent.
        score_matrix: float64 array ``(n, len(classes))`` of ``ml.prediction.scores``, NaN rows when absent, or
            ``None`` when no record of the batch has scores.
        value_lists: Multilabel: predicted label set; ranking: ranked item ids, best first; ``None`` for other
            tasks.
        features: ``ml.feature.<name>`` -> list of length ``n`` with the raw values (float, int, bool, str) and
            ``None`` where a record lacks the feature.
        segments: Metric segment string of each record (``dim=value,...`` sorted by dim; ``""`` without segment).
        labels: Only on joined batches: binary/multiclass the true class strings (``list[str]``), regression a
            float64 array; ``None`` otherwise.
        label_lists: Only on joined batches for multilabel (true set) and ranking (relevant items).
        relevance: Only on joined ranking batches: graded relevance aligned with ``label_lists`` (default 1.0).
        label_timestamps: Only on joined batches: float64 array, time of the label in seconds.

    On ``on_joined`` batches, ``features`` and ``score_matrix`` are filled only for predictions that arrived in the
    same step (pairs, or a prediction meeting a label that overtook it): the join store keeps the predicted value,
    score, segment and times of a pending prediction, not its features or per-class scores. A stage that needs them at
    join time keeps its own state keyed by ``ids``.
    """

    model: str
    version: str
    task: str
    classes: tuple[str, ...] | None
    ids: list[str]
    timestamps: np.ndarray
    values: list[str] | np.ndarray | None
    scores: np.ndarray
    score_matrix: np.ndarray | None = None
    value_lists: list[list[str]] | None = None
    features: dict[str, list[Any]] = field(default_factory=dict)
    segments: list[str] = field(default_factory=list)
    labels: list[str] | np.ndarray | None = None
    label_lists: list[list[str]] | None = None
    relevance: list[list[float]] | None = None
    label_timestamps: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def joined(self) -> bool:
        """True when the batch carries labels (an ``on_joined`` batch)."""
        return self.labels is not None or self.label_lists is not None


class MetricSink(Protocol):
    """Where a stage writes its metrics (see the module docstring for persistence and capping)."""

    def add(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Add ``value`` to the cumulative ``counter``/``updowncounter`` ``metric`` at ``attributes``."""

    def set_gauge(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Set the ``gauge`` ``metric`` at ``attributes`` to ``value`` (NaN removes the point)."""

    def record(self, metric: MetricSpec, value: float, attributes: Mapping[str, str]) -> None:
        """Record ``value`` into the ``histogram`` ``metric`` at ``attributes``."""

    def after_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once the step's transaction committed, never when it rolled back (a failed group commit is
        retried with the same records: a stage's in-memory windows must not see them twice). ``fn`` must not
        raise (a failure is logged)."""

    def reference_values(self, model: str, values: Mapping[str, Iterable[str]]) -> None:
        """Declare the metric attribute values ``model``'s reference artifacts know, by attribute key (e.g.
        ``ml.model.version``, ``ml.class``, ``ml.feature.name``): they are always admitted by the cardinality caps
        and take no slot, so junk traffic can never fold them into ``_other``. The model itself is admitted too.
        Replaces what was declared for ``model`` before; an empty mapping withdraws it (artifacts removed)."""


@runtime_checkable
class Stage(Protocol):
    """A processor stage (see the module docstring for when each hook runs)."""

    name: str

    def on_predictions(self, batch: PredictionBatch, sink: MetricSink) -> None:
        """Called with newly accepted predictions of one group."""

    def on_joined(self, batch: PredictionBatch, sink: MetricSink) -> None:
        """Called with predictions joined with their labels in this step (``batch.labels`` set)."""

    def on_tick(self, now: float, sink: MetricSink) -> None:
        """Called about once per second with the processor clock (seconds since the epoch)."""

    def close(self) -> None:
        """Release resources; called once at shutdown."""


class BaseStage:
    """Convenience base class with no-op hooks."""

    name: str = "stage"

    def on_predictions(self, batch: PredictionBatch, sink: MetricSink) -> None:
        """No-op."""

    def on_joined(self, batch: PredictionBatch, sink: MetricSink) -> None:
        """No-op."""

    def on_tick(self, now: float, sink: MetricSink) -> None:
        """No-op."""

    def close(self) -> None:
        """No-op."""


@dataclass(frozen=True, slots=True)
class StageContext:
    """What a stage factory receives.

    Attributes:
        config: The whole validated processor config (``config.reference`` and ``config.relabel`` are the stage's
            own sections; ``config.reference`` may be ``None`` for stages listed under ``stages:``).
        clock: The processor clock (seconds since the epoch); tests inject a fake one.
        raw: The ``stages_config`` mapping of the YAML (free-form options for custom stages; empty by default).
    """

    config: ProcessorConfig
    clock: Callable[[], float]
    raw: Mapping[str, Any] = field(default_factory=dict)


StageFactory = Callable[[StageContext], Stage]


class StageLoadError(ConfigurationError):
    """A configured stage factory could not be imported or failed to build its stage."""


def load_factory(spec: str) -> StageFactory:
    """Import ``"package.module:callable"``.

    Raises:
        StageLoadError: When the string is malformed, the module cannot be imported or lacks the callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise StageLoadError(f"stage factory {spec!r} must look like 'package.module:create_stage'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise StageLoadError(f"cannot import stage module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise StageLoadError(f"stage module {module_name!r} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]


def stage_specs(config: ProcessorConfig) -> list[str]:
    """Factory strings to load for ``config``: the estimation stage when ``reference`` is set, then ``stages``."""
    specs: list[str] = []
    if config.reference is not None:
        specs.append(ESTIMATION_STAGE)
    specs.extend(s for s in config.stages if s not in specs)
    return specs


def load_stages(config: ProcessorConfig, clock: Callable[[], float],
                factories: Sequence[StageFactory] | None = None) -> list[Stage]:
    """Build the stages of ``config`` (or of explicit ``factories``, for tests and benchmarks).

    Raises:
        StageLoadError: When a factory cannot be loaded or fails.
    """
    context = StageContext(config=config, clock=clock, raw=dict(config.stages_config))
    built: list[Stage] = []
    todo: list[tuple[str, StageFactory]] = (
        [(getattr(f, "__name__", repr(f)), f) for f in factories] if factories is not None
        else [(s, load_factory(s)) for s in stage_specs(config)]
    )
    for label, factory in todo:
        try:
            stage = factory(context)
        except Exception as exc:  # a stage failing at start is a configuration error, reported with its cause
            raise StageLoadError(f"stage {label} failed to start: {exc}") from exc
        built.append(stage)
    return built
