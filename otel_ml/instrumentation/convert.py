"""Records -> finished events and client metrics (background worker only).

:class:`RecordConverter` turns each queued :mod:`record <otel_ml.instrumentation.records>` into the sink's
finished events (``(model name, payload)``) and records the client metrics (predictions by class, scores,
durations, errors). Three paths give the same bytes and counts:

* one record at a time through the :class:`~otel_ml.instrumentation.normalize.Normalizer` (every record kind);
* a batch encoded column-wise (:meth:`~otel_ml.instrumentation.fastbatch.BatchEncoder.encode`), for the common
  ``log_predictions`` shapes on the OTLP sink;
* a run of single predictions of one model encoded together
  (:meth:`~otel_ml.instrumentation.fastbatch.BatchEncoder.encode_singles`).

A record that fails (an extractor raised, unusable values) is dropped and counted as ``invalid``; the worker goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import repeat
from typing import Any

from otel_ml.instrumentation.fastbatch import BatchEncoder
from otel_ml.instrumentation.limits import MAX_STRING_LENGTH, TruncationReason
from otel_ml.instrumentation.normalize import Normalizer
from otel_ml.instrumentation.records import (
    MISSING,
    CallErrorRecord,
    CallRecord,
    LabelBatchRecord,
    LabelRecord,
    PredictionBatchRecord,
    PredictionRecord,
    Record,
    events_of,
    new_record,
    spec_of,
)
from otel_ml.instrumentation.rows import batch_rows, feature_rows, label_rows, segment_rows
from otel_ml.instrumentation.spec import ModelSpec
from otel_ml.semconv.attributes import ML_PREDICTION_SCORE, ML_PREDICTION_VALUE, DropReason, Task

_logger = logging.getLogger(__name__)

CLASSIFICATION = Task.CLASSIFICATION


class RecordConverter:
    """Converts records to the events of one sink (worker thread only; not thread-safe).

    Attributes:
        sink: Where events are encoded (``sink.event``) and metrics aggregated (``sink.metrics``).
        normalizer: Builds attributes and counts capped values.
        batch_encoder: The column-wise encoder, on the OTLP sink only (``None``: every record takes the generic
            path; the equivalence tests switch it off to compare).
    """

    def __init__(self, sink: Any) -> None:
        self.sink = sink
        self.metrics = sink.metrics
        self.normalizer = Normalizer()
        self.feature_encoder: Any = getattr(sink, "feature_encoder", None)
        self.batch_encoder = BatchEncoder(sink, self.normalizer) if self.feature_encoder is not None else None

    # --- dispatch ----------------------------------------------------------------------------------------------------
    def single(self, rec: PredictionRecord | CallRecord) -> Any:
        """The event of one single-prediction record (``None`` when it was dropped and counted)."""
        try:
            if type(rec) is PredictionRecord:
                return self.prediction(*rec)
            return self.call_single(*rec)
        except Exception:
            self.invalid(rec)
            return None

    def expand(self, rec: Record) -> Iterator[Any]:
        """The events of any record, lazily (a batch is converted as it is consumed)."""
        try:
            if isinstance(rec, PredictionRecord):
                return _one(self.prediction(*rec))
            if isinstance(rec, LabelRecord):
                return _one(self.label(*rec))
            if isinstance(rec, CallErrorRecord):
                spec = rec.spec
                self.metrics.record_duration(spec.key, rec.duration_ns / 1e9, rec.error_type)
                self.metrics.record_error(spec.key, rec.error_type)
                return iter(())
            if isinstance(rec, PredictionBatchRecord):
                return self.batch(*rec)
            if isinstance(rec, LabelBatchRecord):
                return self.labels(*rec)
            if isinstance(rec, CallRecord):
                return self.call(*rec)
        except Exception:
            self.invalid(rec)
        return iter(())

    def invalid(self, rec: Record, n: int | None = None) -> None:
        """Count a record (or ``n`` of its events) dropped as invalid."""
        _logger.debug("otel-ml: dropping an invalid record", exc_info=True)
        try:
            self.metrics.record_drop(spec_of(rec).name, DropReason.INVALID, events_of(rec) if n is None else n)
        except Exception:
            _logger.debug("otel-ml: failed to count an invalid record", exc_info=True)

    def _invalid_rows(self, spec: ModelSpec, n: int) -> None:
        _logger.debug("otel-ml: dropping invalid rows", exc_info=True)
        try:
            self.metrics.record_drop(spec.name, DropReason.INVALID, n)
        except Exception:
            _logger.debug("otel-ml: failed to count invalid rows", exc_info=True)

    # --- single predictions --------------------------------------------------------------------------------------
    def singles(self, run: list[PredictionRecord | CallRecord]) -> list[Any]:
        """Events of single predictions of one model: encoded together (column-wise) when they all have the common
        shape, else one by one; the same bytes and counts either way."""
        preds: list[PredictionRecord] = []
        for rec in run:
            if isinstance(rec, PredictionRecord):
                preds.append(rec)
                continue
            call, time_ns, pid, args, kwargs, result, context, duration_ns = rec
            try:
                prediction, scores, features, segments = call.extract(args, kwargs, result)
            except Exception:
                self.invalid(rec)
                continue
            preds.append(new_record(PredictionRecord, (call.spec, time_ns, pid, prediction, scores, features,
                                                       segments, MISSING, context, duration_ns)))
        if len(preds) > 1 and self.batch_encoder is not None:
            try:
                rows = self.batch_encoder.encode_singles(preds[0].spec, preds)
            except Exception:
                _logger.debug("otel-ml: column-wise encoding of single events failed; one by one", exc_info=True)
                rows = None
            if rows is not None:
                name = preds[0].spec.name
                return [(name, row) for row in rows]
        out = []
        for p in preds:
            try:
                item = self.prediction(*p)
            except Exception:
                self.invalid(p)
                continue
            if item is not None:
                out.append(item)
        return out

    def prediction(
        self, spec: ModelSpec, time_ns: int, pid: Any, prediction: Any, scores: Any, features: Any, segments: Any,
        label: Any, context: Any, duration_ns: int | None,
    ) -> Any:
        """The event of one prediction (the fields of a :class:`PredictionRecord`); ``None`` if invalid (counted)."""
        norm = self.normalizer
        metrics = self.metrics
        if duration_ns is not None:
            metrics.record_duration(spec.key, duration_ns / 1e9)
        pid = pid if type(pid) is str and len(pid) <= 256 else norm.string(spec, pid)
        cls: str | None
        score: float | None
        if (type(prediction) is str and type(scores) is float and scores - scores == 0.0
                and len(prediction) <= MAX_STRING_LENGTH and spec.task in CLASSIFICATION):
            # the common (class, finite score) call: what Normalizer.prediction returns for it, without the call
            pairs: list[tuple[str, Any]] = [(ML_PREDICTION_VALUE, prediction), (ML_PREDICTION_SCORE, scores)]
            ok, cls, score = True, prediction, scores
        else:
            pairs = []
            ok, cls, score = norm.prediction(spec, prediction, scores, pairs)
        if not ok or pid is None:
            metrics.record_drop(spec.name, DropReason.INVALID)
            return None
        encoded: list[Any] = []
        if features is not None:
            if self.feature_encoder is None:
                norm.features(spec, features, pairs)
            else:
                norm.features(spec, features, encoded, self.feature_encoder)
        if segments:
            norm.segments(spec, segments, pairs)
        if label is not MISSING:
            norm.label(spec, label, pairs)
        metrics.record_prediction(spec.key, cls, score)
        return self.sink.event(spec, False, time_ns, pid, pairs, context, encoded)

    def call_single(
        self, call: Any, time_ns: int, pid: str, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
        context: Any, duration_ns: int,
    ) -> Any:
        """The event of an instrumented call that returned one prediction (the fields of a :class:`CallRecord`)."""
        prediction, scores, features, segments = call.extract(args, kwargs, result)
        return self.prediction(call.spec, time_ns, pid, prediction, scores, features, segments, MISSING, context,
                               duration_ns)

    # --- batches -------------------------------------------------------------------------------------------------
    def call(
        self, call: Any, time_ns: int, ids: Any, args: tuple[Any, ...], kwargs: dict[str, Any], result: Any,
        context: Any, duration_ns: int,
    ) -> Iterator[Any]:
        """The events of an instrumented call (one, or one per row of a batch result)."""
        if isinstance(ids, str):
            return _one(self.call_single(call, time_ns, ids, args, kwargs, result, context, duration_ns))
        prediction, scores, features, segments = call.extract(args, kwargs, result)
        return self.batch(call.spec, time_ns, ids, prediction, scores, features, segments, None, context, duration_ns)

    def batch(
        self, spec: ModelSpec, time_ns: int, ids: Any, predictions: Any, scores: Any, features: Any, segments: Any,
        labels: Any, context: Any, duration_ns: int | None,
    ) -> Iterator[Any]:
        """The events of a batch (the fields of a :class:`PredictionBatchRecord`), converted as consumed."""
        n = len(ids)
        norm = self.normalizer
        if duration_ns is not None:
            self.metrics.record_duration(spec.key, duration_ns / 1e9)
        if self.batch_encoder is not None:
            records = self._fast_batch(spec, time_ns, ids, predictions, scores, features, segments, labels, context)
            if records is not None:
                yield from zip(repeat(spec.name), records)
                return
        try:
            preds, row_scores = batch_rows(spec, predictions, scores, n)
            if len(preds) > n or len(row_scores) > n:  # more rows than ids (MAX_BATCH_ROWS or fewer ids given)
                norm.truncated[(spec.name, TruncationReason.TOO_MANY_ROWS)] += 1
            feats = feature_rows(spec, features, n, norm.truncated)
            segs = segment_rows(segments, n)
            labs: Iterable[Any] = label_rows(labels, n)
        except Exception:
            self._invalid_rows(spec, n)
            return
        for pid, p, sc, f, sg, lab in zip(ids, preds, row_scores, feats, segs, labs, strict=False):
            try:
                event = self.prediction(spec, time_ns, pid, p, sc, f, sg, lab, context, None)
            except Exception:
                self._invalid_rows(spec, 1)
                continue
            if event is not None:
                yield event

    def _fast_batch(
        self, spec: ModelSpec, time_ns: int, ids: Any, predictions: Any, scores: Any, features: Any, segments: Any,
        labels: Any, context: Any,
    ) -> list[bytes] | None:
        """The batch's records through the column-wise encoder, or ``None`` for the generic path (also when the
        encoder fails unexpectedly: the generic path then handles, validates and counts the batch)."""
        assert self.batch_encoder is not None
        try:
            return self.batch_encoder.encode(spec, time_ns, ids, predictions, scores, features, segments,
                                             labels is MISSING or labels is None, context)
        except Exception:
            _logger.debug("otel-ml: column-wise batch encoding failed; using the generic path", exc_info=True)
            return None

    # --- labels --------------------------------------------------------------------------------------------------
    def label(self, spec: ModelSpec, time_ns: int, pid: Any, label: Any, relevance: Any) -> Any:
        """The event of one label (the fields of a :class:`LabelRecord`); ``None`` if invalid (counted)."""
        norm = self.normalizer
        pid = pid if type(pid) is str and len(pid) <= 256 else norm.string(spec, pid)
        pairs: list[tuple[str, Any]] = []
        if pid is None or not norm.label(spec, label, pairs, relevance):
            self.metrics.record_drop(spec.name, DropReason.INVALID)
            return None
        return self.sink.event(spec, True, time_ns, pid, pairs, None)

    def labels(self, spec: ModelSpec, time_ns: int, ids: Any, labels: Any) -> Iterator[Any]:
        """The events of many labels (the fields of a :class:`LabelBatchRecord`), converted as consumed."""
        for pid, lab in zip(ids, label_rows(labels, len(ids)), strict=False):
            try:
                event = self.label(spec, time_ns, pid, lab, None)
            except Exception:
                self._invalid_rows(spec, 1)
                continue
            if event is not None:
                yield event


def _one(item: Any) -> Iterator[Any]:
    return iter(()) if item is None else iter((item,))
