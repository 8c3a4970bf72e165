"""The default interpretation of an instrumented call's result and inputs (``monitor.instrument`` without
extractors).

Result:

* scalar (``int``, ``float``, ``str``, ``bool``, numpy scalar): the predicted value; binary: a float that is not
  one of the classes is P(positive) (predicted class by the monitor's threshold; classes ``("0", "1")`` when the
  monitor knows none);
* ``(prediction, proba)``: the value and its score (a float: binary P(positive), else confidence) or per-class
  scores (aligned with the monitor's classes);
* ``dict``: keys ``prediction`` (or ``label``, ``value``), ``score`` (``probability``), ``scores``
  (``probabilities``), ``id`` (``prediction_id``) and ``segments``;
* numpy array / pandas Series / list (binary, multiclass, regression): one prediction per row; a 2-D float array is
  ``predict_proba`` output (per-class scores, the predicted class is the argmax, binary uses the threshold);
  multilabel: a 2-D 0/1 array is an indicator matrix, floats are per-label scores (threshold 0.5);
* ``(predictions, probas)`` of arrays: a batch with scores;
* a generator or other one-shot iterator: not read (that would consume it): the event is dropped and counted as
  ``invalid`` (``monitor.instrument`` refuses generator functions when they are decorated);
* an integer where the monitor's ``classes`` are names: an index into them (``proba.argmax()``), see
  :meth:`~otel_ml.instrumentation.values.ValueCaps.class_name`.

Features default to the first positional argument (after ``self``): a ``dict`` (one sample), a 1-D sequence (one
sample, named by the monitor's ``features`` or ``f0``, ``f1``...), a pandas DataFrame (columns) or a 2-D array (a
batch, columns named likewise).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from otel_ml.instrumentation.records import MISSING
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.semconv.attributes import Task


def is_frame(x: Any) -> bool:
    """``x`` is a pandas DataFrame (checked without importing pandas)."""
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def is_series(x: Any) -> bool:
    """``x`` is a pandas Series (checked without importing pandas)."""
    return type(x).__name__ == "Series" and hasattr(x, "to_numpy")


def is_batch_result(spec: ModelSpec, result: Any) -> int | None:
    """Rows of ``result`` when it is a batch under the default interpretation, else ``None``. Cheap: caller side."""
    t = type(result)
    if (t is tuple and len(result) == 2 and isinstance(result[0], (np.ndarray, list))) or is_series(result):
        first = result[0] if t is tuple else result
        if isinstance(first, np.ndarray) and first.ndim == 0:
            return None
        if t is tuple and spec.task in (Task.MULTILABEL, Task.RANKING) and not (
                isinstance(first, np.ndarray) and first.ndim == 2):
            return None
        return len(first)
    if t is np.ndarray:
        if result.ndim == 0:
            return None
        if spec.task in (Task.MULTILABEL, Task.RANKING) and result.ndim == 1:
            return None
        return int(result.shape[0])
    if is_frame(result):
        return len(result)
    if t is list and spec.task in (Task.BINARY, Task.MULTICLASS, Task.REGRESSION):
        return len(result)
    return None


def interpret_single(result: Any) -> tuple[Any, Any, Any, Any]:
    """``(prediction, scores, prediction_id, segments)`` from one call's result (default interpretation)."""
    if type(result) is tuple and len(result) == 2:  # the common (label, proba) first: no ABC check
        return result[0], result[1], None, None
    if isinstance(result, Mapping):
        pred = _first(result, ("prediction", "label", "value", "predictions"))
        score = _first(result, ("scores", "probabilities", "score", "probability", "proba"))
        return (None if pred is MISSING else pred, None if score is MISSING else score,
                result.get("prediction_id", result.get("id")), result.get("segments"))
    if isinstance(result, np.ndarray) and result.ndim == 0:
        return result.item(), None, None, None
    if isinstance(result, Iterator):  # generators, map objects, files...: never consumed here
        return None, None, None, None
    return result, None, None, None


def _first(d: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return MISSING
