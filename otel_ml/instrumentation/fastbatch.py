"""Column-wise encoding of a ``log_predictions`` batch straight to OTLP ``LogRecord`` bytes (the OTLP sink only).

The generic worker path turns each row into a dict and attribute pairs and encodes them one by one (~15 µs per
row in pure Python). For the common batch shapes this module instead encodes every attribute *column* at once:
doubles through numpy (the constant attribute prefix and the 8 value bytes laid out in one ``uint8`` matrix),
booleans, ints and short strings through per-value caches, so that a row is a single ``bytes.join`` of a few
prepared pieces. The metrics are aggregated per batch (class counts, one vectorized score histogram update).

It is taken only when the result is provably the same as the generic path's, byte for byte, counts included:
classification tasks (binary, multiclass) with known classes; scores as a finite 2-D float array with one column
per class (or, binary, a 1-D array of P(positive)); predictions absent or a 1-D array of strings or ints; as many
rows as ids; features absent, a pandas DataFrame or a 2-D array (at most ``MAX_FEATURES`` columns with short,
distinct string names); segments absent or constant scalars; no labels; features on every event. Everything else
(and any inconsistency found while checking) returns ``None`` and the batch goes through the generic path. Values
that need capping inside a column (NaN/inf doubles, huge ints, long strings, odd objects) are handled per value
exactly as the generic path does, with the same truncation counts.

:meth:`BatchEncoder.encode_singles` does the same for a run of single predictions of one model that the worker
drains together (per-record timestamps, ids, durations and span links), when every record has the common shape
(see its docstring); otherwise the run takes the per-record path.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from otel_ml.instrumentation import limits as lim
from otel_ml.instrumentation import wire
from otel_ml.instrumentation.interpret import is_frame
from otel_ml.instrumentation.limits import TruncationReason as R
from otel_ml.instrumentation.normalize import Normalizer
from otel_ml.instrumentation.records import MISSING, PredictionRecord
from otel_ml.instrumentation.sinks import span_fields
from otel_ml.semconv import attributes as a
from otel_ml.semconv.attributes import Task

_Column = list[bytes] | np.ndarray
"""Encoded pieces of one attribute for every row: a list of bytes, or a ``(rows, width)`` uint8 matrix."""


def _double_block(prefix: bytes, values: np.ndarray) -> np.ndarray:
    """``(rows, len(prefix) + 8)`` uint8 matrix: ``prefix`` then the little-endian double of each value."""
    n = len(values)
    out = np.empty((n, len(prefix) + 8), dtype=np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    out[:, len(prefix):] = np.ascontiguousarray(values, dtype="<f8").view(np.uint8).reshape(n, 8)
    return out


def _double_array_block(prefix: bytes, matrix: np.ndarray) -> np.ndarray:
    """Rows of an ``ArrayValue`` of doubles: ``prefix`` (up to the first value) then values joined by the item
    header (see :meth:`wire.AttributeEncoder._double_array_prefix`)."""
    n, k = matrix.shape
    item = np.frombuffer(wire._DOUBLE_ITEM, dtype=np.uint8)
    values = np.ascontiguousarray(matrix, dtype="<f8").view(np.uint8).reshape(n, k, 8)
    body = np.empty((n, k, 11), dtype=np.uint8)
    body[:, :, :3] = item
    body[:, :, 3:] = values
    flat = body.reshape(n, 11 * k)[:, 3:]  # the first item's header is part of the prefix
    out = np.empty((n, len(prefix) + flat.shape[1]), dtype=np.uint8)
    out[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    out[:, len(prefix):] = flat
    return out


class BatchEncoder:
    """Encodes eligible batches for one OTLP sink and normalizer (worker thread only)."""

    def __init__(self, sink: Any, normalizer: Normalizer) -> None:
        self.sink = sink
        self.enc: wire.AttributeEncoder = sink._enc
        self.norm = normalizer

    # --- eligibility --------------------------------------------------------------------------------------------
    @staticmethod
    def _scores(spec: Any, predictions: Any, scores: Any, n: int) -> tuple[Any, np.ndarray] | None:
        """``(predictions or None, scores)`` when both have the supported shapes, else ``None``."""
        if type(predictions) is tuple and len(predictions) == 2 and scores is None:
            predictions, scores = predictions
        if type(predictions) is np.ndarray and predictions.ndim == 2 and scores is None:
            scores, predictions = predictions, None
        if type(scores) is not np.ndarray or scores.dtype.kind != "f" or len(scores) != n:
            return None
        classes = spec.classes
        if classes is None or len(classes) < 2 or len(classes) > lim.MAX_ARRAY_LENGTH:
            return None
        if scores.ndim == 2:
            if scores.shape[1] != len(classes) or (spec.task == Task.BINARY and len(classes) != 2):
                return None
        elif scores.ndim != 1 or spec.task != Task.BINARY or len(classes) != 2:
            return None
        if not np.isfinite(scores).all():
            return None
        if predictions is not None:
            if type(predictions) is not np.ndarray or predictions.ndim != 1 or len(predictions) != n:
                return None
            kind = predictions.dtype.kind
            if kind not in "Uiu" or (kind == "U" and predictions.dtype.itemsize // 4 > lim.MAX_STRING_LENGTH):
                return None
            if kind in "iu" and spec.index_classes is not None and n and (
                    int(predictions.min()) < 0 or int(predictions.max()) >= len(spec.index_classes)):
                return None  # an unknown class index: the generic path drops and counts that row
        return predictions, scores

    @staticmethod
    def _feature_columns(spec: Any, features: Any, n: int) -> list[tuple[str, np.ndarray]] | None:
        """``(name, column)`` in event order, or ``None`` when the shape is not supported."""
        if features is None:
            return []
        selected = spec.feature_set
        if is_frame(features):
            names = list(features.columns)
            if not all(type(c) is str for c in names) or len(set(names)) != len(names) or len(features) != n:
                return None
            names = [c for c in names if selected is None or c in selected]
            cols = [(c, features[c].to_numpy()) for c in names]
        elif type(features) is np.ndarray and features.ndim == 2 and features.dtype.kind in "biuf":
            if len(features) != n:
                return None
            names = list(spec.features or [f"f{i}" for i in range(features.shape[1])])[: features.shape[1]]
            if len(set(names)) != len(names) or not all(type(c) is str for c in names):
                return None
            cols = [(c, features[:, i]) for i, c in enumerate(names) if selected is None or c in selected]
        else:
            return None
        if len(cols) > lim.MAX_FEATURES or any(len(c) > lim.MAX_KEY_LENGTH for c, _ in cols):
            return None
        return cols

    def encode(
        self, spec: Any, time_ns: int, ids: Any, predictions: Any, scores: Any, features: Any, segments: Any,
        labels_missing: bool, context: Any,
    ) -> list[bytes] | None:
        """Encoded ``LogRecord`` bodies of every row, or ``None`` when the batch needs the generic path.

        Args:
            spec: The monitor's spec.
            time_ns: Event time.
            ids: Prediction ids (one per row).
            predictions: As handed to ``log_predictions`` (or extracted from a call).
            scores: As handed over.
            features: As handed over.
            segments: As handed over.
            labels_missing: No labels were given.
            context: The OpenTelemetry ``Context`` whose span the events link to (or ``None``).
        """
        n = len(ids)
        if (not labels_missing or n == 0 or spec.task not in (Task.BINARY, Task.MULTICLASS)
                or spec.feature_sample_rate < 1.0):
            return None
        if segments and (not isinstance(segments, dict) or not all(type(v) in (str, int, float, bool)
                                                                      for v in segments.values())):
            return None
        ps = self._scores(spec, predictions, scores, n)
        if ps is None:
            return None
        predictions, scores = ps
        cols = self._feature_columns(spec, features, n)
        if cols is None:
            return None
        id_list = ids if type(ids) is list else list(ids)
        if set(map(type, id_list)) != {str} or max(map(len, id_list)) > 256:
            return None
        link = span_fields(context) or b""
        # From here on the batch is encoded: no more bail-outs (counts are updated below).
        return self._encode(spec, time_ns, id_list, predictions, scores, cols, segments, link)

    # --- encoding -----------------------------------------------------------------------------------------------
    def _encode(
        self, spec: Any, time_ns: int, ids: list[str], predictions: Any, scores: np.ndarray,
        cols: list[tuple[str, np.ndarray]], segments: Any, link: bytes,
    ) -> list[bytes]:
        n = len(ids)
        enc = self.enc
        classes = spec.classes
        pos = spec.positive_index
        # prediction value, score and per-class scores (the generic path's order)
        if scores.ndim == 1:
            score = scores.astype(np.float64)
            score_list = None
        else:
            score_list = scores.astype(np.float64)
            score = score_list[:, pos] if spec.task == Task.BINARY else score_list.max(axis=1)
        if predictions is None:
            if spec.task == Task.BINARY:
                idx = np.where(score >= spec.threshold, pos, 1 - pos)
            else:
                assert score_list is not None  # multiclass scores are 2-D (see _scores)
                idx = np.argmax(score_list, axis=1)
            names: list[Any] = list(classes)
            inverse = idx
        else:
            uniq, inverse = np.unique(predictions, return_inverse=True)
            inverse = inverse.ravel()
            names = [self.norm.class_name(spec, v) for v in uniq.tolist()]
        value_pieces = [b"" if s is None else enc.scalar(a.ML_PREDICTION_VALUE, s) for s in names]
        pred_col: _Column = [value_pieces[i] for i in inverse.tolist()]
        # classes in the order of their first row: the metric's class cap admits them in that order
        present, first = np.unique(inverse, return_index=True)
        counts = np.bincount(inverse, minlength=len(names))
        class_counts: dict[str, int] = {}
        for i in present[np.argsort(first, kind="stable")].tolist():
            s = names[i]
            if s is not None:
                class_counts[s] = class_counts.get(s, 0) + int(counts[i])
        columns: list[_Column] = [pred_col, _double_block(enc.double_prefix(a.ML_PREDICTION_SCORE), score)]
        if score_list is not None:
            k = score_list.shape[1]
            prefix = enc._dbl_arr.get((a.ML_PREDICTION_SCORES, k)) or enc._double_array_prefix(
                a.ML_PREDICTION_SCORES, k)
            columns.append(_double_array_block(prefix, score_list))
        if segments:
            seg_pairs: list[tuple[str, Any]] = []
            scratch = Normalizer()
            scratch.segments(spec, segments, seg_pairs)
            for key, c in scratch.truncated.items():
                self.norm.truncated[key] += c * n
            seg_out: list[bytes] = []
            enc.encode_pairs(seg_pairs, seg_out)
            if seg_out:
                columns.append([b"".join(seg_out)] * n)
        for name, col in cols:
            columns.append(self._feature_column(spec, a.ML_FEATURE_PREFIX + name, col))
        rows = self._rows(columns, n)
        self.sink.metrics.record_predictions(spec.key, class_counts, score)
        t = wire._pack_q(time_ns)
        head = b"\x09" + t + b"\x59" + t + self.sink._constants(spec, False)
        tail = link + self.sink._pred_name
        raws = [s.encode("utf-8", "replace") for s in ids]
        heads = {length: self.sink._id_head(length) for length in set(map(len, raws))}
        join = b"".join
        return [join((head, heads[len(r)], r, row, tail)) for r, row in zip(raws, rows, strict=True)]

    def encode_singles(self, spec: Any, recs: list[PredictionRecord]) -> list[bytes] | None:
        """Encoded ``LogRecord`` bodies of single predictions of one model drained together, or ``None`` when one
        of them needs the generic path (then all of them take it, one by one).

        ``recs``: :class:`~otel_ml.instrumentation.records.PredictionRecord` of one model. Taken when every record
        is the common call: a string id and class, a finite float score, a classification task, no segments, no
        label, and features absent on all or dicts with the same string keys in the same order (each feature column
        of one value type); the bytes and counts are then those of :meth:`OtlpSink.event` per record (timestamps
        and span links per record).
        """
        if spec.task not in Task.CLASSIFICATION or spec.feature_sample_rate < 1.0:
            return None
        f0 = recs[0].features
        keys = tuple(f0) if type(f0) is dict else None
        if f0 is not None and (keys is None or not all(type(k) is str and len(k) <= lim.MAX_KEY_LENGTH
                                                       for k in keys)):
            return None
        n = len(recs)
        _, times, pids, preds, scores, feats, segments, labels, contexts, durations = zip(*recs, strict=True)
        max_str = lim.MAX_STRING_LENGTH
        none = type(None)
        if (set(map(type, pids)) != {str} or max(map(len, pids)) > 256 or set(map(type, preds)) != {str}
                or max(map(len, preds)) > max_str or set(map(type, scores)) != {float} or any(segments)
                or labels.count(MISSING) != n or set(map(type, times)) != {int} or min(times) < 0
                or max(times) >= 1 << 64 or not set(map(type, durations)) <= {int, none}):
            return None
        if f0 is None:
            if feats.count(None) != n:
                return None
        elif set(map(type, feats)) != {dict} or set(map(tuple, feats)) != {keys}:
            return None
        score_arr = np.array(scores, dtype=np.float64)
        if not np.isfinite(score_arr).all():
            return None
        selected = spec.feature_set
        names = [k for k in keys if selected is None or k in selected] if keys is not None else []
        if len(names) > lim.MAX_FEATURES:
            return None
        columns_in: list[tuple[str, Any, list[Any]]] = []  # (name, value type, values)
        for name in names:
            values = [f[name] for f in feats]
            kinds = set(map(type, values))
            if len(kinds) != 1 or not kinds <= {float, bool, int, str}:
                return None
            columns_in.append((name, kinds.pop(), values))
        # From here on the records are encoded: no more bail-outs (counts are updated below).
        sink = self.sink
        enc = self.enc
        time_bytes = np.array(times, dtype="<u8").view(np.uint8).reshape(n, 8)
        const = sink._constants(spec, False)
        head = np.empty((n, 18 + len(const)), dtype=np.uint8)
        head[:, 0] = 0x09
        head[:, 1:9] = time_bytes
        head[:, 9] = 0x59
        head[:, 10:18] = time_bytes
        head[:, 18:] = np.frombuffer(const, dtype=np.uint8)
        try:
            raws = list(map(str.encode, pids))
        except UnicodeEncodeError:  # lone surrogates: replaced, as OtlpSink.event does
            raws = [pid.encode("utf-8", "replace") for pid in pids]
        id_heads = {length: sink._id_head(length) for length in set(map(len, raws))}
        value_pieces = {v: enc.scalar(a.ML_PREDICTION_VALUE, v) for v in set(preds)}
        counts = Counter(preds)
        class_counts = {v: counts[v] for v in dict.fromkeys(preds)}  # in the order of first appearance
        columns: list[_Column] = [head, list(map(id_heads.__getitem__, map(len, raws))), raws,
                                  list(map(value_pieces.__getitem__, preds)),
                                  _double_block(enc.double_prefix(a.ML_PREDICTION_SCORE), score_arr)]
        for name, kind, values in columns_in:
            columns.append(self._single_feature_column(spec, a.ML_FEATURE_PREFIX + name, kind, values))
        pred_name = sink._pred_name
        if len(set(map(id, contexts))) == 1:  # all in the same context (a request's, or none): one tail
            columns.append([(span_fields(contexts[0]) or b"") + pred_name] * n)
        else:
            tail: list[bytes] = []
            last_context: Any = None
            link = b""
            for context in contexts:
                if not context:
                    tail.append(pred_name)
                    continue
                if context is not last_context:
                    last_context, link = context, span_fields(context) or b""
                tail.append(link + pred_name)
            columns.append(tail)
        rows = self._rows(columns, n)
        key = spec.key
        metrics = sink.metrics
        for d in durations:
            if d is not None:
                metrics.record_duration(key, d / 1e9)
        metrics.record_predictions(key, class_counts, score_arr)
        return rows

    def _single_feature_column(self, spec: Any, key: str, kind: type, values: list[Any]) -> _Column:
        """Encoded pieces of one feature of single events (``values`` all of type ``kind``: float, bool, int or
        str), capped and counted as :meth:`Normalizer.features` does per event."""
        if kind is float:
            return self._feature_column(spec, key, np.array(values, dtype=np.float64))
        if (kind is bool or (kind is int and -(2**63) <= min(values) and max(values) < 2**63)
                or (kind is str and max(map(len, values)) <= lim.MAX_STRING_LENGTH)):
            cache = {v: self.enc.scalar(key, v) for v in set(values)}
            return list(map(cache.__getitem__, values))
        return self._cached_column(spec, key, values)

    def _feature_column(self, spec: Any, key: str, col: np.ndarray) -> _Column:
        """Encoded pieces of one feature column (``b""`` where the generic path drops the value)."""
        kind = col.dtype.kind
        n = len(col)
        if kind == "f":
            values = col.astype(np.float64)
            finite = np.isfinite(values)
            if finite.all():
                return _double_block(self.enc.double_prefix(key), values)
            self.norm.truncated[(spec.name, R.NOT_FINITE)] += int(n - finite.sum())
            prefix = self.enc.double_prefix(key)
            pack = wire._pack_d
            return [prefix + pack(v) if ok else b"" for v, ok in zip(values.tolist(), finite.tolist(), strict=True)]
        if kind == "b":
            yes, no = self.enc.scalar(key, True), self.enc.scalar(key, False)
            return [yes if v else no for v in col.tolist()]
        if kind in "iu" and col.dtype.itemsize < 8 + (kind == "i"):  # every value fits int64: encode each distinct one
            uniq, inverse = np.unique(col, return_inverse=True)
            pieces = [self.enc.scalar(key, v) for v in uniq.tolist()]
            return [pieces[i] for i in inverse.ravel().tolist()]
        values = col.tolist()
        if set(map(type, values)) == {str} and max(map(len, values)) <= lim.MAX_STRING_LENGTH:
            cache = {v: self.enc.scalar(key, v) for v in set(values)}
            return list(map(cache.__getitem__, values))
        return self._cached_column(spec, key, values)

    def _cached_column(self, spec: Any, key: str, values: list[Any]) -> list[bytes]:
        """Pieces of a column of ints, strings or anything else, each value normalized as the generic path does
        (short strings and in-range ints as they are, the rest through ``Normalizer.feature_value``)."""
        cache: dict[tuple[type, Any], bytes] = {}
        scalar = self.enc.scalar
        feature_value = self.norm.feature_value
        out: list[bytes] = []
        append = out.append
        for v in values:
            t = type(v)
            if (t is str and len(v) <= lim.MAX_STRING_LENGTH) or (t is int and -(2**63) <= v < 2**63) or t is bool:
                piece = cache.get((t, v))
                if piece is None:
                    piece = cache[(t, v)] = scalar(key, v)
                append(piece)
                continue
            fv = feature_value(spec, v)
            append(b"" if fv is None else scalar(key, fv))
        return out

    @staticmethod
    def _rows(columns: list[_Column], n: int) -> list[bytes]:
        """Per-row concatenation of the columns (adjacent matrices are merged and sliced once)."""
        merged: list[_Column] = []
        for c in columns:
            if isinstance(c, np.ndarray) and merged and isinstance(merged[-1], np.ndarray):
                merged[-1] = np.concatenate((merged[-1], c), axis=1)
            else:
                merged.append(c)
        parts: list[list[bytes]] = []
        for c in merged:
            if isinstance(c, np.ndarray):
                w = c.shape[1]
                blob = c.tobytes()
                parts.append([blob[i:i + w] for i in range(0, n * w, w)])
            else:
                parts.append(c)
        if len(parts) == 1:
            return parts[0]
        join: Callable[[Any], bytes] = b"".join
        return list(map(join, zip(*parts, strict=True)))
