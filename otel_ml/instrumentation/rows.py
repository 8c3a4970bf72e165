"""A batch's columns (arrays, DataFrames, mappings of columns) cut into per-row values for the generic path.

Used by the worker for batches the column-wise encoder (:mod:`~otel_ml.instrumentation.fastbatch`) does not take:
each row then becomes one event through :class:`~otel_ml.instrumentation.normalize.Normalizer`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from otel_ml.instrumentation.interpret import is_frame, is_series
from otel_ml.instrumentation.limits import TruncationReason as R
from otel_ml.instrumentation.records import MISSING
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.semconv.attributes import Task

_SCALARS = (str, int, float, bool, np.generic)


def batch_rows(spec: ModelSpec, predictions: Any, scores: Any, n: int) -> tuple[list[Any], list[Any]]:
    """Per-row predictions and scores of a batch (lists of at least ``n`` items; ``None`` where absent)."""
    preds: list[Any] = [None] * n
    row_scores: list[Any] = [None] * n
    if type(predictions) is tuple and len(predictions) == 2 and scores is None:
        predictions, scores = predictions
    if is_frame(predictions):
        predictions = predictions.to_numpy()
    if is_series(predictions):
        predictions = predictions.to_numpy()
    if isinstance(predictions, np.ndarray) and predictions.ndim == 2 and scores is None:
        is_indicator = spec.task == Task.MULTILABEL and predictions.dtype.kind in "biu"
        if not is_indicator and spec.task in (Task.BINARY, Task.MULTICLASS, Task.MULTILABEL):
            scores, predictions = predictions, None
    if predictions is not None:
        if isinstance(predictions, np.ndarray):
            if predictions.ndim == 2 and spec.task == Task.MULTILABEL and spec.classes is not None:
                cls = spec.classes
                preds = [[c for c, v in zip(cls, row, strict=False) if v] for row in predictions.tolist()]
            else:
                preds = predictions.tolist()
        else:
            preds = list(predictions)
    if scores is not None:
        if is_frame(scores) or is_series(scores):
            scores = scores.to_numpy()
        row_scores = scores.tolist() if isinstance(scores, np.ndarray) else list(scores)
    if len(preds) < n:
        preds += [None] * (n - len(preds))
    if len(row_scores) < n:
        row_scores += [None] * (n - len(row_scores))
    return preds, row_scores


def feature_rows(spec: ModelSpec, features: Any, n: int, truncated: dict[tuple[str, str], int]) -> Iterator[Any]:
    """Per-row feature mappings of a batch (``None`` rows when absent; an unusable shape is counted in
    ``truncated`` as ``wrong_type``)."""
    if features is None:
        return iter([None] * n)
    if is_frame(features):
        cols = [str(c) for c in features.columns]
        if spec.feature_set is not None:
            cols = [c for c in cols if c in spec.feature_set]
        columns = {c: features[c].to_numpy().tolist() for c in cols}
        return (dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)) \
            if columns else iter([None] * n)
    if isinstance(features, Mapping):  # columns
        columns = {str(k): (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in features.items()
                   if spec.feature_set is None or k in spec.feature_set}
        return (dict(zip(columns, row, strict=False)) for row in zip(*columns.values(), strict=False))
    if isinstance(features, np.ndarray) and features.ndim == 2:
        names = list(spec.features or [f"f{i}" for i in range(features.shape[1])])
        return (dict(zip(names, row, strict=False)) for row in features.tolist())
    if isinstance(features, Sequence) and features and isinstance(features[0], Mapping):
        return iter(features)
    truncated[(spec.name, R.WRONG_TYPE)] = truncated.get((spec.name, R.WRONG_TYPE), 0) + 1
    return iter([None] * n)


def segment_rows(segments: Any, n: int) -> Iterator[Any]:
    """Per-row segment mappings: a mapping of scalars applies to every row, of arrays per row."""
    if not segments or not isinstance(segments, Mapping):
        return iter([segments] * n)
    if all(isinstance(v, _SCALARS) for v in segments.values()):
        return iter([segments] * n)
    cols = {k: (v.tolist() if isinstance(v, np.ndarray) else (list(v) if not isinstance(v, _SCALARS) else [v] * n))
            for k, v in segments.items()}
    return (dict(zip(cols, row, strict=False)) for row in zip(*cols.values(), strict=False))


def label_rows(labels: Any, n: int) -> list[Any]:
    """Per-row labels of a batch (:data:`~otel_ml.instrumentation.records.MISSING` each when none were given)."""
    if labels is MISSING or labels is None:
        return [MISSING] * n
    if is_series(labels):
        labels = labels.to_numpy()
    return labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
