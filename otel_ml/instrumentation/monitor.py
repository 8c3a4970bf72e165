"""``ModelMonitor``: the one object inference code holds per model.

Usage::

    import otel_ml

    monitor = otel_ml.ModelMonitor("fraud", version="2024-06-01", task="binary", classes=["legit", "fraud"],
                                   features=["amount", "country"], segments=["region"])

    @monitor.instrument                       # one event per prediction, latency/class/score metrics
    def predict(features: dict) -> tuple[str, float]:
        ...

    label, proba = predict({"amount": 12.5, "country": "FR"})
    pid = otel_ml.current_prediction_id()     # hand it to the caller for feedback

    # later, possibly in another process (only the model name is needed):
    otel_ml.ModelMonitor("fraud").log_label(pid, "legit")

Every recording method costs about a microsecond on the caller and never raises for bad data (see
:mod:`otel_ml.instrumentation.limits`); invalid arguments to the constructor or the decorator raise
:class:`~otel_ml.ConfigurationError` when they are defined.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from time import time_ns
from typing import Any, overload

from otel_ml.compat import context_getter
from otel_ml.instrumentation import limits as lim
from otel_ml.instrumentation.context import set_current
from otel_ml.instrumentation.decorator import CallSpec, check_extractors, wrap
from otel_ml.instrumentation.errors import ConfigurationError
from otel_ml.instrumentation.ids import IDS, PredictionIds
from otel_ml.instrumentation.records import (
    MISSING,
    LabelBatchRecord,
    LabelRecord,
    PredictionBatchRecord,
    PredictionRecord,
    new_record,
)
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.instrumentation.state import STATE
from otel_ml.semconv.attributes import Task

_logger = logging.getLogger(__name__)

current_context = context_getter()
"""The current OpenTelemetry ``Context`` (its span is linked to the event by the worker)."""

_EXAMPLE = ('example: otel_ml.ModelMonitor("fraud", version="1.2.0", task="binary", classes=["legit", "fraud"], '
            'features=["amount", "country"])')


def _fail(message: str) -> ConfigurationError:
    return ConfigurationError(f"{message}; {_EXAMPLE}")


def _names(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, (Sequence, set, frozenset)):
        raise _fail(f"{what} must be a list of names or None, got {value!r}")
    out = tuple(value)
    if not all(isinstance(x, str) and x for x in out):
        raise _fail(f"{what} must contain non-empty strings, got {value!r}")
    return out


def _timestamp(timestamp: Any) -> int:
    if timestamp is None:
        return time_ns()
    if isinstance(timestamp, datetime):
        return int(timestamp.timestamp() * 1e9)
    return int(timestamp)


class ModelMonitor:
    """Records the predictions and labels of one model as OpenTelemetry events and metrics.

    Args:
        name: Model name (``ml.model.name``), e.g. ``"fraud"``.
        version: Model version (``ml.model.version``); ``""`` when unknown.
        task: ``binary``, ``multiclass``, ``multilabel``, ``regression`` or ``ranking``; ``None`` for a monitor that
            only logs labels (from a feedback service, say).
        classes: Known classes in score order (``predict_proba`` column order); binary: ``[negative, positive]``.
            Sent as strings. Default for a decorated scikit-learn bound method: the model's ``classes_``.
        positive_class: Binary: the positive class (default: the last of ``classes``).
        threshold: Binary: decision threshold on the positive-class score when only a score is given.
        features: Names of the features to capture (``None``: all that the call gives); also the column names of
            a 2-D array of features.
        segments: Segment dimensions to capture (``None``: all given).
        feature_sample_rate: Share of prediction events that carry features (``0``-``1``).

    Raises:
        ConfigurationError: An argument is invalid.
    """

    __slots__ = ("_spec",)

    def __init__(
        self,
        name: str,
        *,
        version: str = "",
        task: str | None = None,
        classes: Sequence[Any] | None = None,
        positive_class: Any = None,
        threshold: float = 0.5,
        features: Sequence[str] | None = None,
        segments: Sequence[str] | None = None,
        feature_sample_rate: float = 1.0,
    ) -> None:
        if not isinstance(name, str) or not name or len(name) > lim.MAX_KEY_LENGTH:
            raise _fail(f"name must be a non-empty string of at most {lim.MAX_KEY_LENGTH} characters, got {name!r}")
        if not isinstance(version, str):
            raise _fail(f"version must be a string, got {version!r}")
        if task is not None and task not in Task.ALL:
            raise _fail(f"task must be one of {Task.ALL} (or None for a label-only monitor), got {task!r}")
        class_names: tuple[str, ...] | None = None
        if classes is not None:
            if isinstance(classes, str) or not hasattr(classes, "__iter__"):
                raise _fail(f"classes must be a list, got {classes!r}")
            class_names = tuple(str(c) for c in classes)
            if not class_names or len(set(class_names)) != len(class_names):
                raise _fail(f"classes must be non-empty and distinct (as strings), got {list(class_names)!r}")
            if len(class_names) > lim.MAX_ARRAY_LENGTH:
                raise _fail(f"at most {lim.MAX_ARRAY_LENGTH} classes are supported, got {len(class_names)}")
            if task == Task.BINARY and len(class_names) != 2:
                raise _fail(f"a binary model has exactly 2 classes [negative, positive], got {list(class_names)!r}")
            if task in (Task.REGRESSION, Task.RANKING):
                raise _fail(f"classes do not apply to task {task!r}")
        positive_index = 1
        if positive_class is not None:
            if task != Task.BINARY or class_names is None or str(positive_class) not in class_names:
                raise _fail(f"positive_class needs task='binary' and must be one of classes, got {positive_class!r}")
            positive_index = class_names.index(str(positive_class))
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise _fail(f"threshold must be a number in [0, 1], got {threshold!r}")
        if (isinstance(feature_sample_rate, bool) or not isinstance(feature_sample_rate, (int, float))
                or math.isnan(feature_sample_rate) or not 0.0 <= feature_sample_rate <= 1.0):
            raise _fail(f"feature_sample_rate must be a number in [0, 1], got {feature_sample_rate!r}")
        self._spec = ModelSpec.build(name, version, task, class_names, positive_index, float(threshold),
                                     _names(features, "features"), _names(segments, "segments"),
                                     float(feature_sample_rate))

    @property
    def name(self) -> str:
        """The model name."""
        return self._spec.name

    @property
    def version(self) -> str:
        """The model version."""
        return self._spec.version

    @property
    def task(self) -> str | None:
        """The task (``None`` for a label-only monitor)."""
        return self._spec.task

    @property
    def classes(self) -> tuple[str, ...] | None:
        """Known classes, as strings."""
        return self._spec.classes

    def __repr__(self) -> str:
        s = self._spec
        return f"ModelMonitor({s.name!r}, version={s.version!r}, task={s.task!r}, classes={s.classes!r})"

    # --- predictions -------------------------------------------------------------------------------------------------
    def log_prediction(
        self,
        prediction: Any = None,
        *,
        scores: Any = None,
        features: Any = None,
        segments: Any = None,
        prediction_id: Any = None,
        label: Any = MISSING,
        timestamp: Any = None,
        duration: float | None = None,
    ) -> str:
        """Record one prediction; returns its id (generated unless given).

        Args:
            prediction: The predicted class (binary/multiclass), value (regression), set (multilabel) or ranked
                item ids (ranking). May be omitted when ``scores`` determine it.
            scores: A float (binary: P(positive); otherwise confidence) or per-class probabilities aligned with
                ``classes``.
            features: ``{name: value}`` of the sample (or a 1-D sequence named by the monitor's ``features``).
            segments: ``{dimension: value}``, e.g. ``{"region": "eu"}``.
            prediction_id: Your own id (e.g. the request id); default: a new unique id.
            label: The ground truth when already known (the event becomes a *pair*).
            timestamp: Time of the prediction (``datetime`` or ns since the epoch); default now.
            duration: Inference wall time in seconds, recorded on ``ml.client.inference.duration``.
        """
        pid = IDS.new_id() if prediction_id is None else prediction_id
        try:
            set_current(pid if type(pid) is str else str(pid))
            p = STATE.queue or STATE.resolve()
            if p.active:
                p.submit(new_record(PredictionRecord, (
                    self._spec, time_ns() if timestamp is None else _timestamp(timestamp), pid, prediction, scores,
                    features.copy() if type(features) is dict else features, segments, label, current_context(),
                    None if duration is None else int(duration * 1e9))))
        except Exception:
            _logger.debug("otel-ml: failed to record a prediction", exc_info=True)
        return pid if type(pid) is str else str(pid)

    def log_pair(self, prediction: Any, label: Any, **kwargs: Any) -> str:
        """Record a prediction whose ground truth is known at once (the processor joins it immediately).

        Takes the keyword arguments of :meth:`log_prediction`; returns the prediction id.
        """
        return self.log_prediction(prediction, label=label, **kwargs)

    def log_predictions(
        self,
        predictions: Any = None,
        *,
        scores: Any = None,
        features: Any = None,
        segments: Any = None,
        prediction_ids: Sequence[Any] | None = None,
        labels: Any = None,
        timestamp: Any = None,
        duration: float | None = None,
    ) -> Sequence[str]:
        """Record a batch: one event per row, a fraction of a microsecond per row on the caller.

        Arrays are read by the background worker after the call: do not modify them in place afterwards.

        Args:
            predictions: 1-D array / list / pandas Series of predictions (multilabel: 2-D indicator array or list
                of sets; ranking: list of ranked lists), or ``None`` when ``scores`` determine them.
            scores: 1-D (binary P(positive) / confidence) or 2-D (per-class, ``predict_proba``) array.
            features: pandas DataFrame, ``{name: column}``, 2-D array (columns named by the monitor's
                ``features``) or a list of ``{name: value}``.
            segments: ``{dimension: value or column}``.
            prediction_ids: Your own ids, one per row; default: new unique ids.
            labels: Ground truth per row, when known at once (pairs).
            timestamp: Time of the predictions; default now.
            duration: Wall time of the batch inference in seconds (recorded once).

        Returns:
            The ids, one per row (a read-only sequence of strings).
        """
        try:
            if prediction_ids is not None:
                n = len(prediction_ids)
            else:
                first = next(x for x in (predictions, scores, features) if x is not None)
                n = len(first)
            if n > lim.MAX_BATCH_ROWS:
                n = lim.MAX_BATCH_ROWS
            ids: Sequence[Any] = IDS.new_batch(n) if prediction_ids is None else prediction_ids
            if prediction_ids is not None and n < len(prediction_ids):
                ids = list(prediction_ids)[:n]
            set_current(ids)
            p = STATE.queue or STATE.resolve()
            if p.active:
                p.submit(PredictionBatchRecord(
                    self._spec, time_ns() if timestamp is None else _timestamp(timestamp), ids, predictions, scores,
                    features, segments, labels, current_context(), None if duration is None else int(duration * 1e9)))
        except Exception:
            _logger.debug("otel-ml: failed to record a batch of predictions", exc_info=True)
            return PredictionIds(IDS.prefix + "x.", 0) if prediction_ids is None else [str(x) for x in prediction_ids]
        return ids if isinstance(ids, PredictionIds) else [x if type(x) is str else str(x) for x in ids]

    # --- labels ------------------------------------------------------------------------------------------------------
    def log_label(self, prediction_id: Any, label: Any, *, relevance: Any = None, timestamp: Any = None) -> None:
        """Record the ground truth of an earlier prediction (from any process: only name and id are needed).

        Args:
            prediction_id: The id returned when the prediction was recorded.
            label: True class (binary/multiclass), value (regression), set (multilabel) or relevant items
                (ranking).
            relevance: Ranking: graded relevance aligned with ``label`` (default 1 each).
            timestamp: Time of the label; default now.
        """
        try:
            p = STATE.queue or STATE.resolve()
            if p.active:
                p.submit(new_record(LabelRecord, (
                    self._spec, time_ns() if timestamp is None else _timestamp(timestamp), prediction_id, label,
                    relevance)))
        except Exception:
            _logger.debug("otel-ml: failed to record a label", exc_info=True)

    def log_labels(self, prediction_ids: Sequence[Any], labels: Any, *, timestamp: Any = None) -> None:
        """Record the ground truth of many predictions (arrays or lists aligned with ``prediction_ids``)."""
        try:
            p = STATE.queue or STATE.resolve()
            if p.active:
                p.submit(LabelBatchRecord(self._spec, time_ns() if timestamp is None else _timestamp(timestamp),
                                          prediction_ids, labels))
        except Exception:
            _logger.debug("otel-ml: failed to record labels", exc_info=True)

    # --- decorator ---------------------------------------------------------------------------------------------------
    @overload
    def instrument(self, func: Callable[..., Any], /) -> Callable[..., Any]: ...

    @overload
    def instrument(
        self, func: None = None, /, *, features: Any = None, prediction: Any = None, scores: Any = None,
        prediction_id: Any = None, segments: Any = None, batch: bool | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]: ...

    def instrument(
        self,
        func: Callable[..., Any] | None = None,
        /,
        *,
        features: Any = None,
        prediction: Any = None,
        scores: Any = None,
        prediction_id: Any = None,
        segments: Any = None,
        batch: bool | None = None,
    ) -> Any:
        """Decorate a predict function (sync or async, function or method) to record each prediction it makes.

        Usable bare (``@monitor.instrument``), with extractors (``@monitor.instrument(features="x")``) or on a
        bound method (``model.predict_proba = monitor.instrument(model.predict_proba)``). See
        :mod:`otel_ml.instrumentation.decorator` for extractors and
        :mod:`otel_ml.instrumentation.interpret` for the default interpretation of results.

        Raises:
            ConfigurationError: An extractor is neither a callable nor a valid name, or the target is not callable.
        """
        if self._spec.task is None:
            raise _fail(f"monitor {self._spec.name!r} has no task: instrumenting predictions needs task=...")
        check_extractors(batch, features=features, prediction=prediction, scores=scores,
                         prediction_id=prediction_id, segments=segments)

        def decorate(target: Callable[..., Any]) -> Callable[..., Any]:
            if not callable(target):
                raise ConfigurationError(
                    f"monitor.instrument needs a function or method, got {type(target).__name__}; "
                    "example: @monitor.instrument\\ndef predict(features): ...")
            if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
                raise ConfigurationError(
                    f"monitor.instrument cannot record the predictions of generator function "
                    f"{getattr(target, '__qualname__', target)!r}: its result is only known as it is consumed; "
                    "decorate the function that returns the prediction, or call monitor.log_prediction(...) for "
                    "each item it yields")
            spec = self._spec_for(target)
            call = CallSpec(spec, target, features=features, prediction=prediction, scores=scores,
                            prediction_id=prediction_id, segments=segments, batch=batch)
            return wrap(call, target)

        if func is not None:
            return decorate(func)
        return decorate

    def _spec_for(self, target: Callable[..., Any]) -> ModelSpec:
        """The spec, with classes taken from a scikit-learn bound method's model when none were given."""
        s = self._spec
        model_classes = getattr(getattr(target, "__self__", None), "classes_", None)
        if s.classes is not None or model_classes is None or s.task not in (Task.BINARY, Task.MULTICLASS,
                                                                             Task.MULTILABEL):
            return s
        try:
            classes = tuple(str(c) for c in list(model_classes))
        except TypeError:
            return s
        if s.task == Task.BINARY and len(classes) != 2:
            return s
        return ModelSpec.build(s.name, s.version, s.task, classes, s.positive_index, s.threshold, s.features,
                               s.segments, s.feature_sample_rate)
