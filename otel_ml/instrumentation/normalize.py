"""Turn what the caller handed over (raw values, arrays, call arguments and results) into event attributes.

Runs on the background worker only. Every value is capped per :mod:`otel_ml.instrumentation.limits`; what is capped
is counted in :attr:`Normalizer.truncated` and nothing here raises for bad input (the worker additionally guards
every record).

Default interpretation of an instrumented call's result (``monitor.instrument`` without extractors):

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
* ``(predictions, probas)`` of arrays: a batch with scores.

Features default to the first positional argument (after ``self``): a ``dict`` (one sample), a 1-D sequence (one
sample, named by the monitor's ``features`` or ``f0``, ``f1``...), a pandas DataFrame (columns) or a 2-D array (a
batch, columns named likewise).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from otel_ml.instrumentation import limits as lim
from otel_ml.instrumentation.limits import TruncationReason as R
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import Task

Pairs = list[tuple[str, Any]]
"""Event attributes as ``(key, value)`` with values ``str``, ``float``, ``int``, ``bool`` or lists of them."""

_MISSING: Any = object()
_BINARY_DEFAULT_CLASSES = ("0", "1")
"""Binary classes when the monitor knows none: the processor's positive class is then ``"1"``."""
_FLOAT_ONLY = {float}
_SCALARS = (str, int, float, bool, np.generic)


def _is_frame(x: Any) -> bool:
    return type(x).__name__ == "DataFrame" and hasattr(x, "columns")


def _is_series(x: Any) -> bool:
    return type(x).__name__ == "Series" and hasattr(x, "to_numpy")


def is_batch_result(spec: ModelSpec, result: Any) -> int | None:
    """Rows of ``result`` when it is a batch under the default interpretation, else ``None``. Cheap: caller side."""
    t = type(result)
    if (t is tuple and len(result) == 2 and isinstance(result[0], (np.ndarray, list))) or _is_series(result):
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
    if _is_frame(result):
        return len(result)
    if t is list and spec.task in (Task.BINARY, Task.MULTICLASS, Task.REGRESSION):
        return len(result)
    return None


