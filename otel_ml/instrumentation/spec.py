"""The immutable description of one monitored model, shared by the caller side and the background worker."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import Task


@dataclass(frozen=True, slots=True, eq=False)
class ModelSpec:
    """What a :class:`~otel_ml.ModelMonitor` knows about its model.

    Attributes:
        name: ``ml.model.name``.
        version: ``ml.model.version`` (``""`` when unknown).
        task: ``ml.task``, or ``None`` for a label-only monitor.
        classes: Known classes as strings, in score order (binary: ``(negative, positive)``), or ``None``.
        positive_index: Index of the positive class in ``classes`` (binary).
        threshold: Binary decision threshold on the positive-class score, used when only a score is given.
        features: Feature names to capture (``None``: all), in order; also names the columns of a 2-D array.
        segments: Segment dimensions to capture (``None``: all given).
        feature_sample_rate: Share of prediction events that carry features.
        index_classes: ``classes`` when an integer prediction or label is a class *index* (``proba.argmax(1)``):
            when none of the class names is itself an integer (otherwise integers are class names, as sent).
    """

    name: str
    version: str
    task: str | None
    classes: tuple[str, ...] | None
    positive_index: int
    threshold: float
    features: tuple[str, ...] | None
    segments: tuple[str, ...] | None
    feature_sample_rate: float
    key: tuple[str, str] = field(default=("", ""))
    """``(name, version)``: the identity of the model on metrics (one tuple object, reused for every lookup)."""
    feature_set: frozenset[str] | None = field(default=None)
    prediction_constants: tuple[tuple[str, Any], ...] = field(default=())
    label_constants: tuple[tuple[str, Any], ...] = field(default=())
    index_classes: tuple[str, ...] | None = field(default=None)

    @staticmethod
    def build(
        name: str, version: str, task: str | None, classes: Sequence[str] | None, positive_index: int,
        threshold: float, features: Sequence[str] | None, segments: Sequence[str] | None, feature_sample_rate: float,
    ) -> ModelSpec:
        """Create a spec and precompute the constant attributes of its events."""
        cls = tuple(classes) if classes is not None else None
        pred: list[tuple[str, Any]] = [(a.ML_MODEL_NAME, name), (a.ML_MODEL_VERSION, version)]
        if task is not None:
            pred.append((a.ML_TASK, task))
        if cls is not None:
            pred.append((a.ML_PREDICTION_CLASSES, list(cls)))
        label: list[tuple[str, Any]] = [(a.ML_MODEL_NAME, name)]
        if version:
            label.append((a.ML_MODEL_VERSION, version))
        feats = tuple(features) if features is not None else None
        return ModelSpec(
            name, version, task, cls, positive_index, threshold, feats,
            tuple(segments) if segments is not None else None, feature_sample_rate, (name, version),
            frozenset(feats) if feats is not None else None, tuple(pred), tuple(label),
            cls if cls is not None and task in Task.CLASSIFICATION and not any(map(_is_int, cls)) else None)


def _is_int(name: str) -> bool:
    try:
        int(name)
    except ValueError:
        return False
    return True
