"""Event attributes of one prediction or label, from what the caller handed over (values, arrays, mappings).

Runs on the background worker only. :class:`Normalizer` appends ``(key, value)`` pairs (or, for features on the
OTLP sink's fast path, encoded attribute entries); every value is capped per :mod:`~otel_ml.instrumentation.limits`
(:class:`~otel_ml.instrumentation.values.ValueCaps`, which counts each cap) and nothing here raises for bad input
(the worker additionally guards every record). How a call's result is read is in
:mod:`~otel_ml.instrumentation.interpret`; a batch is cut into rows by :mod:`~otel_ml.instrumentation.rows`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from otel_ml.instrumentation import limits as lim
from otel_ml.instrumentation.interpret import is_frame
from otel_ml.instrumentation.limits import TruncationReason as R
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.instrumentation.values import ValueCaps
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import Task

Pairs = list[tuple[str, Any]]
"""Event attributes as ``(key, value)`` with values ``str``, ``float``, ``int``, ``bool`` or lists of them."""

_BINARY_DEFAULT_CLASSES = ("0", "1")
"""Binary classes when the monitor knows none: the processor's positive class is then ``"1"``."""


class Normalizer(ValueCaps):
    """Builds attribute pairs; counts every capped value by ``(model name, reason)`` in :attr:`truncated`."""

    def __init__(self) -> None:
        super().__init__()
        self._random = random.Random()
        self._feature_keys: dict[str, str] = {}

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
        if type(features) is not dict and is_frame(features):  # one sample as a one-row DataFrame
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
                value = self.feature_value(spec, value)
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
            s = self.string(spec, value)
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
            score = scores if scores - scores == 0.0 else self.double(spec, scores)
        elif scores is not None:
            if isinstance(scores, (float, int, np.floating, np.integer)) and not isinstance(scores, bool):
                score = self.double(spec, scores)
            else:
                # Multilabel: NaN = a label the model did not score (models that score only what they predict).
                score_list = self.doubles(spec, scores, allow_nan=task == Task.MULTILABEL)
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
                score, prediction = self.double(spec, prediction), None  # a bare probability: P(positive)
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
                value = self.class_name(spec, prediction)
            if value is None:
                return False, None, None
            pairs.append((a.ML_PREDICTION_VALUE, value))
            metric_class: str | None = value
        elif task == Task.REGRESSION:
            f = self.double(spec, prediction) if prediction is not None else None
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
        return self.strings(spec, prediction)

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
            values = self.strings(spec, label)
            if values is None:
                return False
            pairs.append((a.ML_LABEL_VALUES, values))
            if relevance is not None:
                rel = self.doubles(spec, relevance)
                if rel is not None:
                    pairs.append((a.ML_LABEL_RELEVANCE, rel))
            return True
        if task == Task.REGRESSION or (task is None and type(label) is float):
            f = self.double(spec, label)
            if f is None:
                return False
            pairs.append((a.ML_LABEL_VALUE, f))
            return True
        if label is None:
            return False
        s = self.class_name(spec, label) if task in Task.CLASSIFICATION else self.string(spec, label)
        if s is None:
            return False
        pairs.append((a.ML_LABEL_VALUE, s))
        return True