class Normalizer:
    """Builds attribute pairs; counts every capped value by ``(model name, reason)``."""

    def __init__(self) -> None:
        self.truncated: defaultdict[tuple[str, str], int] = defaultdict(int)
        self._random = random.Random()
        self._feature_keys: dict[str, str] = {}

    # --- scalars ---------------------------------------------------------------------------------------------------
    def _str(self, spec: ModelSpec, value: Any) -> str | None:
        if type(value) is not str:
            try:
                value = str(value)
            except Exception:
                self.truncated[(spec.name, R.UNSERIALIZABLE)] += 1
                return None
        if len(value) > lim.MAX_STRING_LENGTH:
            self.truncated[(spec.name, R.TOO_LONG)] += 1
            value = value[: lim.MAX_STRING_LENGTH]
        return value

    def _float(self, spec: ModelSpec, value: Any) -> float | None:
        try:
            f = float(value)
        except (TypeError, ValueError, OverflowError):
            self.truncated[(spec.name, R.WRONG_TYPE)] += 1
            return None
        if not math.isfinite(f):
            self.truncated[(spec.name, R.NOT_FINITE)] += 1
            return None
        return f

    def _feature_value(self, spec: ModelSpec, value: Any) -> Any:
        t = type(value)
        if t is float:
            if value - value == 0.0:
                return value
            self.truncated[(spec.name, R.NOT_FINITE)] += 1
            return None
        if t is int:
            return value if -(2**63) <= value < 2**63 else float(value)
        if t is str or t is bool:
            return value if t is bool or len(value) <= lim.MAX_STRING_LENGTH else self._str(spec, value)
        if value is None:
            return None
        if isinstance(value, np.generic):
            return self._feature_value(spec, value.item())
        if isinstance(value, (int, float)):  # int / float subclasses (IntEnum...)
            return self._feature_value(spec, float(value) if isinstance(value, float) else int(value))
        self.truncated[(spec.name, R.WRONG_TYPE)] += 1
        return self._str(spec, value)

    def _list(self, spec: ModelSpec, values: Any) -> list[Any]:
        if isinstance(values, np.ndarray):
            values = values.ravel().tolist()
        elif not isinstance(values, list):
            values = list(values)
        if len(values) > lim.MAX_ARRAY_LENGTH:
            self.truncated[(spec.name, R.TOO_MANY_ITEMS)] += 1
            values = values[: lim.MAX_ARRAY_LENGTH]
        return values

    def _str_list(self, spec: ModelSpec, values: Any) -> list[str] | None:
        try:
            items = self._list(spec, values)
        except Exception:
            self.truncated[(spec.name, R.WRONG_TYPE)] += 1
            return None
        out = [s for s in (self._str(spec, v) for v in items) if s is not None]
        return out

    def _float_list(self, spec: ModelSpec, values: Any) -> tuple[float, ...] | None:
        """Finite doubles as a tuple (the encoders' marker for a validated double array), or ``None``."""
        try:
            if type(values) is np.ndarray:
                values = values.ravel().tolist()
            elif type(values) is not list:
                values = list(values)
            if len(values) > lim.MAX_ARRAY_LENGTH:
                self.truncated[(spec.name, R.TOO_MANY_ITEMS)] += 1
                values = values[: lim.MAX_ARRAY_LENGTH]
            if set(map(type, values)) != _FLOAT_ONLY:
                values = [float(v) for v in values]
        except Exception:
            self.truncated[(spec.name, R.WRONG_TYPE)] += 1
            return None
        total = sum(values)
        if total - total != 0.0 and not all(map(math.isfinite, values)):  # a finite sum means all are finite
            self.truncated[(spec.name, R.NOT_FINITE)] += 1
            return None
        return tuple(values)

    # --- features and segments -------------------------------------------------------------------------------------
    def features(self, spec: ModelSpec, features: Any, pairs: list[Any], encoder: Any = None) -> None:
        """Append ``ml.feature.*`` pairs of one sample (a mapping or a 1-D sequence).

        With an ``encoder`` (:class:`otel_ml.instrumentation.wire.FeatureEncoder`), encoded attribute entries are
        appended instead of pairs: the OTLP sink's fast path, which encodes a double feature with one dict lookup by
        feature name instead of dispatching on its type a second time.
        """
        if features is None:
            return
        if spec.feature_sample_rate < 1.0 and self._random.random() >= spec.feature_sample_rate:
            return
        if type(features) is not dict and _is_frame(features):  # one sample as a one-row DataFrame
            features = features.iloc[0].to_dict() if len(features) else {}
        if type(features) is not dict and not isinstance(features, Mapping):
            names = spec.features
            try:
                values = features.tolist() if isinstance(features, np.ndarray) else list(features)
            except TypeError:
                self.truncated[(spec.name, R.WRONG_TYPE)] += 1
                return
            if values and isinstance(values[0], list):  # one row of a 2-D array
                values = values[0]
            features = dict(zip(names or [f"f{i}" for i in range(len(values))], values, strict=False))
        selected = spec.feature_set
        items: Any = features.items()
        if selected is not None:
            items = [(k, v) for k, v in items if k in selected]
        if len(items) > lim.MAX_FEATURES:
            self.truncated[(spec.name, R.TOO_MANY_FEATURES)] += 1
            items = list(items)[: lim.MAX_FEATURES]
        prefix = a.ML_FEATURE_PREFIX
        append = pairs.append
        fkeys = self._feature_keys
        dprefix = encoder.double_prefixes if encoder is not None else None
        pack: Any = encoder.pack_double if encoder is not None else None
        vcache = encoder.values if encoder is not None else None
        for name, value in items:
            t = type(value)
            if t is float:
                if value - value != 0.0:  # NaN or inf
                    self.truncated[(spec.name, R.NOT_FINITE)] += 1
                    continue
                if dprefix is not None:
                    pre = dprefix.get(name)
                    if pre is not None:  # the fast path: a double feature seen before
                        append(pre + pack(value))
                        continue
            elif t is bool or (t is str and len(value) <= lim.MAX_STRING_LENGTH) or (
                    t is int and -(2**63) <= value < 2**63):
                if vcache is not None:
                    entry = vcache.get((name, t, value))
                    if entry is not None:  # the fast path: a categorical value seen before
                        append(entry)
                        continue
            else:
                value = self._feature_value(spec, value)
                if value is None:
                    continue
            key = fkeys.get(name) if type(name) is str else None
            if key is None:
                if type(name) is str and len(name) <= lim.MAX_KEY_LENGTH:
                    key = prefix + name
                    if len(fkeys) < 10_000:  # cached key strings: their hashes are cached too
                        fkeys[name] = key
                else:
                    key = str(name)
                    if len(key) > lim.MAX_KEY_LENGTH:
                        self.truncated[(spec.name, R.TOO_LONG)] += 1
                        key = key[: lim.MAX_KEY_LENGTH]
                    key = prefix + key
            if encoder is None:
                append((key, value))
            else:
                entry = encoder.encode(key, value)
                append(entry)
                if name in fkeys:  # not for capped names: their truncation is counted every time
                    if t is float:
                        encoder.remember_double(name, key)
                    elif t is not str or len(value) <= 64:
                        encoder.remember_value(name, t, value, entry)

    def segments(self, spec: ModelSpec, segments: Any, pairs: Pairs) -> None:
        """Append ``ml.segment.*`` pairs (values as strings)."""
        if not segments:
            return
        if not isinstance(segments, Mapping):
            self.truncated[(spec.name, R.WRONG_TYPE)] += 1
            return
        selected = spec.segments
        n = 0
        for dim, value in segments.items():
            if selected is not None and dim not in selected:
                continue
            if n >= lim.MAX_SEGMENTS:
                self.truncated[(spec.name, R.TOO_MANY_SEGMENTS)] += 1
                break
            s = self._str(spec, value)
            if s is None or value is None:
                continue
            pairs.append((a.ML_SEGMENT_PREFIX + str(dim)[: lim.MAX_KEY_LENGTH], s))
            n += 1

    # --- prediction and label ------------------------------------------------------------------------------------
    def prediction(
        self, spec: ModelSpec, prediction: Any, scores: Any, pairs: Pairs
    ) -> tuple[bool, str | None, float | None]:
        """Append the prediction attributes. Returns ``(valid, class for metrics, score for metrics)``."""
        task = spec.task
        score: float | None = None
        score_list: tuple[float, ...] | None = None
        if type(scores) is float:
            score = scores if scores - scores == 0.0 else self._float(spec, scores)
        elif scores is not None:
            if isinstance(scores, (float, int, np.floating, np.integer)) and not isinstance(scores, bool):
                score = self._float(spec, scores)
            else:
                score_list = self._float_list(spec, scores)
                if score_list is not None and spec.classes is not None and len(score_list) != len(spec.classes):
                    if not (task == Task.BINARY and len(score_list) == 1):
                        self.truncated[(spec.name, R.WRONG_TYPE)] += 1
                        score_list = None
        classes = spec.classes
        if task in Task.CLASSIFICATION:
            if score_list is not None and len(score_list) == 1:  # binary: [P(positive)]
                score, score_list = score_list[0], None
            if (task == Task.BINARY and score is None and score_list is None
                    and isinstance(prediction, (float, np.floating))
                    and str(prediction) not in (classes or _BINARY_DEFAULT_CLASSES)):
                score, prediction = self._float(spec, prediction), None  # a bare probability: P(positive)
                if score is None:
                    return False, None, None
            if task == Task.BINARY and classes is None:
                classes = _BINARY_DEFAULT_CLASSES
            if score_list is not None:
                if task == Task.BINARY and len(score_list) == 2:
                    score = score_list[spec.positive_index]
                elif score_list:
                    score = max(score_list)
            if prediction is None:
                if score_list is not None and classes is not None and score_list:
                    if task == Task.BINARY and len(score_list) == 2:
                        pos = spec.positive_index
                        prediction = classes[pos] if score_list[pos] >= spec.threshold else classes[1 - pos]
                    else:
                        prediction = classes[score_list.index(max(score_list))]
                elif task == Task.BINARY and score is not None and classes is not None and len(classes) == 2:
                    pos = spec.positive_index
                    prediction = classes[pos] if score >= spec.threshold else classes[1 - pos]
            if prediction is None:
                return False, None, None
            if type(prediction) is str and len(prediction) <= lim.MAX_STRING_LENGTH:
                value: str | None = prediction
            else:
                value = self._str(spec, prediction.item() if isinstance(prediction, np.generic) else prediction)
            if value is None:
                return False, None, None
            pairs.append((a.ML_PREDICTION_VALUE, value))
            metric_class: str | None = value
        elif task == Task.REGRESSION:
            f = self._float(spec, prediction) if prediction is not None else None
            if f is None:
                return False, None, None
            pairs.append((a.ML_PREDICTION_VALUE, f))
            metric_class = None
        elif task in (Task.MULTILABEL, Task.RANKING):
            values = self._set_values(spec, prediction, score_list)
            if values is None:
                return False, None, None
            pairs.append((a.ML_PREDICTION_VALUES, values))
            metric_class = None
        else:
            return False, None, None
        if score is not None:
            pairs.append((a.ML_PREDICTION_SCORE, score))
        if score_list is not None:
            pairs.append((a.ML_PREDICTION_SCORES, score_list))
        return True, metric_class, score

    def _set_values(self, spec: ModelSpec, prediction: Any, score_list: tuple[float, ...] | None) -> list[str] | None:
        classes = spec.classes
        if prediction is None:
            if score_list is None or classes is None:
                return None
            return [c for c, s in zip(classes, score_list, strict=False) if s >= 0.5]
        if isinstance(prediction, np.ndarray) and prediction.ndim == 2 and prediction.shape[0] == 1:
            prediction = prediction[0]
        if spec.task == Task.MULTILABEL and classes is not None and isinstance(prediction, np.ndarray) \
                and prediction.shape == (len(classes),) and prediction.dtype.kind in "biuf":
            threshold = 0.5
            return [c for c, v in zip(classes, prediction.tolist(), strict=True) if v >= threshold]
        if isinstance(prediction, (str, bytes)):
            prediction = [prediction]
        return self._str_list(spec, prediction)

    def label(self, spec: ModelSpec, label: Any, pairs: Pairs, relevance: Any = None) -> bool:
        """Append the label attributes for the monitor's task (any type when the task is unknown)."""
        task = spec.task
        if isinstance(label, np.generic):
            label = label.item()
        if task in (Task.MULTILABEL, Task.RANKING) or (task is None and isinstance(label, (list, tuple, set,
                                                                                            np.ndarray))):
            if isinstance(label, (str, bytes)):
                label = [label]
            if isinstance(label, set):
                label = sorted(label, key=str)
            values = self._str_list(spec, label)
            if values is None:
                return False
            pairs.append((a.ML_LABEL_VALUES, values))
            if relevance is not None:
                rel = self._float_list(spec, relevance)
                if rel is not None:
                    pairs.append((a.ML_LABEL_RELEVANCE, rel))
            return True
        if task == Task.REGRESSION or (task is None and type(label) is float):
            f = self._float(spec, label)
            if f is None:
                return False
            pairs.append((a.ML_LABEL_VALUE, f))
            return True
        if label is None:
            return False
        s = self._str(spec, label)
        if s is None:
            return False
        pairs.append((a.ML_LABEL_VALUE, s))
        return True

    # --- result interpretation ---------------------------------------------------------------------------------
    @staticmethod
    def interpret_single(result: Any) -> tuple[Any, Any, Any, Any]:
        """``(prediction, scores, prediction_id, segments)`` from one call's result (default interpretation)."""
        if type(result) is tuple and len(result) == 2:  # the common (label, proba) first: no ABC check
            return result[0], result[1], None, None
        if isinstance(result, Mapping):
            pred = _first(result, ("prediction", "label", "value", "predictions"))
            score = _first(result, ("scores", "probabilities", "score", "probability", "proba"))
            return (None if pred is _MISSING else pred, None if score is _MISSING else score,
                    result.get("prediction_id", result.get("id")), result.get("segments"))
        if type(result) is tuple and len(result) == 2:
            return result[0], result[1], None, None
        if isinstance(result, np.ndarray) and result.ndim == 0:
            return result.item(), None, None, None
        return result, None, None, None

    def batch_rows(self, spec: ModelSpec, predictions: Any, scores: Any, n: int) -> tuple[list[Any], list[Any]]:
        """Per-row predictions and scores of a batch (lists of length ``n``; ``None`` where absent)."""
        preds: list[Any] = [None] * n
        row_scores: list[Any] = [None] * n
        if type(predictions) is tuple and len(predictions) == 2 and scores is None:
            predictions, scores = predictions
        if _is_frame(predictions):
            predictions = predictions.to_numpy()
        if _is_series(predictions):
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
            if _is_frame(scores) or _is_series(scores):
                scores = scores.to_numpy()
            row_scores = scores.tolist() if isinstance(scores, np.ndarray) else list(scores)
        if len(preds) < n:
            preds += [None] * (n - len(preds))
        if len(row_scores) < n:
            row_scores += [None] * (n - len(row_scores))
        return preds, row_scores

    def feature_rows(self, spec: ModelSpec, features: Any, n: int) -> Iterator[Any]:
        """Per-row feature mappings of a batch (``None`` rows when absent)."""
        if features is None:
            return iter([None] * n)
        if _is_frame(features):
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
        self.truncated[(spec.name, R.WRONG_TYPE)] += 1
        return iter([None] * n)

    @staticmethod
    def segment_rows(segments: Any, n: int) -> Iterator[Any]:
        """Per-row segment mappings: a mapping of scalars applies to every row, of arrays per row."""
        if not segments or not isinstance(segments, Mapping):
            return iter([segments] * n)
        if all(isinstance(v, _SCALARS) for v in segments.values()):
            return iter([segments] * n)
        cols = {k: (v.tolist() if isinstance(v, np.ndarray) else (list(v) if not isinstance(v, _SCALARS) else [v] * n))
                for k, v in segments.items()}
        return (dict(zip(cols, row, strict=False)) for row in zip(*cols.values(), strict=False))

    @staticmethod
    def label_rows(labels: Any, n: int) -> list[Any]:
        """Per-row labels of a batch."""
        if labels is _MISSING or labels is None:
            return [_MISSING] * n
        if _is_series(labels):
            labels = labels.to_numpy()
        return labels.tolist() if isinstance(labels, np.ndarray) else list(labels)


def _first(d: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for k in keys:
        if k in d:
            return d[k]
    return _MISSING


MISSING = _MISSING
"""Sentinel: no label given."""
